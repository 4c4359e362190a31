"""The site's study inbox: received plans, their readable summary, diffs and decisions.

Plans arrive from a file (``tessera site study receive``) or from the coordinator (the agent
stores every plan it is sent, approved or not). Each is validated and kept once per plan
hash in the append-only ``study_plans`` table, with a ``study_plan_received`` event the
first time. A plan's status is the latest approval decision about its hash ("pending"
without one). :func:`plan_diff` compares a plan with the newest earlier plan of the same
study name, field by field and as a unified diff of the TOML renderings.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from client_app.governance.budget import check_plan_privacy
from client_app.store.folder import SiteDir
from client_app.store.site_store import SiteStore
from client_app.store.tables import ApprovalRow, StudyPlanRow
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, parse_plan, plan_hash, plan_to_toml
from privacy.release_plan import budget_split

PLAN_SOURCES = ("file", "coordinator")
DECISIONS = ("approved", "rejected", "revoked")
RECEIVED_EVENT = "study_plan_received"
MAX_PLAN_CHARS = 1_000_000
_PLAN_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
_ABSENT = "(absent)"


@dataclass(frozen=True)
class StudySummary:
    """What an operator reviews before approving a plan hash."""

    plan_hash: str
    study: str
    description: str
    model: str
    features: tuple[str, ...]
    label: str
    sensitive: str | None
    rounds: int
    local_epochs: int
    dp: bool
    target_epsilon: float
    delta: float
    he_enabled: bool
    min_sites: int
    release_policy: str
    kpis: dict[str, float]
    #: The plan's data dictionary, one readable line per described column (may be empty).
    columns: dict[str, str] = field(default_factory=dict)
    #: The budget split: each release besides DP-SGD and what it costs (empty without DP).
    budget_split: tuple[str, ...] = ()
    budget_split_json: dict[str, object] | None = None
    #: Sites whose signatures on a sum this site accepts instead of checking every
    #: contribution itself ([federation] attesters; 0: it checks every one).
    attesters: int = 0

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs for display, in review order."""
        privacy = (f"DP-SGD, target epsilon {self.target_epsilon:g} at delta {self.delta:g} "
                   "for the whole study" if self.dp else "no differential privacy")
        gates = ", ".join(f"{k} {v:g}" for k, v in sorted(self.kpis.items())) or "none"
        return [
            ("plan hash", self.plan_hash),
            ("study", self.study),
            ("description", self.description or "-"),
            ("model", self.model),
            ("features", f"{len(self.features)}: {', '.join(self.features)}"),
            ("label", self.label),
            ("sensitive column", self.sensitive or "none"),
            ("rounds", f"{self.rounds} ({self.local_epochs} local epoch(s) each)"),
            ("privacy", privacy),
            *(("budget split", line) for line in self.budget_split),
            ("encryption", "CKKS homomorphic encryption of every update" if self.he_enabled
             else "none: updates travel in plaintext"),
            ("minimum sites", str(self.min_sites)),
            ("sum verification", "this site checks every contribution it sums" if
             not self.attesters else f"for training and evaluation, this site decrypts sums "
             f"that {self.attesters} key-holding site(s) checked and signed; the "
             "release checks every contribution"),
            ("release policy", self.release_policy),
            ("KPI gates", gates),
            *((f"column {name}", text) for name, text in self.columns.items()),
        ]

    def to_json(self) -> dict[str, object]:
        doc = {**self.__dict__, "features": list(self.features), "kpis": dict(self.kpis),
               "columns": dict(self.columns), "budget_split": self.budget_split_json}
        doc.pop("budget_split_json")
        return doc


