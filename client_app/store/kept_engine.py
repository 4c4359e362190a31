"""One SQL engine for a site's store, kept by a long-lived process across its tasks.

Opening a :class:`~client_app.store.site_store.SiteStore` makes a new engine, checks the
schema's revision and, since SQLAlchemy caches compiled statements per engine, compiles every
statement it runs again. The site agent opens the store about ten times per task (admission,
inbox, ledger, dataset, consent, audit trail, agent state), which made store opens and
statement compilation a large share of a task. :class:`KeptEngine` keeps one engine per site
for the life of the agent and lends it for one task at a time: inside :meth:`KeptEngine.lend`
every store of that site opened in the same thread (:meth:`SiteStore.open`,
:func:`~client_app.store.site_store.site_transaction`) runs on it.

Nothing a store promises changes: each transaction still begins, commits and syncs on its
own; the schema is still brought to the newest revision when a task begins; and when the
task ends the engine's connections are closed (its compiled statements are kept), so a
database replaced between tasks is opened afresh, as with a new engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from client_app.store.site_store import LENT_ENGINE
from client_app.store.tables import MIGRATIONS_DIR
from common.files import ensure_private_file
from common.sql import make_engine, migrate
from common.workdir import SiteDir

log = logging.getLogger(__name__)


class KeptEngine:
    """The engine of one site's database, lent to the stores of one task at a time."""

    def __init__(self, site: SiteDir) -> None:
        self.site = site
        self._engine: Engine | None = None

    @contextmanager
    def lend(self) -> Iterator[None]:
        """Lend the engine to every store of this site opened in the ``with`` block (in this
        thread); its connections are closed when the block ends.

        When the database cannot be opened or migrated nothing is lent: the block's own
        opens then meet the problem inside the caller's error handling.
        """
        engine = self._ready()
        if engine is None:
            yield
            return
        token = LENT_ENGINE.set((self.site.db_path.resolve(), engine))
        try:
            yield
        finally:
            LENT_ENGINE.reset(token)
            engine.dispose()  # the pool's connections; compiled statements stay cached

    def _ready(self) -> Engine | None:
        """The engine, on a private database file at the newest schema; None if not."""
        try:
            ensure_private_file(self.site.db_path)
            if self._engine is None:
                self._engine = make_engine(self.site.db_url)
            migrate(self._engine, MIGRATIONS_DIR)
        except Exception:  # reported by the store opens that follow, where they are handled
            log.debug("the kept engine of site %s is not lent", self.site.name, exc_info=True)
            if self._engine is not None:
                self._engine.dispose()
            return None
        return self._engine

    def close(self) -> None:
        """Let the engine go (a later :meth:`lend` makes a new one)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
