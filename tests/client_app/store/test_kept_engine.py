"""A kept engine lent to one task's stores: every open of that site's store inside the task
runs on it, statements compile once across tasks, and nothing a store promises changes."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from client_app.store.folder import init_site_dir
from client_app.store.kept_engine import KeptEngine
from client_app.store.site_store import SiteStore, site_transaction
from client_app.store.tables import SettingRow
from common.workdir import SiteDir


def _site(tmp_path: Path, name: str = "h1") -> SiteDir:
    return init_site_dir(tmp_path / name, name=name)


def test_stores_opened_inside_a_lend_share_the_kept_engine(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = KeptEngine(site)
    with kept.lend():
        with SiteStore.open(site) as first, SiteStore.open(site) as second:
            assert first._engine is second._engine
        with SiteStore.open(site) as third:  # closing the others left the engine usable
            third.put_setting("probe", "1")
            assert third.setting("probe") == "1"
        with site_transaction(site) as session:
            assert session.get(SettingRow, "probe") is not None
    with SiteStore.open(site) as outside:  # after the lend: an engine of its own again
        assert outside.setting("probe") == "1"
        with kept.lend():
            pass
        assert outside._engine is not kept._engine


def test_a_lend_serves_only_its_own_site_and_thread(tmp_path: Path) -> None:
    site, other = _site(tmp_path, "h1"), _site(tmp_path, "h2")
    kept = KeptEngine(site)
    seen: list[object] = []
    with kept.lend():
        with SiteStore.open(other) as store:
            assert store._engine is not kept._engine
        thread = threading.Thread(target=lambda: seen.append(SiteStore.open(site)._engine))
        thread.start()
        thread.join()
    assert seen and seen[0] is not kept._engine


def test_statements_compile_once_across_tasks(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = KeptEngine(site)
    for _ in range(2):
        with kept.lend(), SiteStore.open(site) as store:
            store.record_event("probe", details={"n": 1})
            store.events(kind="probe")
    assert kept._engine is not None
    cached = len(kept._engine._compiled_cache)
    with kept.lend(), SiteStore.open(site) as store:
        store.record_event("probe", details={"n": 2})
        assert len(store.events(kind="probe")) == 3
    assert len(kept._engine._compiled_cache) == cached


def test_every_write_is_committed_when_its_transaction_ends(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = KeptEngine(site)
    with kept.lend(), SiteStore.open(site) as store:
        store.put_setting("probe", "committed")
        # Another connection (another process) sees it before the task ends.
        with sqlite3.connect(site.db_path) as raw:
            value = raw.execute("SELECT value FROM settings WHERE key = 'probe'").fetchone()
        assert value == ("committed",)


def test_a_database_replaced_between_tasks_is_opened_afresh_and_migrated(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = KeptEngine(site)
    with kept.lend(), SiteStore.open(site) as store:
        store.put_setting("probe", "old")
    saved = tmp_path / "saved.db"
    shutil.copyfile(site.db_path, saved)
    with kept.lend(), SiteStore.open(site) as store:
        store.put_setting("probe", "new")
    # The file is replaced between tasks (a restored copy), then removed altogether.
    site.db_path.unlink()
    shutil.copyfile(saved, site.db_path)
    with kept.lend(), SiteStore.open(site) as store:
        assert store.setting("probe") == "old"
    site.db_path.unlink()
    with kept.lend(), SiteStore.open(site) as store:  # a new, empty store at the newest schema
        assert store.setting("probe") is None
        store.put_setting("probe", "again")


def test_connections_are_closed_when_a_task_ends(tmp_path: Path) -> None:
    site = _site(tmp_path)
    kept = KeptEngine(site)
    with kept.lend(), SiteStore.open(site) as store:
        store.put_setting("probe", "1")
        assert kept._engine is not None and kept._engine.pool.checkedin() >= 1
    assert kept._engine.pool.checkedin() == 0
    kept.close()
    assert kept._engine is None


def test_an_unusable_database_is_not_lent_and_the_task_sees_the_error(tmp_path: Path) -> None:
    site = _site(tmp_path)
    site.db_path.unlink()
    site.db_path.mkdir()  # not a database file
    kept = KeptEngine(site)
    with kept.lend(), pytest.raises(sa.exc.OperationalError):
        SiteStore.open(site)  # the open's own error, inside the caller's error handling
