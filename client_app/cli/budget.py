"""``tessera site budget|ceiling|delta|non-private``: the privacy ledger and the site's privacy
settings. The ledger and the settings' rules (loosening needs confirmation) live in
:mod:`client_app.store.ledger` and :mod:`client_app.store.privacy_settings`; the report and
its integrity check in :mod:`client_app.governance.budget`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError, exit_status

if TYPE_CHECKING:
    from client_app.custody.vault import SiteVault
    from client_app.governance.budget import LedgerReport

YesOption = Annotated[bool, typer.Option("--yes", help="Confirm loosening the setting.")]


def _confirming(err: TesseraError) -> TesseraError:
    if err.code is ErrorCode.PERMISSION_DENIED:
        return TesseraError(err.code, f"{err.message}; pass --yes")
    return err


def budget(
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only this dataset id.")
    ] = None,
) -> None:
    """Show the privacy ledger: every release with its mechanism, the site's delta and the
    cumulative epsilon per dataset, and whether the ledger passes its integrity check."""
    from client_app.custody.vault import unlock_vault  # here: --help stays light
    from client_app.governance.budget import ledger_report
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        site = open_site_dir(site_dir)
        try:
            vault: SiteVault | None = unlock_vault(site)
            unchecked = ""
        except TesseraError as err:  # no keystore or no passphrase: show it unchecked
            if err.code is not ErrorCode.KEY_MISSING:
                raise
            vault, unchecked = None, f"not checked: {err.message}"
        report = ledger_report(site, vault=vault, dataset=dataset, unchecked=unchecked)
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report)
    if report.integrity is not None and not report.integrity.ok:
        raise typer.Exit(code=exit_status(ErrorCode.DATA_INVALID))


#: Short table labels of the mechanisms (the JSON keeps their full names).
_LABELS = {"poisson_subsampled_gaussian": "sampled gaussian", "gaussian": "gaussian"}


def _print_report(report: LedgerReport) -> None:
    table = Table(
        title="Privacy ledger", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
    )
    for header in ("#", "date", "release", "study", "dataset", "mechanism"):
        table.add_column(header, overflow="fold")
    for header in ("eps", "total"):
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for e in report.entries:
        table.add_row(*cells(
            str(e.id), e.at.strftime("%Y-%m-%d"), e.kind, f"{e.study} r{e.round}",
            e.dataset_id, f"{_LABELS.get(e.mechanism_name, e.mechanism_name)}: "
            f"{e.parameters_text()}", f"{e.epsilon:.3f}", f"{e.epsilon_cumulative:.3f}",
        ))
    console = Console()
    console.print(table)
    console.print(f"privacy ceiling: {report.ceiling:g} (epsilon per dataset)")
    console.print("site delta: " + (f"{report.explicit_delta:g} (set by the operator)"
                                    if report.explicit_delta is not None
                                    else "1/(10 n) per dataset (default)"), markup=False)
    console.print("non-private studies: "
                  + ("allowed" if report.non_private_studies else "refused"), markup=False)
    for d in report.datasets:
        delta = "unknown (no registered version)" if d.delta is None else (
            f"{d.delta.value:.3g}, {d.delta.source}")
        console.print(f"dataset {d.dataset}: cumulative epsilon {d.spent:.3f} at delta "
                      f"{delta}; remaining {d.remaining:.3f}", markup=False)
    if not report.entries:
        console.print("no release recorded yet")
    check = report.integrity
    if check is None:
        console.print(f"ledger integrity: {report.unchecked}", markup=False)
    elif check.ok:
        console.print(f"ledger integrity: intact ({check.entries} entries verified)")
    else:
        where = "its head" if check.first_bad is None else f"entry {check.first_bad}"
        console.print(f"ledger integrity: FAILED at {where}: {check.reason}", markup=False)


def ceiling(
    site_dir: SiteDirOption,
    actor: ActorOption,
    value: Annotated[
        float | None, typer.Argument(help="New ceiling (epsilon per dataset); omit to show.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm raising the ceiling.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the privacy ceiling, or set it to VALUE (epsilon per dataset); raising needs --yes."""
    with site_store(site_dir) as store:
        before = store.ceiling()
        if value is not None:
            try:
                store.set_ceiling(value, actor=actor, confirm_raise=yes)
            except TesseraError as err:
                raise _confirming(err) from None
        after = store.ceiling()
    if as_json:
        print_json({"ceiling": after, "previous": None if value is None else before,
                    "changed": value is not None and after != before})
    elif value is None:
        typer.echo(f"privacy ceiling: {after:g} (epsilon per dataset)")
    else:
        typer.echo(f"privacy ceiling: {after:g} (was {before:g})")


def _delta_value(text: str) -> float | None:
    if text.strip().lower() == "default":
        return None
    try:
        return float(text)
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"VALUE: must be a number in (0, 1) or 'default', got {text!r}") \
            from None


def delta(
    site_dir: SiteDirOption,
    actor: ActorOption,
    value: Annotated[str | None, typer.Argument(
        help="The delta every release is accounted at, in (0, 1), or 'default' for 1/(10 n) "
             "per dataset; omit to show.")] = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show the site's privacy delta, or set it; raising it for any dataset needs --yes."""
    with site_store(site_dir) as store:
        before = store.explicit_delta()
        if value is not None:
            try:
                store.set_delta(_delta_value(value), actor=actor, confirm_raise=yes)
            except TesseraError as err:
                raise _confirming(err) from None
        after = store.explicit_delta()
    shown = "1/(10 n) per dataset (default)" if after is None else f"{after:g}"
    if as_json:
        print_json({"delta": after, "default": after is None,
                    "previous": before if value is not None else None,
                    "changed": value is not None and after != before})
    elif value is None:
        typer.echo(f"privacy delta: {shown}")
    else:
        typer.echo(f"privacy delta: {shown} (was "
                   f"{'the default' if before is None else f'{before:g}'})")


def non_private(
    site_dir: SiteDirOption,
    actor: ActorOption,
    choice: Annotated[str | None, typer.Argument(
        help="'allow' or 'refuse' studies whose plan turns differential privacy off; "
             "omit to show.")] = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show or change whether this site runs non-private studies; allowing needs --yes."""
    with site_store(site_dir) as store:
        if choice is not None:
            wanted = choice.strip().lower()
            if wanted not in ("allow", "refuse"):
                raise TesseraError(ErrorCode.CONFIG_INVALID,
                                   f"CHOICE: must be 'allow' or 'refuse', got {choice!r}")
            try:
                store.set_allow_non_private(wanted == "allow", actor=actor, confirm=yes)
            except TesseraError as err:
                raise _confirming(err) from None
        allowed = store.allows_non_private()
    if as_json:
        print_json({"non_private_studies": "allowed" if allowed else "refused"})
        return
    typer.echo(f"non-private studies: {'allowed' if allowed else 'refused'}")


def register(app: typer.Typer) -> None:
    """Add ``budget``, ``ceiling``, ``delta`` and ``non-private`` to the site CLI."""
    app.command("budget")(budget)
    app.command("ceiling")(ceiling)
    app.command("delta")(delta)
    app.command("non-private")(non_private)
