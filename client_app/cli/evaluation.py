"""``tessera site models|evaluate``: the final global models kept at this site and their
local evaluation on the site's held-out rows (withdrawn patients left out).

The work is :mod:`client_app.learning.local_eval`'s. Both commands unlock the site vault;
they print counts and scores, never patient ids.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import JsonOption, SiteDirOption, cells, print_json, site_vault
from common.cli_boundary import cli_boundary


def models(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """The final global models kept at this site, newest first."""
    from client_app.learning.local_eval import stored_models

    with cli_boundary():
        kept = stored_models(site_vault(site_dir))
    if as_json:
        print_json([m.to_json() for m in kept])
        return
    if not kept:
        typer.echo("no global model stored yet (one is kept after a study's final round)")
        return
    table = Table(title="Models")
    table.add_column("name", no_wrap=True)
    for header in ("study", "plan hash", "round", "stored (UTC)"):
        table.add_column(header, overflow="fold")
    for m in kept:
        table.add_row(*cells(m.name, m.study, m.plan_hash[:12], str(m.round),
                             m.at.strftime("%Y-%m-%d %H:%M")))
    Console().print(table)


def evaluate(
    site_dir: SiteDirOption, as_json: JsonOption = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="A stored model's name (default: the newest).")] = None,
) -> None:
    """Score a kept global model on this site's held-out rows (withdrawn patients out)."""
    from client_app.learning.local_eval import evaluate_model

    with cli_boundary():
        result = evaluate_model(site_vault(site_dir), model=model)
    doc = result.to_json()
    if as_json:
        print_json(doc)
        return
    auc = "undefined (one class only)" if doc["auc"] is None else f"{result.auc:.4f}"
    typer.echo(f"model {result.model} (study {result.study}, plan {result.plan_hash[:12]})")
    typer.echo(f"  held-out rows {result.n} (dataset {result.dataset_version[:16]}; "
               f"{result.excluded_by_consent} row(s) left out for consent)")
    typer.echo(f"  accuracy      {result.accuracy:.4f} at threshold {result.threshold:g}")
    typer.echo(f"  AUC           {auc}")
    typer.echo(f"  confusion     TP {result.tp}  FP {result.fp}  TN {result.tn}  "
               f"FN {result.fn}")


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``evaluate`` to the site CLI."""
    app.command("models")(models)
    app.command("evaluate")(evaluate)
