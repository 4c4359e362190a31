"""Replies the agent keeps after sending them: the latest of each kind of step in each run
(table ``sent_replies``), so that a step asked again with identical inputs after a
coordinator restart is answered with the very same reply (:mod:`client_app.agent.repeats`).

A reply is kept in the transaction that marks its task done (:func:`finish_task` in
:mod:`client_app.store.task_log`): a step is either done and kept, or neither. Only what was
already sent is kept (ciphertexts, noised or rounded releases, counts), never key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from client_app.store.site_store import SiteStore
from client_app.store.tables import SentReplyRow


@dataclass(frozen=True)
class SentReply:
    """A reply as the agent sent it (serialised, unsigned) and the step it answered."""

    run_id: str
    plan_hash: str
    kind: str
    round: int
    #: sha256 hex of the task's inputs (``client_app.agent.repeats.inputs_digest``).
    inputs_digest: str
    reply: bytes


def last_sent(store: SiteStore, *, run_id: str, kind: str) -> SentReply | None:
    """The reply kept for the latest step of ``kind`` in ``run_id``, if any."""
    with store.transaction() as session:
        row = session.exec(select(SentReplyRow).where(SentReplyRow.run_id == run_id)
                           .where(SentReplyRow.kind == kind)).first()
        if row is None:
            return None
        return SentReply(run_id=row.run_id, plan_hash=row.plan_hash, kind=row.kind,
                         round=row.round, inputs_digest=row.inputs_digest,
                         reply=bytes(row.reply))


def keep_sent(session: Session, sent: SentReply) -> None:
    """Keep ``sent`` in the caller's transaction, replacing the run's older one of its kind."""
    session.execute(sa.delete(SentReplyRow).where(col(SentReplyRow.run_id) == sent.run_id)
                    .where(col(SentReplyRow.kind) == sent.kind))
    session.add(SentReplyRow(at=datetime.now(UTC), run_id=sent.run_id,
                             plan_hash=sent.plan_hash, kind=sent.kind, round=sent.round,
                             inputs_digest=sent.inputs_digest, reply=sent.reply))
