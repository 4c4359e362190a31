"""One hospital's folder (``WORKDIR/sites/<site>/``): its layout, creation and opening.

The folder holds everything a site keeps: ``site.toml`` (who the folder belongs to),
``site.db`` (the site store), ``keys/``, ``data/``, ``audit/`` and the agent's socket.
Folders are private to the operating-system user (mode 0o700); ``site.toml`` is written
last, so a folder without it is not initialised.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from client_app.store.migrations import ensure_private_file
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError

_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class SiteDir:
    """The paths inside one site folder."""

    root: Path
    name: str

    @property
    def db_path(self) -> Path:
        """The site store's SQLite file."""
        return self.root / "site.db"

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the site store."""
        return f"sqlite:///{self.db_path}"

    @property
    def keys_dir(self) -> Path:
        """Sealed key material of the site."""
        return self.root / "keys"

    @property
    def data_dir(self) -> Path:
        """Registered datasets (encrypted at rest)."""
        return self.root / "data"

    @property
    def audit_dir(self) -> Path:
        """The site's audit trail."""
        return self.root / "audit"

    @property
    def socket_path(self) -> Path:
        """Local socket of the site agent."""
        return self.root / "agent.sock"

    @property
    def config_path(self) -> Path:
        """``site.toml``: the site name and creation time."""
        return self.root / "site.toml"


def validate_site_name(name: str) -> str:
    """Return ``name`` if it is a valid site name (letters, digits, ``_.-``; 1-64 chars)."""
    if not isinstance(name, str) or not _SITE_NAME.fullmatch(name):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            "name must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return name


def init_site_dir(root: Path, *, name: str, ceiling: float = 10.0) -> SiteDir:
    """Create (or re-open) the folder of site ``name`` with its migrated store.

    Idempotent for the same name: an existing site keeps its store and its ceiling (change
    the ceiling with :meth:`SiteStore.set_ceiling`). A folder that belongs to another site
    name is refused.
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
        folder.chmod(_PRIVATE_DIR)
    with SiteStore.open(site) as store:
        store.set_ceiling(ceiling, actor="init", confirm_raise=True)
    _write_config(site)
    return site


def open_site_dir(root: Path) -> SiteDir:
    """Open an initialised site folder; NOT_FOUND if it has no ``site.toml``."""
    root = Path(root).expanduser().absolute()
    config_path = root / "site.toml"
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
    """Write ``site.toml`` atomically (temporary file, then rename)."""
    content = tomli_w.dumps(
        {"name": site.name, "created": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    tmp = site.config_path.with_suffix(".toml.tmp")
    ensure_private_file(tmp)
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, site.config_path)
