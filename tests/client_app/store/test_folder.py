"""Creating and opening a site folder: the work folder layout, private files, one-way imports."""

from __future__ import annotations

import ast
import stat
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import client_app.store.folder as folder_module
from client_app.store import records, site_store, tables
from client_app.store.folder import init_site_dir, open_site_dir
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
