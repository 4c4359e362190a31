"""``tessera site sharing``: show or change what per-site statistics this site shares.

Without options it prints the current choices; ``--own-counts no`` or ``--importance no``
makes the agent refuse those tasks; ``--min-cell N`` sets the smallest histogram cell or group
the site shares. The choices live in :mod:`client_app.governance.sharing`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from client_app.cli.options import ActorOption, JsonOption, SiteDirOption, print_json
from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError


def _choice(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("yes", "no"):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{name}: must be yes or no")
    return lowered == "yes"


def sharing_command(
    site_dir: SiteDirOption,
    actor: ActorOption,
    own_counts: Annotated[str | None, typer.Option(
        "--own-counts", help="Share this site's own evaluation counts for "
        "leave-one-site-out checks: yes or no.")] = None,
    importance: Annotated[str | None, typer.Option(
        "--importance", help="Share this site's permutation feature importance: "
        "yes or no.")] = None,
    min_cell: Annotated[int | None, typer.Option(
        "--min-cell", help="Smallest number of rows a shared histogram cell or group may "
        "hold (default 10); smaller ones are merged or left out.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show or change what per-site statistics this site shares with the coordinator."""
    from client_app.governance.sharing import (  # here: --help stays light
        min_cell_count,
        set_min_cell_count,
        set_sharing,
        sharing,
    )
    from client_app.store.folder import open_site_dir
    from client_app.store.site_store import SiteStore

    with cli_boundary():
        site = open_site_dir(site_dir)
        changes = {name: _choice(value, f"--{name.replace('_', '-')}")
                   for name, value in (("own_counts", own_counts),
                                       ("importance", importance)) if value is not None}
        if (changes or min_cell is not None) and not actor.strip():
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--actor is required to change "
                               "what the site shares")
        with SiteStore.open(site) as store:
            for name, allowed in changes.items():
                set_sharing(store, name, allowed, actor=actor)
            if min_cell is not None:
                set_min_cell_count(store, min_cell, actor=actor)
            current = sharing(store)
            cell = min_cell_count(store)
    if as_json:
        print_json({**current.to_json(), "min_cell_count": cell}, indent=None, sort_keys=True)
        return
    typer.echo(f"own evaluation counts (leave-one-site-out): "
               f"{'shared' if current.own_counts else 'not shared'}")
    typer.echo(f"feature importance: {'shared' if current.importance else 'not shared'}")
    typer.echo(f"smallest shared histogram cell or group: {cell} rows")


def register(app: typer.Typer) -> None:
    """Add ``sharing`` to the site CLI."""
    app.command("sharing")(sharing_command)
