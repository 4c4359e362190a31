"""Alembic environment of the coordinator store (see :func:`common.sql.run_alembic_env`)."""

from alembic import context

from common.sql import run_alembic_env
from server.migrations import CoordinatorTable

run_alembic_env(context, CoordinatorTable.metadata)
