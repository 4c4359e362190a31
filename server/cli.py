"""``tessera federation ...``: the coordinator's provisioning commands.

Commands only translate options into :mod:`server.provisioning` calls and print a summary.
Errors pass through the one CLI boundary (:func:`common.cli_boundary.cli_boundary`):
``error: <message>`` on stderr and the error's exit status, never a traceback.
Nothing secret is printed: only paths, names and public keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, input_file, kit_from, print_json
from common.errors import ErrorCode, TesseraError
from common.workdir import CoordinatorDir
from privacy.manifest import MANIFEST_FILE, load_manifest
from server.provisioning import DEFAULT_PORT, init_federation

app = typer.Typer(
    name="federation",
    help="Provision a federation: CA, SuperLink certificate, keys and per-party kits.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    """Coordinator commands that create and describe a federation."""


def _site_addresses(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        site, sep, host = value.partition("=")
        if not sep or not site.strip() or not host.strip():
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--site-address {value!r} must be SITE=HOST")
        if site.strip() in pairs:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--site-address gives site {site.strip()!r} twice")
        pairs[site.strip()] = host.strip()
    return pairs


@app.command("init")
def init(
    name: Annotated[str, typer.Option("--name", help="The federation name.")],
    sites: Annotated[str, typer.Option("--sites", help="Comma-separated site names.")],
    out: Annotated[Path, typer.Option("--out", help="New (or empty) folder to write.")],
    address: Annotated[list[str] | None, typer.Option(
        "--address", help="SuperLink address the sites dial (repeatable; first is "
        "advertised). 127.0.0.1 and localhost are always in the certificate.")] = None,
    port: Annotated[int, typer.Option("--port", help="SuperLink port.")] = DEFAULT_PORT,
    site_address: Annotated[list[str] | None, typer.Option(
        "--site-address", help="SITE=HOST: the SuperLink address one site dials "
        "(repeatable).")] = None,
    archives: Annotated[bool, typer.Option(
        "--archives/--no-archives", help="Also pack each kit as a .tar.gz.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Create a federation: signed manifest, coordinator, site and auditor kits."""
    with cli_boundary(f"cannot write {out}"):
        fed = init_federation(
            out, name=name, sites=[s.strip() for s in sites.split(",") if s.strip()],
            addresses=address or ["127.0.0.1"], port=port,
            site_addresses=_site_addresses(site_address or []), archives=archives)
    m = fed.manifest
    if as_json:
        print_json({"federation": m.name, "root": str(fed.root),
                    "superlink": f"{m.superlink_address}:{m.superlink_port}",
                    "tls_names": list(m.tls_names),
                    "coordinator_key": m.coordinator_signing_key, "ca_sha256": m.ca_sha256,
                    "coordinator_kit": str(fed.coordinator_kit),
                    "site_kits": {site.name: str(fed.site_kit(site.name)) for site in m.sites},
                    "auditor_kit": str(fed.auditor_kit)})
        return
    typer.echo(f"federation {m.name} provisioned in {fed.root}")
    typer.echo(f"  superlink       {m.superlink_address}:{m.superlink_port} "
               f"(TLS names: {', '.join(m.tls_names)})")
    typer.echo(f"  coordinator key {m.coordinator_signing_key}  (sites may pin it)")
    typer.echo(f"  CA sha256       {m.ca_sha256}")
    typer.echo(f"  coordinator kit {fed.coordinator_kit}  (keep it on the coordinator machine)")
    for site in m.sites:
        typer.echo(f"  site kit        {fed.site_kit(site.name)}  (give only to {site.name})")
    typer.echo(f"  auditor kit     {fed.auditor_kit}")


@app.command("he-context")
def he_context(
    package: Annotated[Path, typer.Argument(help="The custodian's evaluation-context package.")],
    coordinator_dir: Annotated[Path, typer.Option(
        "--coordinator-dir", help="The coordinator folder the ServerApp reads.")],
    ctx: typer.Context,
    kit: Annotated[Path | None, typer.Option(
        "--kit", help="The coordinator kit folder; default: 'tessera --kit DIR' or "
        "TESSERA_KIT.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Import a study's add-only CKKS context after checking the custodian's signature."""
    from server.he_context import import_evaluation_package

    with cli_boundary("cannot read or store the package"):
        coordinator_kit = kit_from(ctx, kit)
        if coordinator_kit is None:
            raise TesseraError(ErrorCode.KEY_MISSING, "'federation he-context' needs the "
                               "coordinator kit: --kit DIR, 'tessera --kit DIR' or TESSERA_KIT")
        manifest = load_manifest(coordinator_kit / MANIFEST_FILE)
        path = import_evaluation_package(CoordinatorDir(coordinator_dir).he_dir,
                                         input_file(package, "PACKAGE").read_bytes(), manifest)
    if as_json:
        print_json({"stored": str(path), "name": path.name})
        return
    typer.echo(f"evaluation context stored: {path.name} (it cannot decrypt)")
