"""The site operator's facade: one unlocked site, who is operating it, and every action on it.

The desktop app (``gui/``) talks to a site only through :class:`SiteOperator`: it holds the
site folder, the unlocked vault, the operator's name and role and the access policy, and
delegates to the site services (datasets, consent, studies, budget, evaluation, node,
reports), so the app and the ``tessera site ...`` commands run the same checks. Each action
is checked against the policy's ``"gui <page>.<action>"`` entries before it runs; the app
asks :meth:`SiteOperator.denial` to disable what the role may not do. A new site's first
steps (kit, passphrase) are the module functions re-exported from
:mod:`client_app.custody.setup`. The service types the app shows are re-exported here, so
that the app imports nothing else from ``client_app``. Importing this module loads neither
torch, Opacus nor TenSEAL: local evaluation loads them on first use, so the app opens fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from client_app.custody.caller import caller_identity, load_access_policy, require_own_folder
from client_app.custody.setup import (
    KitPreview,
    Strength,
    create_keystore,
    import_kit,
    passphrase_strength,
    preview_kit,
    site_state,
)
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.datasets import versions as datasets
from client_app.datasets.validation import POLICY_CHOICES, Issue, Policy, ValidationReport
from client_app.datasets.versions import DatasetVersion
from client_app.governance import attention, budget, budget_view, consent, sharing, studies
from client_app.governance import drift_sharing as shared_drift
from client_app.governance.attention import AttentionItem, Dashboard, Notice, PendingStudy
from client_app.governance.budget import DatasetBudget
from client_app.governance.budget_view import BudgetSnapshot, Gauge, LedgerRow
from client_app.governance.consent import GLOBAL_SCOPE, ConsentEvent, ImportResult
from client_app.governance.narration import (
    SITE_AGENT,
    Activity,
    LabelNames,
    activity,
    label_names,
    short_hash,
)
from client_app.governance.sharing import Sharing
from client_app.governance.studies import PlanDiff, ReceivedPlan, StudySummary
from client_app.node.controller import NodeController, NodeStatus
from client_app.store.events import SiteEvent
from client_app.store.folder import SiteDir, open_site_dir
from client_app.store.site_store import EventRecord, SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, parse_plan
from common.roles import Policy as AccessPolicy
from common.roles import Role
from privacy.audit_format import VerifyReport
from privacy.audit_verify import verify_log

if TYPE_CHECKING:  # torch loads with these: only when the operator evaluates a model
    from client_app.governance.participation import ParticipationReport
    from client_app.learning.local_eval import LocalEvaluation, StoredModel

__all__ = [
    "GLOBAL_SCOPE", "POLICY_CHOICES", "SITE_AGENT", "Activity", "AttentionItem",
    "BudgetSnapshot", "ConsentEvent", "Dashboard", "DatasetBudget", "DatasetVersion",
    "Decision", "EventRecord", "Gauge", "ImportResult", "Issue", "KitPreview", "LabelNames",
    "LedgerRow", "LocalEvaluation", "NodeStatus", "Notice", "ParticipationReport", "PendingStudy",
    "PlanDiff", "Policy", "ReceivedPlan", "Role", "Sharing", "SiteOperator", "StoredModel",
    "Strength", "StudySummary", "ValidationReport", "VerifyReport", "create_keystore",
    "import_kit", "load_access_policy", "notices", "passphrase_strength", "preview_kit",
    "short_hash", "site_name", "site_state",
]

Decision = Literal["approved", "rejected", "revoked"]
Progress = Callable[[float], None]
Cancelled = Callable[[], bool]
#: The site setting holding how many refusals the operator has acknowledged.
REFUSALS_SEEN = "dashboard.refusals_seen"
notices = attention.notices


def __getattr__(name: str) -> Any:
    """The types whose modules load torch, imported on first use (keeps start-up fast)."""
    if name in ("LocalEvaluation", "StoredModel"):
        from client_app.learning import local_eval
        return getattr(local_eval, name)
    if name == "ParticipationReport":
        from client_app.governance import participation
        return participation.ParticipationReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class SiteOperator:
    """An unlocked site operated by ``actor`` in ``role`` under the access ``policy``."""

    vault: SiteVault
    actor: str
    role: Role
    policy: AccessPolicy
    identity: str = ""
    passphrase: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.actor.strip():
            raise TesseraError(ErrorCode.CONFIG_INVALID, "operator name: must not be empty")
        self.node = NodeController(self.vault.site)

    @classmethod
    def open(cls, site_dir: Path, *, passphrase: str, actor: str, policy: AccessPolicy,
             kit: Path | None = None) -> SiteOperator:
        """Unlock the site folder (WRONG_PASSPHRASE if the passphrase does not open it)."""
        site = open_site_dir(site_dir)
        caller = caller_identity(kit=kit, site_dir=site.root)
        assert caller is not None  # a site folder always identifies its caller
        require_own_folder(caller, site.root)
        vault = unlock_vault(site, passphrase)
        return cls(vault=vault, actor=actor, role=caller.role, policy=policy,
                   identity=caller.describe(), passphrase=passphrase)

    @property
    def site(self) -> SiteDir:
        return self.vault.site

    # -- access ---------------------------------------------------------------------------

    def denial(self, action: str) -> str | None:
        """Why the operator may not run ``action`` (``"gui page.action"``), or None."""
        if self.policy.allowed(action, self.role):
            return None
        granted = sorted(r.value for r in self.policy.roles_for(action))
        needed = " or ".join(granted) if granted else "a role the access policy grants"
        return f"needs the {needed} role (you are {self.role.value})"

    def allowed(self, action: str) -> bool:
        return self.denial(action) is None

    def require(self, action: str) -> None:
        """Raise PERMISSION_DENIED unless the operator's role may run ``action``."""
        reason = self.denial(action)
        if reason is not None:
            with SiteStore.open(self.site) as store:
                store.record_event(SiteEvent.ROLE_DENIED, details={
                    "command": action, "role": self.role.value, "party": self.actor})
            raise TesseraError(ErrorCode.PERMISSION_DENIED, f"'{action}' {reason}")

    # -- overview and audit ---------------------------------------------------------------

    def events(self) -> list[EventRecord]:
        """The site's events, oldest first."""
        with SiteStore.open(self.site) as store:
            return store.events()

    def approved_hashes(self) -> list[str]:
        """Plan hashes whose latest decision is "approved", oldest decision first."""
        with SiteStore.open(self.site) as store:
            latest: dict[str, str] = {}
            for record in store.approvals():
                latest.pop(record.plan_hash, None)
                latest[record.plan_hash] = record.decision
        return [h for h, decision in latest.items() if decision == "approved"]

    def activity(self) -> list[Activity]:
        """Every decision, privacy release and event (what the audit log mirrors) as a
        plain sentence with its raw record, oldest first."""
        names = {p.plan_hash: p.study for p in self.received_plans()}
        items: list[Activity] = []
        with SiteStore.open(self.site) as store:
            for a in store.approvals():
                details: dict[str, object] = {"actor": a.actor, "note": a.note}
                items.append(activity(at=a.at, kind=f"study_{a.decision}", details=details,
                                      plan_hash=a.plan_hash, studies=names))
            for e in store.ledger():
                items.append(activity(at=e.at, kind="epsilon_spent", details=e.to_json(),
                                      plan_hash=e.plan_hash, studies=names, actor=SITE_AGENT))
            for ev in store.events():
                items.append(activity(at=ev.at, kind=ev.kind, details=ev.details,
                                      plan_hash=ev.plan_hash, studies=names))
        items.sort(key=lambda item: item.at)
        return items

    def dashboard(self) -> Dashboard:
        """What needs attention now, the budget gauges and the recent activity."""
        plans = self.received_plans()
        status = self.node_status()
        with SiteStore.open(self.site) as store:
            seen = int(store.setting(REFUSALS_SEEN) or 0)
        return attention.build_dashboard(
            site=self.site.name, node_state=status.connection if status.running else "stopped",
            node_text=node_text(status),
            pending=[PendingStudy(p.study, p.plan_hash) for p in plans if p.status == "pending"],
            gauges=budget_view.gauges(self.budgets()), activity=self.activity(),
            refusals_seen=seen, approved=sum(p.status == "approved" for p in plans))

    def acknowledge_refusals(self) -> None:
        """Mark every refusal so far as seen (the dashboard stops pointing at them)."""
        self.require("gui dashboard.acknowledge")
        count = sum(1 for e in self.events() if e.kind in attention.REFUSALS)
        with SiteStore.open(self.site) as store:
            store.put_setting(REFUSALS_SEEN, str(count))

    def audit_log_path(self) -> Path:
        return self.site.audit_log

    def verify_audit(self) -> VerifyReport:
        """Verify the site's audit log (no key needed); NOT_FOUND if the site has none."""
        self.require("gui audit.verify")
        path = self.audit_log_path()
        if not path.exists():
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"site {self.site.name!r} has no audit log yet (a site writes "
                               "one once it has a kit and its agent has run)")
        return verify_log(path)

    # -- studies --------------------------------------------------------------------------

    def received_plans(self) -> list[ReceivedPlan]:
        return studies.received_plans(self.site)

    def plan_diff(self, plan_hash: str) -> PlanDiff:
        return studies.plan_diff(self.site, plan_hash)

    def receive_plan(self, path: Path) -> ReceivedPlan:
        """Receive a study plan from a TOML file (validated, idempotent by hash)."""
        self.require("gui studies.receive")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TesseraError(ErrorCode.PLAN_INVALID,
                               f"plan file {Path(path).name} cannot be read "
                               f"({type(exc).__name__})") from None
        return studies.receive_plan(self.site, text, source="file")

    def decide(self, plan_hash: str, decision: Decision, *, note: str = "") -> None:
        """Approve, reject or revoke a plan hash."""
        actions = {"approved": "approve", "rejected": "reject", "revoked": "revoke"}
        if decision not in actions:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "decision: must be approved, rejected or revoked")
        self.require(f"gui studies.{actions[decision]}")
        studies.decide(self.site, plan_hash, decision, actor=self.actor, note=note)

    def plan(self, plan_hash: str) -> StudyPlan:
        """The received plan with that hash (NOT_FOUND if this site never received it)."""
        for received in self.received_plans():
            if received.plan_hash == plan_hash:
                return parse_plan(received.plan_toml)
        raise TesseraError(ErrorCode.NOT_FOUND, f"no received study plan {plan_hash[:12]}")

    # -- datasets -------------------------------------------------------------------------

    def dataset_versions(self) -> list[DatasetVersion]:
        return datasets.dataset_versions(self.site)

    def check_dataset(self, path: Path, *, plan_hash: str) -> ValidationReport:
        """Validate a file against a received plan's schema (writes nothing)."""
        self.require("gui datasets.register")
        return datasets.check_dataset(Path(path), plan=self.plan(plan_hash))

    def register_dataset(self, path: Path, *, plan_hash: str, policy: Policy,
                         name: str | None = None) -> DatasetVersion:
        """Register a file as a new version of the plan's dataset, under ``policy``."""
        self.require("gui datasets.register")
        return datasets.register_dataset(self.vault, Path(path), plan=self.plan(plan_hash),
                                         policy=policy, actor=self.actor, name=name)

    # -- consent --------------------------------------------------------------------------

    def consent_history(self, *, scope: str | None = None) -> list[ConsentEvent]:
        return consent.history(self.vault, scope=scope)

    def withdraw(self, patient_ids: Sequence[str], *, scope: str = GLOBAL_SCOPE,
                 note: str = "") -> int:
        self.require("gui consent.withdraw")
        return consent.withdraw(self.vault, patient_ids, actor=self.actor, scope=scope,
                                note=note)

    def grant(self, patient_ids: Sequence[str], *, scope: str = GLOBAL_SCOPE,
              note: str = "") -> int:
        self.require("gui consent.grant")
        return consent.grant(self.vault, patient_ids, actor=self.actor, scope=scope, note=note)

    def import_opt_out(self, path: Path, *, scope: str = GLOBAL_SCOPE) -> ImportResult:
        self.require("gui consent.import")
        return consent.import_opt_out(self.vault, Path(path), actor=self.actor, scope=scope)

    # -- privacy budget -------------------------------------------------------------------

    def budgets(self) -> list[DatasetBudget]:
        return budget.budget_overview(self.site)

    def ceiling(self) -> float:
        with SiteStore.open(self.site) as store:
            return store.ceiling()

    def set_ceiling(self, value: float, *, confirm_raise: bool = False) -> None:
        """Lower the ceiling, or raise it (its own permission, and only with confirmation)."""
        raising = value > self.ceiling()
        self.require("gui budget.raise_ceiling" if raising else "gui budget.lower_ceiling")
        budget.set_ceiling(self.site, value, actor=self.actor, confirm_raise=confirm_raise)

    def budget_snapshot(self) -> BudgetSnapshot:
        """The budget page's content: ceiling, gauges, explained ledger rows, sharing."""
        budgets = self.budgets()
        return budget_view.snapshot(budgets, ceiling=self.ceiling(), shared=self.sharing())

    def sharing(self) -> Sharing:
        """Which per-site statistics this site shares (own counts, feature importance)."""
        with SiteStore.open(self.site) as store:
            return sharing.sharing(store)

    def set_sharing(self, what: str, allowed: bool) -> bool:
        """Share or stop sharing ``what`` ("own_counts" or "importance"); False if unchanged."""
        self.require("gui budget.sharing")
        with SiteStore.open(self.site) as store:
            return sharing.set_sharing(store, what, allowed, actor=self.actor)

    # -- local evaluation and reports ----------------------------------------------------

    def stored_models(self) -> list[StoredModel]:
        from client_app.learning import local_eval

        return local_eval.stored_models(self.vault)

    def evaluate(self, *, model: str | None = None, progress: Progress | None = None,
                 cancelled: Cancelled | None = None) -> LocalEvaluation:
        """Run a stored global model on this site's held-out split (CANCELLED if stopped)."""
        self.require("gui evaluation.run")
        from client_app.learning import local_eval

        return local_eval.evaluate_model(self.vault, model=model, progress=progress,
                                         cancelled=cancelled)

    def label_names(self, plan_hash: str) -> LabelNames:
        """What the plan's label means: the positive and negative class in words."""
        return label_names(self.plan(plan_hash))

    def participation_report(self, study: str) -> ParticipationReport:
        """What this site contributed to ``study`` (name or plan hash), for its ethics board."""
        from client_app.governance import participation

        return participation.build_report(self.site, study)

    def write_report(self, study: str, out: Path) -> Path:
        """Write the participation report to ``out`` (``.pdf`` or ``.html``)."""
        self.require("gui studies.report")
        from client_app.governance import report_render

        return report_render.write_report(self.participation_report(study), Path(out))

    # -- the site node (agent and SuperNode) ----------------------------------------------

    def node_status(self) -> NodeStatus:
        return self.node.status()

    def start_node(self, *, insecure: bool = False, superlink: str | None = None) -> None:
        self.require("gui node.start")
        self.node.start(passphrase=self.passphrase, insecure=insecure, superlink=superlink)

    def stop_node(self) -> None:
        self.require("gui node.stop")
        self.node.stop()


