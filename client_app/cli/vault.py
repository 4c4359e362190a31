"""``tessera site unlock-check|rotate-passphrase|he-keygen|he-import``: the site's keystore
and the study CKKS keys it holds.

Registering data (``add-data``, ``dataset register``) lives in :mod:`client_app.cli.datasets`.
The passphrase comes from ``TESSERA_SITE_PASSPHRASE``, the OS keyring or a prompt; a wrong
one is a clear error and changes nothing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    SiteDirOption,
    print_json,
    site_vault_with_kit,
)
from common.cli_boundary import cli_boundary
from common.cli_options import input_file
from common.errors import ErrorCode, TesseraError
from privacy.passphrase import passphrase_from_environment

NEW_PASSPHRASE_ENV_VAR = "TESSERA_NEW_SITE_PASSPHRASE"  # noqa: S105 (a variable name)


def unlock_check(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """Check the site passphrase (creates the keystore on first use)."""
    from client_app.custody.identity import adopt_kit_secrets  # here: --help stays light
    from client_app.custody.vault import keystore_path, open_or_create_vault, unlock_vault
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        site = open_site_dir(site_dir)
        if keystore_path(site).exists():
            vault = unlock_vault(site)
        else:
            vault = open_or_create_vault(site, passphrase_from_environment())
        adopt_kit_secrets(vault)
    if as_json:
        print_json({"site": site.name, "unlocked": True})
        return
    typer.echo(f"site {site.name}: keystore unlocked")


def rotate(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """Re-wrap the site's keys under a new passphrase (data files are not rewritten)."""
    from client_app.custody.vault import rotate_passphrase  # here: --help stays light
    from client_app.store.events import SiteEvent
    from client_app.store.folder import open_site_dir
    from client_app.store.site_store import SiteStore

    with cli_boundary():
        site = open_site_dir(site_dir)
        old = passphrase_from_environment()
        new = os.environ.get(NEW_PASSPHRASE_ENV_VAR) or _prompt_new()
        rotate_passphrase(site, old, new)
        with SiteStore.open(site) as store:
            store.record_event(SiteEvent.PASSPHRASE_ROTATED, details={})
    if as_json:
        print_json({"site": site.name, "rotated": True})
        return
    typer.echo("passphrase changed; existing data stays readable with the new one")


def he_keygen(
    site_dir: SiteDirOption,
    plan: Annotated[Path, typer.Option("--plan", help="The study plan (TOML).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for sealed copies.")],
    actor: ActorOption,
    recipient: Annotated[list[str] | None, typer.Option(
        "--recipient", help="A site to seal the key to (repeatable; default: every "
        "other site in the manifest).")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Confirm the recipients without asking (scripts).")] = False,
    as_json: JsonOption = False,
) -> None:
    """As the study's key custodian: generate its CKKS key and seal it to the sites you
    confirm (each shown with its key fingerprints; compare them with each site)."""
    from client_app.custody.he_custody import keygen_and_seal, recipients_of
    from client_app.custody.kit import load_site_identity
    from client_app.store.folder import open_site_dir
    from common.plan import load_plan
    from privacy.signing import fingerprint

    with cli_boundary():
        site = open_site_dir(site_dir)
        vault = site_vault_with_kit(site)
        manifest = load_site_identity(site.root).manifest
        input_file(plan, "--plan")  # before the recipients are shown and confirmed
        names = recipient or [n for n in manifest.site_names if n != site.name]
        chosen = recipients_of(manifest, names, custodian=site.name)
        own = manifest.site(site.name)
        say = functools.partial(typer.echo, err=as_json)  # stdout holds only the JSON
        say(f"Study key holders, if you confirm (this site, {site.name}, keeps the "
                   f"key; signing key {fingerprint(own.signing_public_key)}):")
        for r in chosen:
            say(f"  {r.name}: signing key {r.signing_fingerprint}, "
                       f"sealing key {r.sealing_fingerprint}")
        if not chosen:
            say("  (no other site: only this site will hold the key)")
        say("The coordinator writes the site list: check each name and fingerprint "
                   "with that site's operator before you confirm.")
        try:
            confirmed = yes or typer.confirm(
                f"Seal the study key to exactly these {len(chosen)} site(s)?", default=False,
                err=as_json)
        except typer.Abort:
            confirmed = False
        if not confirmed:
            raise TesseraError(ErrorCode.CANCELLED, "recipients not confirmed: no key was "
                               "generated or sealed")
        result = keygen_and_seal(vault, load_plan(input_file(plan, "--plan")), manifest, out,
                                 recipients=[r.name for r in chosen], actor=actor)
    if as_json:
        print_json({"fingerprint": result.fingerprint, "plan_hash": result.plan_hash,
                    "actor": actor, "sealed": {k: str(v) for k, v in sorted(result.sealed.items())},
                    "package": str(result.package)})
        return
    typer.echo(f"CKKS key {result.fingerprint[:16]} for study {result.plan_hash[:12]}, "
               f"confirmed by {actor}")
    for name, path in sorted(result.sealed.items()):
        typer.echo(f"  sealed for {name}: {path}")
    typer.echo(f"  coordinator package: {result.package}")


def he_import(
    sealed: Annotated[Path, typer.Argument(help="This site's sealed key file.")],
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
) -> None:
    """Import this site's sealed CKKS key after checking the custodian's signatures."""
    from client_app.custody.he_custody import import_sealed
    from client_app.custody.key_holders import study_key_holders
    from client_app.custody.kit import load_site_identity
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        site = open_site_dir(site_dir)
        vault = site_vault_with_kit(site)
        identity = load_site_identity(site.root)
        digest, fingerprint = import_sealed(vault, input_file(sealed, "SEALED").read_bytes(),
                                            identity.manifest)
        holders = study_key_holders(vault, digest)
    if as_json:
        print_json({"fingerprint": fingerprint, "plan_hash": digest,
                    "key_holders": sorted(holders)})
        return
    typer.echo(f"CKKS key {fingerprint[:16]} for study {digest[:12]} imported")
    typer.echo(f"  key holders (signed by the custodian): {', '.join(sorted(holders))}")


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

