"""The reply sent for the latest step of each kind in each run, so that a coordinator that
resumes a run and asks that very step again, with the same inputs, gets the same reply
(re-signed for its new nonce) instead of a refusal or a second noisy answer.

One row per run and kind (a newer step replaces the older one); the reply is stored
unsigned, as the serialised protobuf the agent signed and sent.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sent_replies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("inputs_digest", sa.String(64), nullable=False),
        sa.Column("reply", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("run_id", "kind", name="uq_sent_replies_run_kind"),
    )


def downgrade() -> None:
    op.drop_table("sent_replies")
