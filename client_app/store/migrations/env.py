"""Alembic environment of the site store.

The store hands over an open connection in ``config.attributes["connection"]`` (see
``client_app.store.migrations.migrate``); a developer running the ``alembic`` command instead sets
``sqlalchemy.url``. Migrations run in batch mode so that SQLite can alter tables.
"""

from __future__ import annotations

from alembic import context

from client_app.store.migrations import SiteTable, create_store_engine

config = context.config
target_metadata = SiteTable.metadata


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_store_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as own_connection:
            context.configure(
                connection=own_connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
