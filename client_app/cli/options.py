"""What the site commands share, defined once: the ``--site-dir`` and ``--note`` options and
the plan-hash argument (``--json``, ``--actor`` and JSON printing are every CLI's, from
:mod:`common.cli_options`); opening a site's store or vault inside the one CLI boundary;
plain-text table cells."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from common.cli_boundary import cli_boundary
from common.cli_options import ActorOption, JsonOption, print_json
from common.errors import ErrorCode, TesseraError

# The site store, folder and vault bring the database layer (SQLAlchemy, SQLModel, Alembic):
# imported inside the helpers that open them, so that every command's --help stays light.
if TYPE_CHECKING:
    from client_app.custody.vault import SiteVault
    from client_app.store.folder import SiteDir
    from client_app.store.site_store import SiteStore

__all__ = ["ActorOption", "JsonOption", "NoteOption", "PlanHashArgument", "SiteDirOption",
           "cells", "checked_plan_hash", "print_json", "site_store", "site_vault",
           "site_vault_with_kit"]

SiteDirOption = Annotated[
    Path, typer.Option("--site-dir", help="The site folder (WORKDIR/sites/<site>).")
]
NoteOption = Annotated[str, typer.Option("--note", help="Free-text reason (no patient data).")]
PlanHashArgument = Annotated[str, typer.Argument(help="The plan hash (64 hex characters).")]

_PLAN_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX_DIGITS = frozenset(string.hexdigits)


def checked_plan_hash(value: str) -> str:
    """``value`` in lower case if it is a plan hash (64 hex characters); PLAN_INVALID if not."""
    if not _PLAN_HASH.fullmatch(value):
        raise TesseraError(
            ErrorCode.PLAN_INVALID,
            f"PLAN_HASH must be 64 hexadecimal characters (got {len(value)} characters"
            f"{'' if set(value) <= _HEX_DIGITS else ', some not hexadecimal'})",
        )
    return value.lower()


@contextmanager
def site_store(site_dir: Path) -> Iterator[SiteStore]:
    """The store of an existing site folder, opened and used inside the CLI boundary."""
    from client_app.store.folder import open_site_dir
    from client_app.store.site_store import SiteStore

    with cli_boundary(), SiteStore.open(open_site_dir(site_dir)) as store:
        yield store


def site_vault(site_dir: Path) -> SiteVault:
    """The unlocked vault of an existing site folder (the passphrase as the vault reads it)."""
    from client_app.custody.vault import unlock_vault
    from client_app.store.folder import open_site_dir

    return unlock_vault(open_site_dir(site_dir))


def site_vault_with_kit(site: SiteDir) -> SiteVault:
    """The unlocked vault of ``site`` with the secrets of its installed kit adopted."""
    from client_app.custody.identity import adopt_kit_secrets
    from client_app.custody.vault import unlock_vault

    vault = unlock_vault(site)
    adopt_kit_secrets(vault)
    return vault


def cells(*values: str) -> list[Text]:
    """Table cells as plain text (operator notes must not be read as rich markup)."""
    return [Text(v) for v in values]
