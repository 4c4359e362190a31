"""The site store's Alembic scripts: ``env.py`` and the revisions in ``versions/``.

The tables they create are described in :mod:`client_app.store.tables`; the engine and the
migration runner are :mod:`common.sql`.
"""
