"""``tessera site budget|ceiling``: the privacy ledger and the site's privacy ceiling. The
ledger and the ceiling's rules (raising it needs confirmation) live in
:class:`client_app.store.site_store.SiteStore`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    SiteDirOption,
    cells,
    print_json,
    site_store,
)
from common.errors import ErrorCode, TesseraError


def budget(
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only this dataset id.")
    ] = None,
) -> None:
    """Show the privacy ledger: every DP-SGD run and the cumulative epsilon per dataset."""
    with site_store(site_dir) as store:
        entries = store.ledger(dataset_id=dataset)
        ceiling = store.ceiling()
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    table = Table(
        title="Privacy ledger", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
    )
    for header in ("date (UTC)", "study, round", "dataset"):
        table.add_column(header, overflow="fold")
    for header in ("noise", "rate", "steps", "eps run", "eps total"):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for e in entries:
        table.add_row(*cells(
            e.at.strftime("%Y-%m-%d"), f"{e.study} r{e.round}",
            f"{e.dataset_id}@{e.dataset_version}", f"{e.noise_multiplier:.3g}",
            f"{e.sample_rate:.3g}", str(e.steps), f"{e.epsilon:.3f}",
            f"{e.epsilon_cumulative:.3f}",
        ))
    console = Console()
    console.print(table)
    console.print(f"privacy ceiling: {ceiling:g} (epsilon per dataset)")
    latest = {e.dataset_id: e for e in entries}
    for dataset_id, e in sorted(latest.items()):
        console.print(
            f"dataset {dataset_id}: cumulative epsilon {e.epsilon_cumulative:.3f} "
            f"(delta {e.delta:.0e}), remaining {max(ceiling - e.epsilon_cumulative, 0.0):.3f}",
            markup=False,
        )
    if not latest:
        console.print("no DP-SGD runs recorded yet")


def ceiling(
    site_dir: SiteDirOption,
    value: Annotated[
        float | None, typer.Argument(help="New ceiling (epsilon per dataset); omit to show.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm raising the ceiling.")] = False,
    actor: ActorOption = "operator",
) -> None:
    """Show the privacy ceiling, or set it to VALUE (epsilon per dataset); raising needs --yes."""
    with site_store(site_dir) as store:
        before = store.ceiling()
        if value is not None:
            try:
                store.set_ceiling(value, actor=actor, confirm_raise=yes)
            except TesseraError as err:
                if err.code is ErrorCode.PERMISSION_DENIED:
                    raise TesseraError(err.code, f"{err.message}; pass --yes") from None
                raise
        after = store.ceiling()
    if value is None:
        typer.echo(f"privacy ceiling: {after:g} (epsilon per dataset)")
    else:
        typer.echo(f"privacy ceiling: {after:g} (was {before:g})")


def register(app: typer.Typer) -> None:
    """Add ``budget`` and ``ceiling`` to the site CLI."""
    app.command("budget")(budget)
    app.command("ceiling")(ceiling)
