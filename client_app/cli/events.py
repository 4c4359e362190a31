"""``tessera site events``: the site's event log (the input of the audit trail), as kept by
:class:`client_app.store.site_store.SiteStore`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import JsonOption, SiteDirOption, cells, print_json, site_store


def events(
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Only events of this kind.")] = None,
) -> None:
    """List site events (the input of the audit trail), oldest first."""
    with site_store(site_dir) as store:
        records = store.events(kind=kind)
    if as_json:
        print_json([r.to_json() for r in records])
        return
    table = Table("id", "at", "kind", "plan hash", "details", title="Site events")
    for r in records:
        table.add_row(*cells(
            str(r.id), r.at.isoformat(timespec="seconds"), r.kind, (r.plan_hash or "")[:12],
            json.dumps(r.details, sort_keys=True),
        ))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``events`` to the site CLI."""
    app.command("events")(events)