def node_text(status: NodeStatus) -> str:
    """The node's state in one line."""
    if not status.running:
        return ("The node's processes are not running on this machine"
                + (f" (last error: {status.last_error})" if status.last_error else "") + ".")
    link = (f"coordinator {status.superlink} ({status.connection})" if status.superlink
            else "no coordinator address set")
    return f"running, {'agent up' if status.agent_up else 'agent starting'}, {link}"


def site_name(site_dir: Path) -> str:
    """The name of the site folder at ``site_dir`` (NOT_FOUND if it is not initialised)."""
    return open_site_dir(site_dir).name


def drift_report(operator: SiteOperator, *, model: str | None = None) -> dict[str, object]:
    """Drift of the site's newest dataset version against a kept model's training version
    (:mod:`client_app.learning.drift`), as JSON-ready statistics (no patient data)."""
    from client_app.learning import drift

    operator.require("gui drift.view")
    return {**drift.drift_report(operator.vault, model=model).to_json(),
            "moderate_psi": drift.MODERATE_PSI, "major_psi": drift.MAJOR_PSI}


def drift_sharing(operator: SiteOperator, allowed: bool | None = None) -> bool:
    """Whether this site answers drift requests (off by default); ``allowed`` switches it."""
    operator.require("gui drift.view" if allowed is None else "gui drift.sharing")
    with SiteStore.open(operator.site) as store:
        if allowed is not None:
            shared_drift.set_drift_sharing(store, allowed, actor=operator.actor)
        return shared_drift.drift_shared(store)
