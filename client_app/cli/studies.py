"""``tessera site study receive|list|show|diff``: the site's inbox of study plans.

The checks live in :mod:`client_app.governance.studies`, which the desktop app calls too.
Approving, rejecting and revoking a plan hash are ``tessera site approve|reject|revoke``
(:mod:`client_app.cli.approvals`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    JsonOption,
    PlanHashArgument,
    SiteDirOption,
    cells,
    print_json,
)
from common.cli_boundary import cli_boundary
from common.cli_options import input_file
from common.errors import ErrorCode, TesseraError


def _read_text(path: Path) -> str:
    try:
        return input_file(path, "PLAN").read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.PLAN_INVALID, f"study plan: {path}: not UTF-8 text"
                           ) from None


def receive(
    plan: Annotated[Path, typer.Argument(help="The study plan (TOML) to review.")],
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
) -> None:
    """Validate a study plan and add it to this site's inbox (pending until approved)."""
    from client_app.governance.studies import receive_plan  # here: --help stays light
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        received = receive_plan(open_site_dir(site_dir), _read_text(plan), source="file")
    if as_json:
        print_json({"study": received.study, "plan_hash": received.plan_hash,
                    "status": received.status})
        return
    typer.echo(f"received study {received.study} plan {received.plan_hash} "
               f"({received.status})")


def list_plans(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """List received study plans, newest first, with the site's decision."""
    from client_app.governance.studies import received_plans
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        plans = received_plans(open_site_dir(site_dir))
    if as_json:
        print_json([p.to_json() for p in plans])
        return
    table = Table("plan hash", "study", "status", "received (UTC)", "source",
                  title="Study plans")
    for p in plans:
        table.add_row(*cells(p.plan_hash, p.study, p.status,
                             p.received_at.isoformat(timespec="seconds"), p.source))
    Console(width=200).print(table)


def show(plan_hash: PlanHashArgument, site_dir: SiteDirOption,
         as_json: JsonOption = False) -> None:
    """Show a received plan's summary: model, data fields, rounds, privacy, release."""
    from client_app.governance.studies import received_plan
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        received = received_plan(open_site_dir(site_dir), plan_hash)
    if as_json:
        print_json({**received.to_json(), "summary": received.summary.to_json()})
        return
    typer.echo(f"status: {received.status} (received "
               f"{received.received_at.isoformat(timespec='seconds')} from "
               f"{received.source})")
    for label, value in received.summary.lines():
        typer.echo(f"{label + ':':<18}{value}")


def diff(plan_hash: PlanHashArgument, site_dir: SiteDirOption,
         as_json: JsonOption = False) -> None:
    """Compare a plan with the newest earlier plan of the same study."""
    from client_app.governance.studies import plan_diff
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        found = plan_diff(open_site_dir(site_dir), plan_hash)
    if as_json:
        print_json({
            "plan_hash": found.plan_hash, "previous_hash": found.previous_hash,
            "changes": [c.__dict__ for c in found.changes], "unified": found.unified,
        })
        return
    if found.previous_hash is None:
        typer.echo(f"plan {found.plan_hash[:12]}: no earlier plan of this study received")
        return
    typer.echo(f"plan {found.plan_hash[:12]} against {found.previous_hash[:12]}: "
               f"{len(found.changes)} field(s) changed")
    for change in found.changes:
        typer.echo(f"  {change.path}: {change.old} -> {change.new}")
    if found.unified:
        typer.echo("")
        typer.echo(found.unified.rstrip("\n"))


def register(app: typer.Typer) -> None:
    """Add the ``study`` command group to the site CLI."""
    group = typer.Typer(help="Received study plans: receive, list, show, diff.\n\n"
                        "Example: tessera site study receive plan.toml --site-dir DIR",
                        no_args_is_help=True)
    group.command("receive")(receive)
    group.command("list")(list_plans)
    group.command("show")(show)
    group.command("diff")(diff)
    app.add_typer(group, name="study")
