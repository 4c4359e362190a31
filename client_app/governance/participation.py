"""A site's participation report: what it contributed to one study, for non-technical readers.

The hospital's ethics board and data-protection officer read it (``tessera site report``,
the app's Report button): the study and its plan hash; who approved it and when; what left
the site (kinds of releases, rounds, counts and sizes in bytes, never values); the epsilon
each dataset spent on the study against the ceiling; consent changes honoured; the model's
metrics at this site and its fairness across the groups of the plan's sensitive column (both
from the latest local evaluation, which stays at the site); and whether the site's audit log
verifies. Built only from the site store and the audit log, so it never touches patient data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from client_app.governance.budget import budget_overview
from client_app.governance.narration import label_names, release_text, short_hash
from client_app.governance.studies import ReceivedPlan, received_plans
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.evaluation import group_fairness
from common.plan import parse_plan
from privacy.audit_verify import verify_log

#: What each kind of event sent or did, for the "what left the site" table.
_OUTBOUND = {
    "stats_sent": "Encrypted, noised feature statistics (round 0)",
    "update_sent": "Encrypted model updates",
    "counts_sent": "Evaluation counts (noised histograms, small cells merged)",
    "counts_opened": "Shares of the decryption of summed evaluation counts",
    "own_counts_shared": "This site's own evaluation counts",
    "importance_shared": "Feature importance",
    "drift_shared": "Drift histograms (noised, per watched feature)",
    "model_released": "Decryption of the final model",
}


@dataclass(frozen=True)
class Section:
    """One section: a title, paragraphs, and an optional table (header row first)."""

    title: str
    paragraphs: tuple[str, ...]
    table: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ParticipationReport:
    """The report's content; renderers (HTML, PDF) only lay it out."""

    site: str
    study: str
    plan_hash: str
    generated_at: datetime
    sections: tuple[Section, ...]
    audit_intact: bool | None

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)


def _find_plan(site: SiteDir, study: str) -> ReceivedPlan:
    plans = received_plans(site)
    for plan in plans:  # newest first: the latest plan of a study by its name
        if study in (plan.plan_hash, plan.study):
            return plan
    raise TesseraError(ErrorCode.NOT_FOUND,
                       f"study: no study named or hashed {study!r} was received at site "
                       f"'{site.name}'")


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _approvals(store: SiteStore, digest: str) -> Section:
    rows = [(_when(a.at), a.decision, a.actor, a.note or "-")
            for a in store.approvals() if a.plan_hash == digest]
    if not rows:
        text = "This plan was never approved here: the site agent refuses all of its tasks."
    else:
        last = rows[-1]
        text = f"Latest decision: {last[1]} by {last[2]} on {last[0]}."
    return Section("Approval", (text,), (("when", "decision", "by", "note"), *rows))


def _outbound(store: SiteStore, digest: str) -> Section:
    events = [e for e in store.events() if e.plan_hash == digest]
    kinds: Counter[str] = Counter()
    rounds: dict[str, set[int]] = {}
    rows_used: dict[str, int] = {}
    sizes: Counter[str] = Counter()
    unsized: Counter[str] = Counter()
    for e in events:
        if e.kind not in _OUTBOUND:
            continue
        kinds[e.kind] += 1
        if isinstance(e.details.get("round"), int):
            rounds.setdefault(e.kind, set()).add(int(e.details["round"]))
        if isinstance(e.details.get("rows"), int):
            rows_used[e.kind] = max(rows_used.get(e.kind, 0), int(e.details["rows"]))
        if isinstance(e.details.get("bytes"), int):
            sizes[e.kind] += int(e.details["bytes"])
        else:
            unsized[e.kind] += 1
    table = [("what", "times", "rounds", "rows summarised", "size sent")]
    for kind, label in _OUTBOUND.items():
        if kinds[kind]:
            done = sorted(rounds.get(kind, ()))
            table.append((label, str(kinds[kind]), ", ".join(map(str, done)) or "-",
                          str(rows_used[kind]) if kind in rows_used else "-",
                          _size(sizes[kind], unsized[kind])))
    refused = sum(1 for e in events if e.kind in ("task_refused", "budget_refusal",
                                                  "study_refused"))
    lines = ["Only encrypted or noised aggregates left the site; no patient record and no "
             "individual value did. Each release is listed with how often it happened and "
             "how many bytes it took on the wire in all (the sizes, never the contents)."]
    if refused:
        lines.append(f"The site agent refused {refused} task(s) of this study (see the audit "
                     "trail for each reason).")
    if len(table) == 1:
        lines.append("Nothing has left the site for this study yet.")
    return Section("What left the site", tuple(lines), tuple(table) if len(table) > 1 else ())


