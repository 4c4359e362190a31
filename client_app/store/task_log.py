"""The agent's task log: admitted tasks per run, so that replays and schedules the plan does
not call for are refused (table ``tasks``, append-only; ``ok`` is set once when a task ends,
in the same transaction that keeps the reply of a step that may be asked again:
:mod:`client_app.store.sent_replies`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import col, select

from client_app.store.sent_replies import SentReply, keep_sent
from client_app.store.site_store import SiteStore
from client_app.store.tables import TaskRow
from common.errors import ErrorCode, TesseraError


@dataclass(frozen=True)
class TaskRecord:
    """One admitted task."""

    id: int
    run_id: str
    plan_hash: str
    kind: str
    round: int
    ok: bool | None


def admit_task(store: SiteStore, *, run_id: str, plan_hash: str, kind: str, round_: int,
               nonce: str) -> int:
    """Log a task before it runs; REPLAY if its nonce was admitted before. Returns its id."""
    with store.transaction(write=True) as session:
        seen = session.exec(select(TaskRow.id).where(TaskRow.nonce == nonce)).first()
        if seen is not None:
            raise TesseraError(ErrorCode.REPLAY, "this task was already received (same nonce)")
        row = TaskRow(at=datetime.now(UTC), run_id=run_id, plan_hash=plan_hash, kind=kind,
                      round=round_, nonce=nonce)
        session.add(row)
        session.flush()
        return int(row.id or 0)


def finish_task(store: SiteStore, task_id: int, *, ok: bool,
                sent: SentReply | None = None) -> None:
    """Record how a logged task ended (set once), keeping ``sent`` (the reply of a task that
    ended well) in the same transaction."""
    with store.transaction(write=True) as session:
        session.execute(sa.update(TaskRow).where(col(TaskRow.id) == task_id)
                        .where(col(TaskRow.ok).is_(None)).values(ok=ok))
        if ok and sent is not None:
            keep_sent(session, sent)


def completed_tasks(store: SiteStore, *, run_id: str) -> list[TaskRecord]:
    """The tasks of a run that ended well, oldest first."""
    with store.transaction() as session:
        rows = session.exec(select(TaskRow).where(TaskRow.run_id == run_id)
                            .where(col(TaskRow.ok).is_(True))
                            .order_by(col(TaskRow.id))).all()
        return [TaskRecord(id=r.id or 0, run_id=r.run_id, plan_hash=r.plan_hash, kind=r.kind,
                           round=r.round, ok=r.ok) for r in rows]
