"""Creating and opening one hospital's folder (``WORKDIR/sites/<site>/``).

The folder's layout is :class:`common.workdir.SiteDir` (``site.toml``, ``site.db``,
``keys/``, ``data/``, ``audit/`` and the rest); this module creates a folder with its
migrated store and opens an existing one. Folders are private to the operating-system user
(mode 0o700); ``site.toml`` is written last, so a folder without it is not initialised.
The layout knows nothing of the store; this module uses both.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.files import PRIVATE_DIR, atomic_write_bytes, ensure_private_file
from common.settings import DEFAULT_CEILING
from common.workdir import SiteDir, site_config, sqlite_url

__all__ = ["SiteDir", "init_site_dir", "open_site_dir", "store_template", "validate_site_name"]

_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_site_name(name: str) -> str:
    """Return ``name`` if it is a valid site name (letters, digits, ``_.-``; 1-64 chars)."""
    if not isinstance(name, str) or not _SITE_NAME.fullmatch(name):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            "name must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return name


def store_template(path: Path) -> Path:
    """Make ``path`` (which must not exist) an empty site database at the newest schema.

    A new site folder's store is exactly this before its first write (the migrations only
    create tables on an empty database), so a launcher that creates many folders at once
    (``tessera simulate``) migrates one template and copies it
    (:func:`init_site_dir` with ``store_template``) instead of migrating every folder.
    """
    path = Path(path)
    if path.exists():
        raise TesseraError(ErrorCode.DUPLICATE, f"path: {path.name} already exists")
    ensure_private_file(path)
    SiteStore(sqlite_url(path)).close()  # migrates; the last close folds the WAL back in
    if path.with_name(path.name + "-wal").exists():
        raise TesseraError(ErrorCode.INTERNAL, "the store template kept a write-ahead log")
    return path


def init_site_dir(root: Path, *, name: str, ceiling: float = DEFAULT_CEILING,
                  store_template: Path | None = None) -> SiteDir:
    """Create (or re-open) the folder of site ``name`` with its migrated store.

    Idempotent for the same name: an existing site keeps its store and its ceiling (change
    the ceiling with :meth:`SiteStore.set_ceiling`). A folder that belongs to another site
    name is refused. A new folder's store starts as a copy of ``store_template`` when given
    (made by :func:`store_template`; brought to the newest schema if it is older).
    """
    validate_site_name(name)
    site = SiteDir(root=Path(root).expanduser().absolute(), name=name)
    if site.root.exists() and not site.root.is_dir():
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"site folder {site.root} is not a folder")
    if site.config_path.exists():
        existing = open_site_dir(site.root)
        if existing.name != name:
            raise TesseraError(
                ErrorCode.PERMISSION_DENIED,
                f"site folder {site.root} belongs to site {existing.name!r}, not {name!r}",
            )
        with SiteStore.open(existing):
            pass  # applies any pending migrations
        return existing
    for folder in (site.root, site.keys_dir, site.data_dir, site.audit_dir):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(PRIVATE_DIR)
    if store_template is not None and not site.db_path.exists():
        atomic_write_bytes(site.db_path, Path(store_template).read_bytes(), overwrite=False)
    with SiteStore.open(site) as store:
        store.set_ceiling(ceiling, actor="init", confirm_raise=True)
    _write_config(site)
    return site


def open_site_dir(root: Path) -> SiteDir:
    """Open an initialised site folder; NOT_FOUND if it has no ``site.toml``."""
    root = Path(root).expanduser().absolute()
    config_path = site_config(root)
    if not config_path.is_file():
        raise TesseraError(
            ErrorCode.NOT_FOUND, f"site folder {root} not initialised (no site.toml)"
        )
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"site.toml in {root} cannot be read ({type(exc).__name__})"
        ) from exc
    name = config.get("name")
    if not isinstance(name, str):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"site.toml in {root} has no 'name'")
    return SiteDir(root=root, name=validate_site_name(name))


def _write_config(site: SiteDir) -> None:
    """Write ``site.toml`` atomically (mode 0600, fsync'd, then renamed into place)."""
    content = tomli_w.dumps(
        {"name": site.name, "created": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    atomic_write_bytes(site.config_path, content.encode("utf-8"))
