"""Every release in the ledger: mechanism, parameters, kind, run and an authenticating MAC;
the public digest of each dataset version.

Existing ledger rows were DP-SGD runs: they become ``kind = "dp_sgd"`` entries of the
``poisson_subsampled_gaussian`` mechanism with their noise multiplier, sample rate and
steps as parameters, and an empty run id (unknown before this revision). Their ``mac`` is
left empty: this revision has no key. The first time the site's vault opens the ledger,
:func:`client_app.governance.ledger.check_ledger` seals them (MACs them in order and
writes the ledger head), because only the vault can derive the ledger key.

``dataset_versions.public_version`` is filled when a version is registered or first used
(it needs the vault's dataset-identity secret).

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The mechanism name of a DP-SGD run (privacy.mechanisms.DpStep), frozen at this revision.
_DP_SGD = "poisson_subsampled_gaussian"
_NEW = (
    ("kind", sa.String(32), "dp_sgd"),
    ("mechanism", sa.String(64), _DP_SGD),
    ("parameters", sa.Text(), "{}"),
    ("run_id", sa.String(128), ""),
)


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        for name, type_, default in _NEW:
            batch.add_column(sa.Column(name, type_, nullable=False, server_default=default))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, noise_multiplier, sample_rate, steps FROM ledger")).all()
    for row_id, noise, rate, steps in rows:
        parameters = json.dumps(
            {"noise_multiplier": float(noise), "sample_rate": float(rate), "steps": int(steps)},
            sort_keys=True, separators=(",", ":"))
        connection.execute(sa.text("UPDATE ledger SET parameters = :p WHERE id = :i"),
                           {"p": parameters, "i": row_id})
    with op.batch_alter_table("ledger") as batch:
        for name, type_, _ in _NEW:
            batch.alter_column(name, existing_type=type_, server_default=None)
        for name in ("noise_multiplier", "sample_rate", "steps"):
            batch.drop_column(name)
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("public_version", sa.String(64), nullable=True))


def downgrade() -> None:
    connection = op.get_bind()
    other = connection.execute(sa.text(
        "SELECT COUNT(*) FROM ledger WHERE mechanism != :m"), {"m": _DP_SGD}).scalar()
    if other:
        raise RuntimeError(f"the ledger holds {other} release(s) that are not DP-SGD runs; "
                           "revision 0003 cannot hold them")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("public_version")
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("noise_multiplier", sa.Float(), nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("sample_rate", sa.Float(), nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("steps", sa.Integer(), nullable=False, server_default="1"))
    rows = connection.execute(sa.text("SELECT id, parameters FROM ledger")).all()
    for row_id, text in rows:
        doc = json.loads(text)
        connection.execute(sa.text(
            "UPDATE ledger SET noise_multiplier = :n, sample_rate = :r, steps = :s "
            "WHERE id = :i"), {"n": doc["noise_multiplier"], "r": doc["sample_rate"],
                               "s": doc["steps"], "i": row_id})
    with op.batch_alter_table("ledger") as batch:
        for name in ("noise_multiplier", "sample_rate", "steps"):
            batch.alter_column(name, server_default=None)
        for name in ("kind", "mechanism", "parameters", "run_id", "mac"):
            batch.drop_column(name)
