"""Admitting a task: who sent it, for which approved study, and whether the run's schedule
calls for it.

In order: the task kind is known, the plan fits the size limit (checked before parsing), the
coordinator of this federation signed the task (claims in :mod:`protos.claims`), the plan
matches its hash, the site approved that hash, the nonce was never seen (replays are refused)
and the run's schedule allows the task (one statistics step, rounds in increasing order, one
evaluation per round, one release, importance and leave-one-site-out only when the plan
declares them and the operator shares them, each at most once per run; drift only when the
plan declares ``[drift]`` and the operator switched its sharing on). A task that asks again for
the latest step of its kind the site answered in the run is let through as a
:class:`~client_app.agent.repeats.Repeat` when the site kept that step's reply: it gets that
reply for identical inputs and its refusal otherwise (:mod:`client_app.agent.repeats`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from client_app.agent.context import AgentIdentity
from client_app.agent.drift import check_drift
from client_app.agent.repeats import REPEATABLE, Repeat
from client_app.agent.signing import verify_task
from client_app.governance.sharing import refuse_unless_shared
from client_app.store.events import SiteEvent
from client_app.store.sent_replies import last_sent
from client_app.store.site_store import SiteStore
from client_app.store.task_log import TaskRecord, admit_task, completed_tasks
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, parse_plan, plan_hash
from protos.tessera.v1 import agent_pb2
from protos.wire import MAX_PLAN_BYTES, NONCE_BYTES, TASK_NAMES, task_name

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Marker of a leave-one-site-out run id: ``<main run>-loso-<held-out site>``.
LOSO_MARKER = "-loso-"


def _refuse(code: ErrorCode, message: str) -> TesseraError:
    return TesseraError(code, message)


def check_task(request: agent_pb2.TaskRequest, identity: AgentIdentity) -> None:
    """Shape, size and signature: everything checked before the plan is parsed."""
    if request.kind not in TASK_NAMES:
        raise _refuse(ErrorCode.BAD_ENVELOPE, f"unknown task kind {int(request.kind)}")
    if len(request.plan_toml) > MAX_PLAN_BYTES:
        raise _refuse(ErrorCode.OVERSIZED,
                      f"the study plan is larger than {MAX_PLAN_BYTES} bytes")
    if not _RUN_ID.fullmatch(request.run_id):
        raise _refuse(ErrorCode.BAD_ENVELOPE, "the task has no valid run id")
    if len(request.nonce) != NONCE_BYTES:
        raise _refuse(ErrorCode.BAD_ENVELOPE, f"the task nonce must be {NONCE_BYTES} bytes")
    if not request.signature:
        raise _refuse(ErrorCode.BAD_SIGNATURE, "the task is not signed by the coordinator")
    try:
        verify_task(request, identity.coordinator_key)
    except TesseraError:
        raise _refuse(ErrorCode.BAD_SIGNATURE,
                      "the task's signature is not the federation coordinator's") from None


def admit_plan(request: agent_pb2.TaskRequest) -> StudyPlan:
    """The task's plan, once it matches its hash (approval is checked in the store)."""
    plan, digest = parsed_plan(bytes(request.plan_toml))
    if digest != request.plan_hash:
        raise _refuse(ErrorCode.FOREIGN_STUDY, "the study plan sent does not match its plan hash")
    return plan


@functools.lru_cache(maxsize=32)
def parsed_plan(raw: bytes) -> tuple[StudyPlan, str]:
    """The plan in ``raw`` (UTF-8 TOML) and its hash, parsed and validated once per distinct
    text: both are pure functions of the bytes, and a plan is a frozen model that nothing
    changes, so tasks (and agents) sent the same plan share one. A plan that fails to parse
    is not kept: it is parsed (and refused) again each time."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(ErrorCode.PLAN_INVALID, "the study plan is not UTF-8 text") from None
    plan = parse_plan(text)
    return plan, plan_hash(plan)


def require_approval(store: SiteStore, digest: str, site_name: str) -> None:
    """NOT_APPROVED (recorded as a refused study) unless the site approved ``digest``."""
    if not store.is_approved(digest):
        store.record_event(SiteEvent.STUDY_REFUSED, plan_hash=digest,
                           details={"reason": "not approved"})
        raise _refuse(ErrorCode.NOT_APPROVED,
                      f"study {digest[:12]} is not approved at site '{site_name}'")


def log_task(request: agent_pb2.TaskRequest, store: SiteStore) -> int:
    """Record the task's nonce (REPLAY if seen before); the id to finish it with."""
    return admit_task(store, run_id=request.run_id, plan_hash=request.plan_hash,
                      kind=task_name(request.kind), round_=int(request.round),
                      nonce=request.nonce.hex())


