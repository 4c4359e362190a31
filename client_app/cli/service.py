"""``tessera site install-service``: the site's agent and SuperNode as two systemd services
under two OS accounts. Wiring only: the units are :mod:`client_app.node.services`', the
accounts and folders :mod:`client_app.node.accounts`'."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from client_app.cli.options import JsonOption, SiteDirOption, print_json
from client_app.node.commands import default_superlink
from client_app.node.services import (
    CREDENTIAL_NAME,
    DEFAULT_NODE_USER,
    DEFAULT_SITE_USER,
    DEFAULT_SUPERNODE_PORT,
    ServiceLayout,
    write_units,
)
from common.cli_boundary import cli_boundary

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


def install_service(
    site_dir: SiteDirOption,
    superlink: Annotated[str | None, typer.Option(
        "--superlink", help="HOST:PORT of the SuperLink (default: the signed manifest's).")
    ] = None,
    site_user: Annotated[str, typer.Option(
        "--site-user", help="The account that owns the site folder and runs the agent.")
    ] = DEFAULT_SITE_USER,
    node_user: Annotated[str, typer.Option(
        "--node-user", help="The account (and group) that runs the SuperNode; it reaches "
        "only the agent's socket.")] = DEFAULT_NODE_USER,
    node_home: Annotated[Path | None, typer.Option(
        "--node-home", help="The SuperNode's own folder (default: "
        "/var/lib/NODE_USER/SITE).")] = None,
    credential: Annotated[Path | None, typer.Option(
        "--credential", help="The site passphrase as a systemd credential: an encrypted "
        "*.cred file (systemd-creds) or a root-only file (default: "
        f"/etc/tessera/SITE/{CREDENTIAL_NAME}.cred).")] = None,
    supernode_port: Annotated[int, typer.Option(
        "--supernode-port", min=1, max=65535,
        help="The SuperNode's own port (one per SuperNode on a host).")
    ] = DEFAULT_SUPERNODE_PORT,
    unit_dir: Annotated[Path, typer.Option(
        "--unit-dir", help="Where to write the two unit files.")] = DEFAULT_UNIT_DIR,
    create_users: Annotated[bool, typer.Option(
        "--create-users", help="Create the two accounts if missing (root only).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write systemd units that run the agent and the SuperNode under two accounts; as root,
    also give the site folder to the site account and make the SuperNode's folder."""
    from client_app.node.accounts import create_accounts, prepare_folders
    from client_app.store.folder import open_site_dir  # here: --help stays light

    with cli_boundary():
        site = open_site_dir(site_dir)
        layout = ServiceLayout(
            site=site, superlink=superlink or default_superlink(site),
            node_home=(node_home or Path("/var/lib") / node_user / site.name).absolute(),
            credential=(credential or Path("/etc/tessera") / site.name
                        / f"{CREDENTIAL_NAME}.cred").absolute(),
            site_user=site_user, node_user=node_user, supernode_port=supernode_port)
        as_root = os.geteuid() == 0
        created: list[str] = []
        if create_users:
            created = list(create_accounts(layout).created)
            if created and not as_json:
                typer.echo(f"created accounts: {', '.join(created)}")
        if as_root:
            prepare_folders(layout)
        if as_root and not as_json:
            typer.echo(f"site folder {site.root} owned by {site_user} (group {node_user} may "
                       f"only traverse it); SuperNode folder {layout.node_home}")
        written = write_units(layout, unit_dir)
    if as_json:
        print_json({"units": [str(p) for p in written], "created_accounts": created,
                    "site_user": site_user, "node_user": node_user,
                    "node_home": str(layout.node_home), "credential": str(layout.credential),
                    "folders_prepared": as_root})
        return
    for path in written:
        typer.echo(f"wrote {path}")
    _next_steps(layout, as_root=as_root)


def _next_steps(layout: ServiceLayout, *, as_root: bool) -> None:
    typer.echo("next steps, as root:")
    if not as_root:
        typer.echo(f"  tessera site install-service --site-dir {layout.site.root} "
                   "--create-users   (accounts, folder ownership, the SuperNode's folder)")
    if layout.credential.suffix == ".cred":
        typer.echo(f"  install -d -m 0700 {layout.credential.parent} && systemd-creds encrypt "
                   f"--name={CREDENTIAL_NAME} - {layout.credential}   (type the passphrase, "
                   "then Ctrl-D)")
    else:
        typer.echo(f"  put the passphrase in {layout.credential} (owner root, mode 0400)")
    typer.echo("  systemctl daemon-reload")
    typer.echo(f"  systemctl enable --now {layout.agent_unit} {layout.supernode_unit}")


def register(app: typer.Typer) -> None:
    """Add ``install-service`` to the site CLI."""
    app.command("install-service")(install_service)