def _size(total: int, unsized: int) -> str:
    """A byte total for people ("1.2 MB"); releases recorded before sizes were kept say so."""
    if total == 0 and unsized:
        return "not recorded"
    amount = float(total)
    for unit in ("bytes", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            text = f"{total} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"
            break
        amount /= 1000
    return f"{text} ({unsized} not recorded)" if unsized else text


def _privacy(site: SiteDir, store: SiteStore, digest: str) -> Section:
    table = [("dataset", "before the study", "spent by the study", "after", "ceiling",
              "total used")]
    for budget in budget_overview(site):
        mine = [e for e in budget.entries if e.plan_hash == digest]
        if not mine:
            continue
        first = budget.entries.index(mine[0])
        before = budget.entries[first - 1].epsilon_cumulative if first else 0.0
        after = mine[-1].epsilon_cumulative
        kinds = ", ".join(sorted({release_text(e.kind) for e in mine}))
        table.append((f"{budget.dataset} ({kinds})", f"{before:.3f}", f"{after - before:.3f}",
                      f"{after:.3f}", f"{budget.ceiling:g}", f"{budget.fraction_spent:.0%}"))
    text = ("Epsilon measures the privacy cost: the smaller, the less any one patient's record "
            "can influence what left the site. Each dataset's total, across every study, is "
            "kept below the site's ceiling.")
    if len(table) == 1:
        return Section("Privacy budget", (text, "This study has spent no privacy budget."))
    return Section("Privacy budget", (text,), tuple(table))


def _consent(store: SiteStore) -> Section:
    events = [e for e in store.events() if e.kind.startswith("consent_")]
    withdrawn = sum(int(e.details.get("count", 0)) for e in events
                    if e.kind in ("consent_withdrawn", "consent_imported"))
    granted = sum(int(e.details.get("count", 0)) for e in events if e.kind == "consent_granted")
    return Section("Consent", (
        f"{withdrawn} withdrawal(s) and {granted} renewed consent(s) are recorded at this site. "
        "Rows of patients who withdrew are left out of every later training and evaluation "
        "round, and out of local evaluations.",))


def _metrics(store: SiteStore, digest: str, plan_toml: str) -> Section:
    plan = parse_plan(plan_toml)
    names = label_names(plan)
    runs = [e for e in store.events(kind="local_evaluation") if e.plan_hash == digest]
    lines = [f"Positive means {names.positive}; negative means {names.negative}."]
    table: tuple[tuple[str, ...], ...] = ()
    if runs:
        d = runs[-1].details
        lines.insert(0, f"The final model, evaluated on {d.get('n')} held-out rows of this "
                        f"site on {_when(runs[-1].at)}:")
        table = (("measure", "value"),
                 ("accuracy", _fmt(d.get("accuracy"))), ("AUC", _fmt(d.get("auc"))),
                 (f"{names.positive} found ({names.positive} predicted)", str(d.get("tp"))),
                 (f"{names.positive} missed (predicted {names.negative})", str(d.get("fn"))),
                 (f"{names.negative} predicted {names.positive}", str(d.get("fp"))),
                 (f"{names.negative} found", str(d.get("tn"))))
    else:
        lines.insert(0, "The model has not been evaluated at this site yet (Evaluation page, "
                        "or 'tessera site evaluate').")
    return Section("The model at this site", tuple(lines), table)


def _rate(value: float) -> str:
    return "not defined" if value != value else f"{value:.3f}"  # nan != nan


def _fairness(store: SiteStore, digest: str, plan_toml: str) -> Section:
    """Rates per group of the sensitive column, from the latest local evaluation's counts
    (computed at the site on its held-out rows; nothing new is released for it)."""
    plan = parse_plan(plan_toml)
    names, sensitive = label_names(plan), plan.dataset.sensitive
    title = "Fairness at this site"
    if not sensitive:
        return Section(title, ("The plan defines no sensitive column, so no fairness measure "
                               "applies.",))
    runs = [e for e in store.events(kind="local_evaluation") if e.plan_hash == digest]
    groups = runs[-1].details.get("groups") if runs else None
    if not isinstance(groups, dict) or not groups:
        return Section(title, (f"No local evaluation split by {sensitive} is recorded yet; "
                               "evaluating the model at this site measures it.",))
    # Two score bins, below and at or above 0.5: (positives, negatives) per group.
    histograms = {str(g): (np.array([int(c["fn"]), int(c["tp"])]),
                           np.array([int(c["tn"]), int(c["fp"])])) for g, c in groups.items()}
    result = group_fairness(histograms, threshold=0.5)
    table = [(sensitive, "rows", f"predicted {names.positive}",
              f"{names.positive} found (TPR)", f"{names.negative} predicted "
              f"{names.positive} (FPR)")]
    for group, rates in result.groups.items():
        table.append((group, str(rates.n), _rate(rates.selection_rate), _rate(rates.tpr),
                      _rate(rates.fpr)))
    lines = (f"The final model on this site's held-out rows, per {sensitive} group, at the "
             "0.5 threshold. Computed here from the site's own predictions; nothing extra "
             "left the site for it.",
             f"Demographic parity difference {_rate(result.demographic_parity_difference)} "
             f"(ratio {_rate(result.demographic_parity_ratio)}); equalized odds difference "
             f"{_rate(result.equalized_odds_difference)}. 0 means the groups are treated "
             "alike; small groups make these figures uncertain.")
    return Section(title, lines, tuple(table))


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "not defined"


def _audit(site: SiteDir) -> tuple[Section, bool | None]:
    path = site.audit_log
    if not path.exists():
        return Section("Audit trail", ("This site keeps no audit log yet (it writes one once "
                                       "it has a kit and its agent has run).",)), None
    report = verify_log(path)
    if report.ok:
        text = (f"Verified intact: {report.records} records, hash-chained and signed; "
                f"{report.checkpointed} of them under a signed checkpoint.")
    else:
        where = f" at line {report.line}" if report.line is not None else ""
        text = f"Verification FAILED{where}: {report.message}"
    return Section("Audit trail", (text,)), report.ok


def build_report(site: SiteDir, study: str) -> ParticipationReport:
    """The report on ``study`` (its name, or a plan hash) at ``site``."""
    plan = _find_plan(site, study)
    intro = Section("Study", (
        plan.summary.description or plan.study,
        f"Plan hash {plan.plan_hash} (received {_when(plan.received_at)} from {plan.source}; "
        f"status: {plan.status}). Any change to the plan changes this hash and needs a new "
        "approval.",
        f"Short form of the hash: {short_hash(plan.plan_hash)}."))
    with SiteStore.open(site) as store:
        sections = [intro, _approvals(store, plan.plan_hash), _outbound(store, plan.plan_hash),
                    _privacy(site, store, plan.plan_hash), _consent(store),
                    _metrics(store, plan.plan_hash, plan.plan_toml),
                    _fairness(store, plan.plan_hash, plan.plan_toml)]
    audit, intact = _audit(site)
    sections.append(audit)
    return ParticipationReport(site=site.name, study=plan.study, plan_hash=plan.plan_hash,
                               generated_at=datetime.now(UTC), sections=tuple(sections),
                               audit_intact=intact)
