"""``tessera site drift``: how far this site's newest data moved from a kept model's data.

The work is :mod:`client_app.learning.drift`'s; the command unlocks the site vault and
prints statistics only (PSI, KS, mean scores), never patient ids or values. It also shows
(and with ``--sharing on|off`` sets) whether this site answers the coordinator's drift
requests: DP-noised histograms in the ledger, only for plans that declare ``[drift]``
(:mod:`client_app.governance.drift_sharing`; off by default).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    SiteDirOption,
    cells,
    print_json,
    site_vault,
)
from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError

_SWITCH = {"on": True, "off": False}


def drift(
    site_dir: SiteDirOption, actor: ActorOption, as_json: JsonOption = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="A stored model's name (default: the newest).")] = None,
    sharing: Annotated[str | None, typer.Option(
        "--sharing", help="'on' or 'off': whether this site answers the coordinator's drift "
        "requests (DP-noised, in the ledger; off by default). Sets it and shows nothing "
        "else.")] = None,
) -> None:
    """Per-feature PSI and KS and the score shift: newest dataset version vs the model's."""
    from client_app.governance.drift_sharing import drift_shared, set_drift_sharing
    from client_app.store.site_store import SiteStore  # here: --help stays light

    with cli_boundary():
        vault = site_vault(site_dir)
        with SiteStore.open(vault.site) as store:
            if sharing is not None:
                if sharing not in _SWITCH:
                    raise TesseraError(ErrorCode.CONFIG_INVALID, "--sharing: 'on' or 'off'")
                set_drift_sharing(store, _SWITCH[sharing], actor=actor)
            shared = drift_shared(store)
        if sharing is None:
            from client_app.learning.drift import drift_report  # torch: only when run

            report = drift_report(vault, model=model)
    if sharing is not None:
        if as_json:
            print_json({"shared_with_coordinator": shared})
        else:
            typer.echo(f"drift sharing with the coordinator: {'on' if shared else 'off'}")
        return
    if as_json:
        print_json({**report.to_json(), "shared_with_coordinator": shared})
        return
    typer.echo(f"model {report.model} (study {report.study}), dataset {report.dataset}")
    typer.echo(f"  reference version {report.reference_version[:16]} "
               f"({report.reference_rows} rows), current {report.current_version[:16]} "
               f"({report.current_rows} rows)")
    if report.same_version:
        typer.echo("  the newest version is the one the model was trained on")
    typer.echo(f"  scores: PSI {report.score_psi:.4f}  KS {report.score_ks:.4f}  mean "
               f"{report.mean_score_reference:.4f} -> {report.mean_score_current:.4f}")
    from client_app.learning.drift import MAJOR_PSI, MODERATE_PSI

    typer.echo(f"  drift level: {report.level} (PSI > {MODERATE_PSI:g} moderate, "
               f"> {MAJOR_PSI:g} major)")
    table = Table(title="Features, largest PSI first")
    for header in ("feature", "PSI", "KS", "KS p-value"):
        table.add_column(header)
    for f in sorted(report.features, key=lambda f: -f.psi):
        table.add_row(*cells(f.feature, f"{f.psi:.4f}", f"{f.ks:.4f}", f"{f.ks_p_value:.3g}"))
    Console().print(table)
    typer.echo(f"drift sharing with the coordinator: {'on' if shared else 'off'} (DP-noised "
               "histograms, only for plans with [drift]; change with --sharing on|off)")


def register(app: typer.Typer) -> None:
    """Add ``drift`` to the site CLI."""
    app.command("drift")(drift)
