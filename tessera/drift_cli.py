"""``tessera study drift STUDY``: PSI per feature across the sites' drift answers.

Only translates options; the work is :func:`tessera.drift_ops.request_drift`'s (``--collect``:
ask the running coordinator's sites first) and :func:`server.drift.study_drift`'s. It
combines the answers the sites gave to drift requests (kept in the coordinator folder),
records the check in the registry and, past the plan's ``[drift] psi_threshold`` (or, with
``scores``, its ``score_psi_threshold`` for the final model's scores), marks the model
"retraining recommended" and prints the path of the drafted next plan version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from common.cli_boundary import cli_boundary
from common.workdir import CoordinatorDir

if TYPE_CHECKING:
    from server.drift_scores import ScoreDrift


def drift_command(
    study: Annotated[str, typer.Argument(help="The study name.")],
    coordinator_dir: Annotated[Path, typer.Option(
        "--coordinator-dir", help="The coordinator folder.")],
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="The model version (default: the newest).")] = None,
    record: Annotated[bool, typer.Option(
        "--record/--no-record", help="Record the check in the registry (default) or only "
        "show it.")] = True,
    collect: Annotated[bool, typer.Option(
        "--collect", help="First ask every site of the running coordinator for its drift "
        "histograms (a signed task; sites answer only for plans with \\[drift] and when their "
        "operator allows it).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1.0, help="Seconds the sites have to answer (--collect).")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """PSI per feature of the sites' drift histograms against the training-time reference."""
    folder = coordinator_dir.expanduser().absolute()
    with cli_boundary():
        from server.drift import study_drift

        if collect:
            from tessera.drift_ops import request_drift

            outcome = request_drift(CoordinatorDir(folder), study, version=version,
                                    timeout=timeout)
            if not as_json:
                typer.echo(f"drift run {outcome['run_id']}: {outcome.get('status')}; answered "
                           f"{', '.join(sorted(outcome.get('answered') or {})) or 'none'}")
                for site, why in sorted((outcome.get("refused") or {}).items()):
                    typer.echo(f"  {site} refused: {why}")
        result = study_drift(folder, study, version=version, record=record)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=1, sort_keys=True))
        return
    typer.echo(f"{result.study} v{result.version}: {len(result.sites)} site(s) answered "
               f"({', '.join(sorted(result.sites))})")
    typer.echo(f"  reference: {result.reference}")
    sites = sorted(result.sites)
    table = Table(title="PSI per feature, all sites together, largest first")
    for header in ("feature", "PSI", *sites):
        table.add_column(header)
    for f in sorted(result.features, key=lambda f: -f.psi):
        table.add_row(f.feature, f"{f.psi:.4f}", *(f"{f.per_site[s]:.4f}" for s in sites))
    Console().print(table)
    typer.echo(f"  worst feature PSI {result.worst_psi:.4f} (threshold {result.threshold:g})")
    if result.scores is not None:
        _echo_scores(result.scores)
    verdict = "RETRAINING RECOMMENDED" if result.retraining_recommended else "within threshold"
    typer.echo(f"  {verdict}")
    if result.draft_plan:
        draft = folder / result.draft_plan
        typer.echo(f"  next plan version drafted: {draft}")
        typer.echo("  review it, then submit it; each site reviews and approves it as usual")
    if not record:
        typer.echo("  (not recorded: --no-record)")


def _echo_scores(scores: ScoreDrift) -> None:
    """The final model's score shift, all compared sites together and per site."""
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    per_site = ", ".join(f"{site} {shown(v)}" for site, v in sorted(scores.per_site.items()))
    typer.echo(f"  model scores: PSI {shown(scores.psi)} (threshold {scores.threshold:g})"
               + (f"; per site: {per_site}" if per_site else ""))
    for site, why in sorted(scores.not_compared.items()):
        typer.echo(f"    {site} not compared: {why}")


def register(app: typer.Typer) -> None:
    """Add ``drift`` to the ``study`` group."""
    app.command("drift")(drift_command)
