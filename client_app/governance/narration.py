"""The site's records in plain language: one sentence per event, decision or privacy release.

An operator, an ethics board or a data-protection officer reads "Sent an encrypted update for
round 2 of breast_cancer", not ``update_sent digest=...``. :func:`narrate` turns one record
(its kind, its details, its plan hash) into such a sentence; :func:`actor_name` gives the one
actor vocabulary: the named operator who acted, else "site agent" (the process that acts on
the coordinator's tasks). Hashes and fingerprints are shortened with :func:`short_hash` (the
full value stays in the raw record). A kind this module does not know still gets a sentence
from its name and its scalar details, never a raw dict or list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.plan import StudyPlan

#: Who acted when no operator is named: the site's own agent process.
SITE_AGENT = "site agent"
#: Who acted when the site folder was created.
SITE_SETUP = "site set-up"
#: Names that earlier versions recorded for the agent or the site itself.
_AGENT_ALIASES = frozenset({"", "site", "site-agent", "site_agent", "agent", "system"})

Details = Mapping[str, Any]


def short_hash(value: str | None, *, head: int = 6, tail: int = 5) -> str:
    """``2a1f9c...d52d3`` for a long hex digest or fingerprint; short values unchanged."""
    if not value:
        return ""
    text = str(value)
    return text if len(text) <= head + tail + 3 else f"{text[:head]}...{text[-tail:]}"


def actor_name(details: Details) -> str:
    """The named operator in ``details``, else :data:`SITE_AGENT`."""
    for key in ("actor", "party", "confirmed_by"):
        name = str(details.get(key) or "").strip()
        if name.lower() == "init":
            return SITE_SETUP
        if name and name.lower() not in _AGENT_ALIASES:
            return name
    return SITE_AGENT


def plural(count: object, noun: str) -> str:
    """``1 patient``, ``3 patients``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _number(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _scalar_text(details: Details) -> str:
    """``key value; key value`` of the scalar details (lists as counts, no hashes in full)."""
    parts = []
    for key, value in sorted(details.items()):
        if key in ("actor",) or value is None:
            continue
        words = key.replace("_", " ")
        if isinstance(value, bool):
            parts.append(f"{words} {'yes' if value else 'no'}")
        elif isinstance(value, (int, float)):
            parts.append(f"{words} {_number(value)}")
        elif isinstance(value, str):
            shown = short_hash(value) if len(value) >= 32 else value
            parts.append(f"{words} {shown}")
        elif isinstance(value, (list, tuple, dict)):
            parts.append(f"{words}: {len(value)}")
    return "; ".join(parts)


def _round(d: Details) -> str:
    return f"round {d['round']}" if d.get("round") is not None else "a round"


def _consent(verb: str) -> Callable[[Details, str], str]:
    def sentence(d: Details, study: str) -> str:
        scope = d.get("scope")
        where = "all studies" if scope in (None, "*") else f"study {scope}"
        return f"{verb} consent for {plural(d.get('count', 0), 'patient')} ({where})"
    return sentence


def _refusal(d: Details, study: str) -> str:
    task = str(d.get("task") or "a").replace("_", " ")
    reason = str(d.get("reason") or d.get("code") or "no reason given")
    return f"Refused the {task} task for {_round(d)} of {study}: {reason}"


def _budget_refusal(d: Details, study: str) -> str:
    projected, ceiling = d.get("projected"), d.get("ceiling")
    tail = (f": it would have raised epsilon to {projected:.3f}, above the ceiling {ceiling:g}"
            if isinstance(projected, (int, float)) and isinstance(ceiling, (int, float)) else "")
    return f"Refused {_round(d)} of {study} to stay within the privacy budget{tail}"


def _evaluation(d: Details, study: str) -> str:
    acc, auc = d.get("accuracy"), d.get("auc")
    scores = ", ".join(f"{name} {v:.3f}" for name, v in (("accuracy", acc), ("AUC", auc))
                       if isinstance(v, (int, float)))
    return (f"Evaluated the {study} model on {plural(d.get('n', 0), 'held-out row')} of this "
            f"site" + (f" ({scores})" if scores else ""))


def _sharing(d: Details, study: str) -> str:
    what = str(d.get("what", "statistics"))
    if what == "min_cell_count":
        return f"Set the smallest shared count cell to {d.get('value')}"
    words = {"own_counts": "this site's own evaluation counts",
             "importance": "feature importance",
             "drift": "drift statistics with the coordinator"}.get(what, what.replace("_", " "))
    return f"{'Started' if d.get('allowed') else 'Stopped'} sharing {words}"


def _recipients(d: Details, study: str) -> str:
    names = [str(r.get("site")) for r in d.get("recipients", []) if isinstance(r, Mapping)]
    return (f"Confirmed who receives the encryption key of {study}: "
            f"{', '.join(names) or 'no other site'}")


#: One sentence per kind: (details, study name) -> text.
_SENTENCES: dict[str, Callable[[Details, str], str]] = {
    "study_plan_received": lambda d, s: f"Received the study plan of {s} (from "
                                        f"{d.get('source', 'the coordinator')})",
    "study_received": lambda d, s: f"Joined run {d.get('run_id', 'unknown')} of {s}",
    "study_refused": lambda d, s: f"Refused a task of {s}: {d.get('reason', 'not approved')}",
    "task_refused": _refusal,
    "update_sent": lambda d, s: f"Sent an encrypted update for {_round(d)} of {s}",
    "stats_sent": lambda d, s: f"Sent encrypted, noised feature statistics of {s} "
                               "(round 0)",
    "counts_sent": lambda d, s: f"Sent {'encrypted' if d.get('encrypted') else 'noised'} "
                                f"evaluation counts for {_round(d)} of {s}",
    "counts_opened": lambda d, s: f"Helped open the summed evaluation counts of {_round(d)} "
                                  f"of {s} ({plural(len(d.get('contributors', [])), 'site')})",
    "own_counts_shared": lambda d, s: f"Shared this site's own evaluation counts "
                                      f"({plural(d.get('rows', 0), 'row')}) for {s}",
    "importance_shared": lambda d, s: f"Shared feature importance measured on "
                                      f"{plural(d.get('rows', 0), 'held-out row')} for {s}",
    "drift_shared": lambda d, s: f"Shared noised drift histograms of {s}" + (
        " again (the answer already released for this data version)" if d.get("repeated")
        else ""),
    "reply_resent": lambda d, s: f"Sent the same {str(d.get('task', 'step')).replace('_', ' ')}"
                                 f" answer for {_round(d)} of {s} again (asked again after a "
                                 "coordinator restart; nothing new computed or released)",
    "sum_attested": lambda d, s: f"Checked {plural(d.get('sites', 0), 'site')}' "
                                 f"{d.get('set', 'weights')} contributions to {_round(d)} of "
                                 f"{s} and signed their sum for the other sites (nothing "
                                 "decrypted or spent)",
    "model_exported": lambda d, s: f"Exported a kept model of {s} to ONNX for serving "
                                   "(parity checked on this site's rows)",
    "model_released": lambda d, s: f"Released the final model of {s} ({_round(d)}, "
                                   f"{plural(len(d.get('contributors', [])), 'site')})",
    "global_model_stored": lambda d, s: f"Stored the global model of {s} after {_round(d)}",
    "budget_refusal": _budget_refusal,
    "ledger_sealed": lambda d, s: f"Sealed {plural(d.get('entries', 0), 'privacy-ledger entry')}"
                                  " with the ledger key",
    "ceiling_changed": lambda d, s: (f"Set the privacy ceiling to {_number(d.get('new'))}"
                                     if d.get("old") == d.get("new") else
                                     f"Changed the privacy ceiling from {_number(d.get('old'))} "
                                     f"to {_number(d.get('new'))}"),
    "delta_changed": lambda d, s: f"Changed the site's delta from {_number(d.get('old'))} to "
                                  f"{_number(d.get('new'))}",
    "non_private_changed": lambda d, s: ("Allowed" if d.get("allowed") else "Stopped allowing")
                                        + " studies without differential privacy",
    "sharing_changed": _sharing,
    "local_evaluation": _evaluation,
    "role_denied": lambda d, s: f"Refused '{d.get('command', 'an action')}' to the "
                                f"{d.get('role', 'current')} role",
    "dataset_registered": lambda d, s: f"Registered version {short_hash(d.get('version'))} of "
                                       f"{d.get('dataset', 'a dataset')} "
                                       f"({plural(d.get('rows', 0), 'row')})",
    "consent_withdrawn": _consent("Withdrew"),
    "consent_granted": _consent("Granted"),
    "consent_imported": lambda d, s: f"Imported an opt-out list: {d.get('count', 0)} "
                                     f"withdrawn, {d.get('unchanged', 0)} already withdrawn",
    "kit_imported": lambda d, s: f"Imported the site kit of federation "
                                 f"{d.get('federation', 'unknown')} (coordinator key "
                                 f"{short_hash(d.get('coordinator_key'))})",
    "passphrase_rotated": lambda d, s: "Changed the site passphrase",
    "he_key_generated": lambda d, s: f"Made the encryption key of {s} (fingerprint "
                                     f"{short_hash(d.get('fingerprint'))})",
    "he_key_sealed": lambda d, s: f"Key shared with {d.get('recipient', 'unknown')} (fingerprint "
                                  f"{short_hash(d.get('fingerprint'))})",
    "he_key_imported": lambda d, s: f"Received the encryption key of {s} from "
                                    f"{d.get('custodian', 'unknown')} (fingerprint "
                                    f"{short_hash(d.get('fingerprint'))})",
    "he_recipients_confirmed": _recipients,
    "epsilon_spent": lambda d, s: f"Spent epsilon on {d.get('dataset_id', 'a dataset')} for "
                                  f"{release_text(str(d.get('kind', 'a release')))} in "
                                  f"{_round(d)} of {s} ({_number(d.get('epsilon_cumulative'))} "
                                  "spent in total)",
    "study_approved": lambda d, s: f"Approved study {s}",
    "study_rejected": lambda d, s: f"Rejected study {s}",
    "study_revoked": lambda d, s: f"Revoked the approval of study {s}",
}


def narrate(kind: str, details: Details, *, study: str | None = None) -> str:
    """One plain sentence for a record of ``kind`` (any kind, known or not)."""
    subject = study or "a study"
    sentence = _SENTENCES.get(kind)
    if sentence is not None:
        try:
            return sentence(details, subject)
        except (TypeError, ValueError, AttributeError):
            pass  # an unexpected detail shape: fall back to the generic sentence
    words = kind.replace("_", " ").strip().capitalize() or "Event"
    rest = _scalar_text(details)
    return f"{words}" + (f" ({rest})" if rest else "")


@dataclass(frozen=True)
class Activity:
    """One record of the site in plain language, with its raw form one click away."""

    at: datetime
    kind: str
    actor: str
    sentence: str
    plan_hash: str | None
    study: str | None
    raw: str

    @property
    def plan_short(self) -> str:
        return short_hash(self.plan_hash)


def raw_text(record: Mapping[str, Any]) -> str:
    """The raw record as indented JSON (what the store holds; no patient data)."""
    return json.dumps(record, indent=2, sort_keys=True, default=str)


def activity(*, at: datetime, kind: str, details: Details, plan_hash: str | None,
             studies: Mapping[str, str], actor: str | None = None) -> Activity:
    """An :class:`Activity` of one record; ``studies`` maps plan hashes to study names."""
    study = studies.get(plan_hash) if plan_hash else None
    study = study or (str(details["study"]) if isinstance(details.get("study"), str) else None)
    raw = {"at": at.isoformat(), "kind": kind, "plan_hash": plan_hash, "details": dict(details)}
    return Activity(at=at, kind=kind, actor=actor or actor_name(details),
                    sentence=narrate(kind, details, study=study), plan_hash=plan_hash,
                    study=study, raw=raw_text(raw))


@dataclass(frozen=True)
class LabelNames:
    """What the label's two classes mean, from the plan's data dictionary."""

    label: str
    positive: str
    negative: str
    description: str


def label_names(plan: StudyPlan) -> LabelNames:
    """``positive`` = the label column's name (label 1), ``negative`` = "not <label>"."""
    label = plan.dataset.label
    column = (plan.dataset.columns or {}).get(label)
    words = label.replace("_", " ")
    description = column.description if column is not None else ""
    return LabelNames(label=label, positive=words, negative=f"not {words}",
                      description=description or f"1 when {words}, 0 otherwise")


#: What each kind of privacy release is, in words (unknown kinds use their own name).
_RELEASES = {
    "dp_sgd": "local DP-SGD training",
    "statistics": "noised feature statistics",
    "evaluation_counts": "noised evaluation counts",
    "importance": "noised feature importance",
    "loso_counts": "this site's own evaluation counts",
    "drift": "noised drift histograms",
}
#: Mechanisms in words (unknown mechanisms use their own name).
_MECHANISMS = {
    "poisson_subsampled_gaussian": "subsampled Gaussian noise",
    "gaussian": "Gaussian noise",
}


def release_text(kind: str) -> str:
    """A ledger entry's kind of release in words, for any kind."""
    return _RELEASES.get(kind, kind.replace("_", " "))


def mechanism_text(name: str) -> str:
    """A ledger entry's mechanism in words, for any mechanism."""
    return _MECHANISMS.get(name, name.replace("_", " "))


def release_sentence(*, kind: str, mechanism: str, round_: int, study: str, dataset: str,
                     added: float, alone: float, cumulative: float) -> str:
    """One ledger entry explained: what was released, by which mechanism, at what cost.

    ``added`` is how much the dataset's cumulative epsilon grew with this entry; ``alone`` the
    entry's own epsilon. Composition is tighter than a sum, so ``added`` is usually smaller.
    """
    when = "round 0 (statistics)" if round_ == 0 and kind != "dp_sgd" else f"round {round_}"
    return (f"{when.capitalize()} of {study}: {release_text(kind)} with "
            f"{mechanism_text(mechanism)} added epsilon {added:.3f} to {dataset}, "
            f"{cumulative:.3f} spent in total after it (this release alone: epsilon "
            f"{alone:.3f}; releases compose to less than their sum)")
