"""Creating and opening a site folder: the work folder layout, private files, one-way imports."""

from __future__ import annotations

import ast
import sqlite3
import stat
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import client_app.store.folder as folder_module
from client_app.store import records, site_store, tables
from client_app.store.folder import init_site_dir, open_site_dir, store_template
from client_app.store.site_store import SiteStore
from common import workdir
from common.errors import ErrorCode, TesseraError
from common.settings import DEFAULT_CEILING
from common.workdir import SiteDir, WorkDir


def test_the_folder_module_uses_the_work_folder_layout() -> None:
    assert folder_module.SiteDir is SiteDir


def test_a_new_site_folder_is_laid_out_as_the_work_folder_says(tmp_path: Path) -> None:
    expected = WorkDir(tmp_path).site("h1")
    site = init_site_dir(expected.root, name="h1")
    assert site == expected
    assert site.config_path.is_file() and site.db_path.is_file()
    for folder in (site.root, site.keys_dir, site.data_dir, site.audit_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for private in (site.config_path, site.db_path):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert sorted(p.name for p in site.root.iterdir() if p.name.startswith(".")) == []
    assert tomllib.loads(site.config_path.read_text(encoding="utf-8"))["name"] == "h1"
    assert open_site_dir(site.root) == site


def test_a_new_site_starts_at_the_default_ceiling(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "h1", name="h1")
    with SiteStore.open(site) as store:
        assert store.ceiling() == DEFAULT_CEILING


def test_a_folder_without_site_toml_is_not_a_site(tmp_path: Path) -> None:
    with pytest.raises(TesseraError, match="not initialised") as info:
        open_site_dir(tmp_path)
    assert info.value.code is ErrorCode.NOT_FOUND


def _imported_modules(module: ModuleType) -> set[str]:
    """Every module ``module`` imports, type-checking-only imports included."""
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", [site_store, records, tables, workdir],
                         ids=lambda m: m.__name__)
def test_the_store_and_the_layout_never_import_the_folder_module(module: ModuleType) -> None:
    assert "client_app.store.folder" not in _imported_modules(module)


def test_the_folder_module_imports_the_store_and_the_layout() -> None:
    assert {"client_app.store.site_store", "common.workdir"} <= _imported_modules(folder_module)


def _schema(db: Path) -> tuple[list[tuple[str, str]], list[tuple[str]]]:
    with sqlite3.connect(db) as raw:
        tables = raw.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                             "ORDER BY name").fetchall()
        return tables, raw.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_folder_from_the_store_template_is_a_freshly_migrated_one(tmp_path: Path) -> None:
    template = store_template(tmp_path / "template.db")
    assert not template.with_name("template.db-wal").exists()
    copied = init_site_dir(tmp_path / "a", name="a", store_template=template)
    fresh = init_site_dir(tmp_path / "b", name="b")
    assert _schema(copied.db_path) == _schema(fresh.db_path)
    assert stat.S_IMODE(copied.db_path.stat().st_mode) == 0o600
    with SiteStore.open(copied) as a, SiteStore.open(fresh) as b:
        assert [e.kind for e in a.events()] == [e.kind for e in b.events()]
        assert a.ceiling() == b.ceiling() == DEFAULT_CEILING
    # The template is only read: it stays empty, and an existing folder keeps its store.
    with SiteStore.open(copied) as store:
        store.put_setting("probe", "kept")
    init_site_dir(copied.root, name="a", store_template=template)
    with SiteStore.open(copied) as store:
        assert store.setting("probe") == "kept"
    with sqlite3.connect(template) as raw:
        assert raw.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)


def test_a_store_template_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "template.db"
    target.write_bytes(b"keep")
    with pytest.raises(TesseraError) as err:
        store_template(target)
    assert err.value.code is ErrorCode.DUPLICATE and target.read_bytes() == b"keep"
