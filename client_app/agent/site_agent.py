"""The site agent: the one process that touches a hospital's data, keys and privacy ledger.

Every Flower message reaches the agent as a :class:`TaskRequest` (through the ClientApp shim
and the gRPC service, or directly for the in-process agent used by tests and simulation).
The coordinator is assumed malicious: the agent runs a task only after
:mod:`client_app.agent.admission` (signed by the federation's coordinator, approved plan,
fresh nonce, a schedule the plan calls for), decrypts only sums it recomputed from signed
contributions (:mod:`client_app.agent.contributions`), and answers with signed replies.
Task families live in :mod:`~client_app.agent.training`, :mod:`~client_app.agent.evaluation`
and :mod:`~client_app.agent.release`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from client_app.agent import attesting, drift, evaluation, release, training
from client_app.agent.admission import (
    admit_plan,
    check_schedule,
    check_task,
    log_task,
    require_approval,
)
from client_app.agent.context import AgentIdentity, TaskContext
from client_app.agent.contributions import SumVerifier
from client_app.agent.repeats import answer
from client_app.agent.signing import sign_reply
from client_app.custody.identity import signing_key
from client_app.custody.key_holders import study_key_holders
from client_app.custody.kit import load_site_identity
from client_app.custody.site_secrets import ledger_key
from client_app.custody.vault import SiteVault
from client_app.governance.audit_trail import sync_quietly
from client_app.governance.budget import admit_privacy
from client_app.governance.studies import file_plan
from client_app.store.agent_state import record_agent_state
from client_app.store.events import SiteEvent
from client_app.store.kept_engine import KeptEngine
from client_app.store.site_store import SiteStore
from client_app.store.task_log import finish_task
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash
from protos.tessera.v1 import agent_pb2
from protos.wire import task_name

log = logging.getLogger(__name__)

Handler = Callable[[TaskContext], agent_pb2.TaskReply]


def _hello(ctx: TaskContext) -> agent_pb2.TaskReply:
    split = ctx.split
    ctx.store.record_event(SiteEvent.STUDY_RECEIVED, plan_hash=ctx.plan_hash,
                           details={"run_id": ctx.run_id})
    # Under DP the row counts are a release (client_app/agent/row_counts.py), made with the
    # statistics once the site knows it can afford the run; without DP they are exact.
    metrics = {} if ctx.plan.privacy.dp else {
        "examples_train": float(len(split.train.y)), "examples_test": float(len(split.test.y))}
    return agent_pb2.TaskReply(ok=True, dataset_version=split.public_version, metrics=metrics)


HANDLERS: dict[int, Handler] = {
    agent_pb2.TASK_HELLO: _hello,
    agent_pb2.TASK_STATS: training.stats,
    agent_pb2.TASK_TRAIN: training.train,
    agent_pb2.TASK_EVALUATE: evaluation.evaluate,
    agent_pb2.TASK_OPEN_COUNTS: evaluation.open_counts,
    agent_pb2.TASK_EVALUATE_OWN: evaluation.evaluate_own,
    agent_pb2.TASK_IMPORTANCE: evaluation.importance,
    agent_pb2.TASK_RELEASE: release.release,
    agent_pb2.TASK_DRIFT: drift.drift,
    agent_pb2.TASK_ATTEST: attesting.attest,
}


def load_identity(vault: SiteVault) -> AgentIdentity | None:
    """The agent's identity from the site's kit and vault; None for a site without a kit."""
    key = signing_key(vault)
    try:
        manifest = load_site_identity(vault.site.root).manifest
    except TesseraError:
        return None
    if key is None:
        return None
    return AgentIdentity(site=vault.site.name, signing_key=key,
                         coordinator_key=manifest.coordinator_signing_key,
                         site_keys={s.name: s.signing_public_key for s in manifest.sites})


class SiteAgent:
    """Serve one site's study tasks. Thread-safe: tasks run one at a time."""

    def __init__(self, vault: SiteVault) -> None:
        self.vault = vault
        self.site = vault.site
        self.identity = load_identity(vault)
        self.sums = SumVerifier()
        self._study: str | None = None
        self._engine = KeptEngine(vault.site)  # one engine, lent to each task's stores
        with self._engine.lend():
            sync_quietly(vault)
        self._lock = threading.Lock()

    # -- boundary ---------------------------------------------------------------------
    def handle(self, request: agent_pb2.TaskRequest) -> agent_pb2.TaskReply:
        """Answer one task; failures become a signed reply with a code and a reason."""
        self._study = None
        with self._lock, self._engine.lend():
            try:
                reply = self._run(request)
            except TesseraError as err:
                log.info("task %s refused: %s", task_name(request.kind), err.code.value)
                reply = agent_pb2.TaskReply(ok=False, error_code=err.code.value,
                                            reason=err.message)
                self._record_refusal(request, err)
            except Exception:  # the boundary: never leak internals to the coordinator
                log.exception("task %s failed", task_name(request.kind))
                reply = agent_pb2.TaskReply(ok=False, error_code=ErrorCode.INTERNAL.value,
                                            reason="internal error at site")
            record_agent_state(self.site, kind=task_name(request.kind), study=self._study,
                               plan_hash=request.plan_hash, round_=int(request.round),
                               ok=reply.ok, error_code=reply.error_code, reason=reply.reason)
            sync_quietly(self.vault)
        reply.site = self.site.name
        if self.identity is not None:
            sign_reply(reply, request, self.identity.signing_key)
        return reply

    def _run(self, request: agent_pb2.TaskRequest) -> agent_pb2.TaskReply:
        if self.identity is None:
            raise TesseraError(ErrorCode.KEY_MISSING,
                               f"site '{self.site.name}' has no federation kit: import it "
                               "before taking part in studies")
        check_task(request, self.identity)
        plan = admit_plan(request)
        self._study = plan.name
        with SiteStore.open(self.site, ledger_key=ledger_key(self.vault)) as store:
            # Every signed plan lands in the operator's inbox (pending until approved).
            file_plan(store, plan, request.plan_toml.decode("utf-8"), digest=request.plan_hash,
                      source="coordinator")
            require_approval(store, request.plan_hash, self.site.name)
            admit_privacy(self.vault, store, plan)
            task_id = log_task(request, store)
            ok, sent = False, None
            try:
                repeat = check_schedule(request, plan, store, self.site.name)
                context = self._context(request, plan, store)
                context.verify_inputs()  # every input checked before anything is decrypted
                # A step answered before gets the same reply (or its refusal).
                reply, sent = answer(context, repeat, HANDLERS[request.kind])
                ok = reply.ok
            finally:
                finish_task(store, task_id, ok=ok, sent=sent)
        return reply

    def _context(self, request: agent_pb2.TaskRequest, plan: StudyPlan,
                 store: SiteStore) -> TaskContext:
        assert self.identity is not None
        return TaskContext(request=request, plan=plan, plan_hash=request.plan_hash,
                           store=store, vault=self.vault, identity=self.identity,
                           sums=self.sums, find_signers=lambda: self._signers(plan))

    def _signers(self, plan: StudyPlan) -> dict[str, str]:
        """Who may contribute to a study's sums: the federation's sites (for an encrypted
        study, only those the custodian sealed the study key to)."""
        assert self.identity is not None
        manifest = self.identity.site_keys
        if not plan.he.enabled:
            return dict(manifest)
        holders = study_key_holders(self.vault, plan_hash(plan))
        # A holder counts only with the key the federation manifest gives it.
        return {name: key for name, key in holders.items() if manifest.get(name) == key}

    def _record_refusal(self, request: agent_pb2.TaskRequest, err: TesseraError) -> None:
        """A refused task is a site event (and so in the audit trail); never raises."""
        try:
            with SiteStore.open(self.site) as store:
                store.record_event(SiteEvent.TASK_REFUSED, details={
                    "task": task_name(request.kind), "round": int(request.round),
                    "run_id": request.run_id[:128], "code": err.code.value,
                    "reason": err.message[:500]})
        except Exception:  # bookkeeping must not hide the refusal itself
            log.warning("a task refusal could not be recorded", exc_info=True)
