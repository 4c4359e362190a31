"""``tessera site unlock-check|rotate-passphrase|he-keygen|he-import``: the site's keystore
and the study CKKS keys it holds.

Registering data (``add-data``, ``dataset register``) lives in :mod:`client_app.cli.datasets`.
The passphrase comes from ``TESSERA_SITE_PASSPHRASE``, the OS keyring or a prompt; a wrong
one is a clear error and changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from client_app.cli.options import SiteDirOption, site_vault_with_kit
from client_app.custody.he_custody import import_sealed, keygen_and_seal
from client_app.custody.identity import adopt_kit_secrets
from client_app.custody.kit import load_site_identity
from client_app.custody.vault import (
    keystore_path,
    open_or_create_vault,
    rotate_passphrase,
    unlock_vault,
)
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError
from common.plan import load_plan
from privacy.passphrase import passphrase_from_environment

NEW_PASSPHRASE_ENV_VAR = "TESSERA_NEW_SITE_PASSPHRASE"  # noqa: S105 (a variable name)


def unlock_check(site_dir: SiteDirOption) -> None:
    """Check the site passphrase (creates the keystore on first use)."""
    with cli_boundary():
        site = open_site_dir(site_dir)
        if keystore_path(site).exists():
            vault = unlock_vault(site)
        else:
            vault = open_or_create_vault(site, passphrase_from_environment())
        adopt_kit_secrets(vault)
    typer.echo(f"site {site.name}: keystore unlocked")


def rotate(site_dir: SiteDirOption) -> None:
    """Re-wrap the site's keys under a new passphrase (data files are not rewritten)."""
    with cli_boundary():
        site = open_site_dir(site_dir)
        old = passphrase_from_environment()
        new = os.environ.get(NEW_PASSPHRASE_ENV_VAR) or _prompt_new()
        rotate_passphrase(site, old, new)
        with SiteStore.open(site) as store:
            store.record_event("passphrase_rotated", details={})
    typer.echo("passphrase changed; existing data stays readable with the new one")


def he_keygen(
    site_dir: SiteDirOption,
    plan: Annotated[Path, typer.Option("--plan", help="The study plan (TOML).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for sealed copies.")],
) -> None:
    """As the study's key custodian: generate its CKKS key and seal it to every site."""
    with cli_boundary():
        site = open_site_dir(site_dir)
        vault = site_vault_with_kit(site)
        identity = load_site_identity(site.root)
        result = keygen_and_seal(vault, load_plan(plan), identity.manifest, out)
    typer.echo(f"CKKS key {result.fingerprint[:16]} for study {result.plan_hash[:12]}")
    for name, path in sorted(result.sealed.items()):
        typer.echo(f"  sealed for {name}: {path}")
    typer.echo(f"  coordinator package: {result.package}")


def he_import(
    sealed: Annotated[Path, typer.Argument(help="This site's sealed key file.")],
    site_dir: SiteDirOption,
) -> None:
    """Import this site's sealed CKKS key after checking the custodian's signature."""
    with cli_boundary():
        site = open_site_dir(site_dir)
        vault = site_vault_with_kit(site)
        identity = load_site_identity(site.root)
        digest, fingerprint = import_sealed(vault, sealed.read_bytes(), identity.manifest)
    typer.echo(f"CKKS key {fingerprint[:16]} for study {digest[:12]} imported")


def _prompt_new() -> str:
    if not os.isatty(0):
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"set {NEW_PASSPHRASE_ENV_VAR} or run interactively")
    first = typer.prompt("new passphrase", hide_input=True)
    second = typer.prompt("repeat", hide_input=True)
    if first != second:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "the two passphrases differ")
    return str(first)


def register(app: typer.Typer) -> None:
    """Add the keystore and CKKS key commands to the site CLI."""
    app.command("unlock-check")(unlock_check)
    app.command("rotate-passphrase")(rotate)
    app.command("he-keygen")(he_keygen)
    app.command("he-import")(he_import)