def check_schedule(request: agent_pb2.TaskRequest, plan: StudyPlan, store: SiteStore,
                   site_name: str) -> Repeat | None:
    """OUT_OF_SCHEDULE (DUPLICATE for a round trained before) unless the plan calls for this
    task now in this run; a :class:`Repeat` for a task asking again for the latest step of
    its kind whose reply the site kept (the caller answers it with :func:`resend`)."""
    kind, round_, rounds = request.kind, int(request.round), plan.training.rounds
    done = completed_tasks(store, run_id=request.run_id)
    policy = plan.evaluation_policy
    loso_of = _loso_site(request.run_id)
    if loso_of is not None and not policy.loso:
        raise _refuse(ErrorCode.OUT_OF_SCHEDULE,
                      "the plan declares no leave-one-site-out runs")
    name = task_name(kind)
    repeats: list[Repeat] = []

    def answered(code: ErrorCode, message: str) -> None:
        """The step was done before: a Repeat of the kept latest step, else the refusal."""
        sent = last_sent(store, run_id=request.run_id, kind=name) \
            if kind in REPEATABLE else None
        if sent is None or sent.round != round_:
            raise _refuse(code, message)
        repeats.append(Repeat(sent=sent, refusal=_refuse(code, message)))

    def once(message: str, *, same_round: bool = False) -> None:
        if any(t.kind == name and (not same_round or t.round == round_) for t in done):
            answered(ErrorCode.OUT_OF_SCHEDULE, message)

    if kind == agent_pb2.TASK_HELLO:
        return None
    if kind == agent_pb2.TASK_DRIFT:
        check_drift(plan, store, round_=round_)
        return None
    if kind == agent_pb2.TASK_ATTEST:  # decrypts and spends nothing: no once-per-run rule
        if not plan.federation.attesters:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE, "the plan declares no attested sums")
        if not 0 <= round_ <= rounds:
            raise _refuse(ErrorCode.WRONG_ROUND,
                          f"round {round_} is outside the plan's {rounds} rounds")
        return None
    if kind == agent_pb2.TASK_STATS:
        if round_ != 0:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE, "statistics belong to round 0")
        once("the statistics of this run were already sent")
        return None
    if not 1 <= round_ <= rounds:
        raise _refuse(ErrorCode.WRONG_ROUND, f"round {round_} is outside the plan's "
                                             f"{rounds} rounds")
    if kind == agent_pb2.TASK_TRAIN:
        trained = [t.round for t in done if t.kind == name]
        if trained and max(trained) >= round_:
            message = f"round {round_} (or a later one) was already trained in this run"
            if max(trained) > round_:
                raise _refuse(ErrorCode.DUPLICATE, message)
            answered(ErrorCode.DUPLICATE, message)
    else:
        _check_queries(request, plan, done, site_name, once, store)
    return repeats[0] if repeats else None


def _check_queries(request: agent_pb2.TaskRequest, plan: StudyPlan, done: list[TaskRecord],
                   site_name: str, once: Callable[..., None], store: SiteStore) -> None:
    kind, round_, rounds = request.kind, int(request.round), plan.training.rounds
    policy = plan.evaluation_policy
    final_only = {agent_pb2.TASK_RELEASE, agent_pb2.TASK_IMPORTANCE, agent_pb2.TASK_EVALUATE_OWN}
    if kind in final_only and round_ != rounds:
        raise _refuse(ErrorCode.OUT_OF_SCHEDULE,
                      f"{task_name(kind)} concerns only the final round ({rounds})")
    if kind in (agent_pb2.TASK_EVALUATE, agent_pb2.TASK_OPEN_COUNTS):
        if _loso_site(request.run_id) is not None:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE,
                          "leave-one-site-out runs are not evaluated round by round")
        if not policy.every_round and round_ != rounds:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE,
                          "the plan evaluates only the final round")
        if kind == agent_pb2.TASK_OPEN_COUNTS and not plan.he.enabled:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE, "counts are not encrypted in this study")
        once(f"round {round_} was already {task_name(kind).replace('_', ' ')} in this run",
             same_round=True)
    elif kind == agent_pb2.TASK_RELEASE:
        if _loso_site(request.run_id) is not None:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE, "leave-one-site-out models are not released")
        once("the final model of this run was already released")
    elif kind == agent_pb2.TASK_IMPORTANCE:
        if not policy.importance or _loso_site(request.run_id) is not None:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE, "the plan declares no feature importance")
        refuse_unless_shared(store, "importance",
                             "this site does not share its feature importance")
        once("feature importance was already shared in this run")
    elif kind == agent_pb2.TASK_EVALUATE_OWN:
        if _loso_site(request.run_id) != site_name:
            raise _refuse(ErrorCode.OUT_OF_SCHEDULE,
                          "own counts are shared only for the run that left this site out")
        refuse_unless_shared(store, "own_counts",
                             "this site does not share its own evaluation counts")
        once("own counts were already shared for this run")


def _loso_site(run_id: str) -> str | None:
    """The held-out site of a leave-one-site-out run id, or None for a main run."""
    main, marker, site = run_id.partition(LOSO_MARKER)
    return site if marker and main and site else None