@dataclass(frozen=True)
class FieldChange:
    """One changed plan field (dotted path) with its old and new value as text."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class PlanDiff:
    """A plan against the newest earlier plan of the same study (None: nothing to compare)."""

    plan_hash: str
    previous_hash: str | None
    changes: tuple[FieldChange, ...]
    unified: str


@dataclass(frozen=True)
class ReceivedPlan:
    """A plan in the site's inbox and the operator's current decision about it."""

    plan_hash: str
    study: str
    received_at: datetime
    source: str
    status: str
    summary: StudySummary
    plan_toml: str

    def to_json(self) -> dict[str, object]:
        return {"plan_hash": self.plan_hash, "study": self.study,
                "received_at": self.received_at.isoformat(), "source": self.source,
                "status": self.status}


def _model_text(plan: StudyPlan) -> str:
    if plan.model.kind == "mlp":
        return (f"mlp (one hidden layer of {plan.model.hidden} units, group norm in "
                f"{plan.model.groups} groups)")
    if plan.model.kind == "cnn":
        return (f"cnn (two 3x3 convolutions with group norm in {plan.model.groups} groups, "
                f"a hidden layer of {plan.model.hidden} units)")
    return "logreg (logistic regression)"


def _column_text(spec: Any) -> str:
    """``number, mm, 0 to 50: description`` for one data-dictionary column."""
    parts = [str(spec.type)]
    if getattr(spec, "unit", ""):
        parts.append(spec.unit)
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if low is not None or high is not None:
        parts.append(f"{'-inf' if low is None else f'{low:g}'} to "
                     f"{'inf' if high is None else f'{high:g}'}")
    if getattr(spec, "categories", None):
        parts.append("one of " + "/".join(spec.categories))
    text = ", ".join(parts)
    return f"{text}: {spec.description}" if getattr(spec, "description", "") else text


def release_policy_text(plan: StudyPlan) -> str:
    """The plan's release policy in words (what the agent's release check enforces)."""
    n = plan.federation.min_sites
    return (f"after round {plan.training.rounds}, one site (the key custodian named at run "
            f"time) decrypts the final aggregate, and only if it sums at least {n} "
            f"site(s){' and covers examples beyond its own' if n > 1 else ''}; no single "
            "site's update is ever released")


def summarise(plan: StudyPlan) -> StudySummary:
    """The readable summary of ``plan``."""
    split = budget_split(plan)
    return StudySummary(
        plan_hash=plan_hash(plan), study=plan.name, description=plan.study.description,
        model=_model_text(plan), features=tuple(plan.dataset.features),
        label=plan.dataset.label, sensitive=plan.dataset.sensitive,
        rounds=plan.training.rounds, local_epochs=plan.training.local_epochs,
        dp=plan.privacy.dp, target_epsilon=plan.privacy.target_epsilon,
        delta=plan.privacy.delta, he_enabled=plan.he.enabled,
        min_sites=plan.federation.min_sites, release_policy=release_policy_text(plan),
        kpis=dict(plan.kpis.gates()) if plan.kpis is not None else {},
        columns={name: _column_text(spec)
                 for name, spec in (getattr(plan.dataset, "columns", None) or {}).items()},
        budget_split=() if split is None else tuple(split.lines()),
        budget_split_json=None if split is None else split.to_json(),
        attesters=plan.federation.attesters,
    )


def check_plan_hash(value: str) -> str:
    """``value`` lower-cased if it is 64 hex characters; PLAN_INVALID otherwise."""
    if not isinstance(value, str) or not _PLAN_HASH.fullmatch(value):
        length = len(value) if isinstance(value, str) else 0
        raise TesseraError(ErrorCode.PLAN_INVALID,
                           f"plan hash must be 64 hexadecimal characters (got {length})")
    return value.lower()


def receive_plan(site: SiteDir, toml_text: str, *, source: str = "file") -> ReceivedPlan:
    """Validate a plan and keep it in the inbox (idempotent by plan hash)."""
    if source not in PLAN_SOURCES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"source: must be one of {', '.join(PLAN_SOURCES)}")
    if len(toml_text) > MAX_PLAN_CHARS:
        raise TesseraError(ErrorCode.PLAN_INVALID,
                           f"study plan: larger than {MAX_PLAN_CHARS} characters")
    plan = parse_plan(toml_text)
    digest = plan_hash(plan)
    with SiteStore.open(site) as store:
        file_plan(store, plan, toml_text, digest=digest, source=source)
        row = _row(store, digest)
        assert row is not None
        return _received(row, _decisions(store).get(digest))


def file_plan(store: SiteStore, plan: StudyPlan, toml_text: str, *, digest: str,
              source: str) -> bool:
    """Keep an already validated plan (``toml_text`` parsed to ``plan``, whose hash is
    ``digest``) in the inbox unless it is there; whether it was new.

    What :func:`receive_plan` does without parsing again nor building the summary: the agent
    files every plan it is sent this way, in its task's store.
    """
    if source not in PLAN_SOURCES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"source: must be one of {', '.join(PLAN_SOURCES)}")
    with store.transaction() as session:
        if session.exec(select(StudyPlanRow.id)
                        .where(StudyPlanRow.plan_hash == digest)).first() is not None:
            return False
    try:
        with store.transaction(write=True) as session:
            if session.exec(select(StudyPlanRow.id)
                            .where(StudyPlanRow.plan_hash == digest)).first() is not None:
                return False
            session.add(StudyPlanRow(at=datetime.now(UTC), plan_hash=digest, study=plan.name,
                                     plan_toml=toml_text, source=source))
            session.add(store.event_row(RECEIVED_EVENT, plan_hash=digest, details={
                "study": plan.name, "source": source}))
            return True
    except IntegrityError:
        return False  # another process stored the same hash first (non-SQLite backends)


def received_plans(site: SiteDir) -> list[ReceivedPlan]:
    """Every received plan, newest first."""
    with SiteStore.open(site) as store:
        with store.transaction() as session:
            rows = session.exec(
                select(StudyPlanRow).order_by(col(StudyPlanRow.id).desc())).all()
        decisions = _decisions(store)
    return [_received(r, decisions.get(r.plan_hash)) for r in rows]


def received_plan(site: SiteDir, plan_hash_: str) -> ReceivedPlan:
    """One received plan by hash; NOT_FOUND if this site never received it."""
    digest = check_plan_hash(plan_hash_)
    with SiteStore.open(site) as store:
        row = _row(store, digest)
        if row is None:
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"no study plan {digest[:12]} received at site '{site.name}'")
        return _received(row, _decisions(store).get(digest))


def plan_diff(site: SiteDir, plan_hash: str) -> PlanDiff:
    """``plan_hash`` against the newest plan of the same study received before it."""
    digest = check_plan_hash(plan_hash)
    with SiteStore.open(site) as store:
        row = _row(store, digest)
        if row is None:
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"no study plan {digest[:12]} received at site '{site.name}'")
        with store.transaction() as session:
            previous = session.exec(
                select(StudyPlanRow)
                .where(StudyPlanRow.study == row.study, col(StudyPlanRow.id) < (row.id or 0))
                .order_by(col(StudyPlanRow.id).desc()).limit(1)
            ).first()
    if previous is None:
        return PlanDiff(plan_hash=digest, previous_hash=None, changes=(), unified="")
    old_plan, new_plan = parse_plan(previous.plan_toml), parse_plan(row.plan_toml)
    old_flat, new_flat = _flatten(_plain(old_plan)), _flatten(_plain(new_plan))
    changes = tuple(
        FieldChange(path=p, old=old_flat.get(p, _ABSENT), new=new_flat.get(p, _ABSENT))
        for p in sorted(old_flat.keys() | new_flat.keys())
        if old_flat.get(p) != new_flat.get(p)
    )
    unified = "".join(difflib.unified_diff(
        plan_to_toml(old_plan).splitlines(keepends=True),
        plan_to_toml(new_plan).splitlines(keepends=True),
        fromfile=f"{previous.plan_hash[:12]}.toml", tofile=f"{digest[:12]}.toml",
    ))
    return PlanDiff(plan_hash=digest, previous_hash=previous.plan_hash, changes=changes,
                    unified=unified)


def decide(site: SiteDir, plan_hash: str,
           decision: Literal["approved", "rejected", "revoked"], *, actor: str,
           note: str = "") -> None:
    """Record the operator's decision about a plan hash (the agent serves approved ones).

    Only a plan the site received (its inbox) can be approved, after its privacy terms are
    checked against the site's (:func:`client_app.governance.budget.check_plan_privacy`:
    PERMISSION_DENIED for a delta above the site's or a non-private plan the site does not
    allow); an unknown hash is NOT_FOUND. Only an approved plan can be revoked. Rejecting
    needs neither: a site may refuse a plan before it arrives.
    """
    digest = check_plan_hash(plan_hash)
    if decision not in DECISIONS:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"decision: must be one of {', '.join(DECISIONS)}")
    if not isinstance(actor, str) or not actor.strip():
        raise TesseraError(ErrorCode.CONFIG_INVALID, "actor: must be a non-empty string")
    with SiteStore.open(site) as store:
        if decision == "approved":
            received = _row(store, digest)
            if received is None:
                raise TesseraError(
                    ErrorCode.NOT_FOUND,
                    f"plan {digest[:12]} was never received at this site: review it first "
                    "('tessera site study receive PLAN.toml', then 'site study show')")
            check_plan_privacy(store, parse_plan(received.plan_toml), dataset_rows=None)
        if decision == "revoked" and not store.is_approved(digest):
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"plan {digest[:12]} is not approved at this site: "
                               "nothing to revoke")
        {"approved": store.approve, "rejected": store.reject,
         "revoked": store.revoke}[decision](digest, actor=actor, note=note)


# -- helpers ---------------------------------------------------------------------------------

def _row(store: SiteStore, digest: str) -> StudyPlanRow | None:
    with store.transaction() as session:
        return session.exec(select(StudyPlanRow).where(StudyPlanRow.plan_hash == digest)).first()


def _decisions(store: SiteStore) -> dict[str, str]:
    """The latest decision per plan hash."""
    latest = (select(ApprovalRow.plan_hash, sa.func.max(ApprovalRow.id).label("last"))
              .group_by(ApprovalRow.plan_hash).subquery())
    query = select(ApprovalRow.plan_hash, ApprovalRow.decision).join(
        latest, col(ApprovalRow.id) == latest.c.last)
    with store.transaction() as session:
        return {h: d for h, d in session.exec(query).all()}


def _received(row: StudyPlanRow, decision: str | None) -> ReceivedPlan:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return ReceivedPlan(
        plan_hash=row.plan_hash, study=row.study, received_at=at, source=row.source,
        status=decision or "pending", summary=summarise(parse_plan(row.plan_toml)),
        plan_toml=row.plan_toml,
    )


def _plain(plan: StudyPlan) -> dict[str, Any]:
    """The plan as plain data, as it is hashed (unset optional tables and gates left out)."""
    return plan.model_dump(mode="json", exclude_none=True)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: _text(value)}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)
