"""``tessera site ...``: the site CLI's Typer app. Wiring only: it creates and installs a site
folder (``init``, ``import-kit``) and registers every command group's module, in the order
the help lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client_app.cli import (
    approvals,
    budget,
    consent,
    datasets,
    drift,
    evaluation,
    events,
    node,
    report,
    service,
    sharing,
    studies,
    vault,
)
from client_app.cli.options import JsonOption, SiteDirOption, print_json
from common.cli_boundary import cli_boundary
from common.settings import DEFAULT_CEILING
from privacy.passphrase import passphrase_from_environment

app = typer.Typer(
    name="site",
    help="Manage a hospital's site folder: approvals, privacy budget and events.",
    no_args_is_help=True,
    add_completion=False,
)


def init(
    site_dir: SiteDirOption,
    name: Annotated[str, typer.Option("--name", help="The site name (letters, digits, _.-).")],
    ceiling: Annotated[
        float, typer.Option("--ceiling", help="Privacy ceiling: epsilon per dataset.")
    ] = DEFAULT_CEILING,
    as_json: JsonOption = False,
) -> None:
    """Create a site folder with its store and keystore (idempotent for the same name)."""
    from client_app.custody.vault import open_or_create_vault  # here: --help stays light
    from client_app.store.folder import init_site_dir
    from client_app.store.site_store import SiteStore

    with cli_boundary():
        site = init_site_dir(site_dir, name=name, ceiling=ceiling)
        open_or_create_vault(site, passphrase_from_environment())
        with SiteStore.open(site) as store:
            current = store.ceiling()
    if as_json:
        print_json({"site": site.name, "site_dir": str(site.root), "ceiling": current})
        return
    typer.echo(f"site {site.name} ready in {site.root} (privacy ceiling {current:g})")


def import_kit(
    kit: Annotated[Path, typer.Argument(
        help="The site kit from the coordinator (folder or .tar.gz).")],
    site_dir: SiteDirOption,
    coordinator_key: Annotated[str | None, typer.Option(
        "--coordinator-key",
        help="Refuse unless the manifest is signed by this coordinator key (hex).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a site kit (signature, keys) and install it into the site folder."""
    from client_app.custody.kit import import_site_kit  # here: --help stays light

    with cli_boundary():
        identity = import_site_kit(kit, site_dir, expected_coordinator_key=coordinator_key)
    manifest = identity.manifest
    superlink = f"{identity.entry.superlink_address}:{manifest.superlink_port}"
    if as_json:
        print_json({"site": identity.site, "federation": manifest.name,
                    "site_dir": str(identity.root.parent), "superlink": superlink,
                    "coordinator_key": manifest.coordinator_signing_key,
                    "sites": list(manifest.site_names)})
        return
    typer.echo(f"site {identity.site} of federation {manifest.name} imported into "
               f"{identity.root.parent}")
    typer.echo(f"  superlink       {superlink}")
    typer.echo(f"  coordinator key {manifest.coordinator_signing_key}")
    typer.echo(f"  sites           {', '.join(manifest.site_names)}")


app.command("init")(init)
approvals.register(app)
budget.register(app)
events.register(app)
app.command("import-kit")(import_kit)
vault.register(app)
datasets.register(app)
consent.register(app)
evaluation.register(app)
drift.register(app)
studies.register(app)
node.register(app)
service.register(app)
sharing.register(app)
report.register(app)
