"""Alembic environment of the site store (see :func:`common.sql.run_alembic_env`)."""

from alembic import context

from client_app.store.tables import SiteTable
from common.sql import run_alembic_env

run_alembic_env(context, SiteTable.metadata)
