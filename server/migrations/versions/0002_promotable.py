"""Registry: whether each model may be promoted (its KPI gates) and why not.

Adds ``model_versions.promotable`` (nullable boolean) and ``promotion_reasons`` (a JSON
list). Models registered before this revision get the verdict their lineage recorded
(``lineage.kpi_gates``) when it is there, and NULL ("not assessed") otherwise.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _verdict(lineage_text: str) -> tuple[bool | None, str]:
    try:
        gates = json.loads(lineage_text).get("kpi_gates")
    except (ValueError, AttributeError):
        return None, "[]"
    if not isinstance(gates, dict) or not isinstance(gates.get("promotable"), bool):
        return None, "[]"
    reasons = [str(r) for r in gates.get("reasons") or []]
    return gates["promotable"], json.dumps(reasons)


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("promotable", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("promotion_reasons", sa.Text(), nullable=False,
                                   server_default="[]"))
    table = sa.table("model_versions", sa.column("id", sa.Integer()),
                     sa.column("lineage", sa.Text()), sa.column("promotable", sa.Boolean()),
                     sa.column("promotion_reasons", sa.Text()))
    connection = op.get_bind()
    for row_id, lineage in connection.execute(sa.select(table.c.id, table.c.lineage)).all():
        promotable, reasons = _verdict(lineage)
        if promotable is not None:
            connection.execute(table.update().where(table.c.id == row_id)
                               .values(promotable=promotable, promotion_reasons=reasons))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("promotion_reasons")
        batch.drop_column("promotable")
