"""``tessera site study ...`` and ``tessera site node ...``: the study inbox and the node.

Registered on the site CLI by :func:`register`. The commands only translate: the checks
live in :mod:`client_app.governance.studies` and :mod:`client_app.node.controller`, which
the desktop app calls too.
Approving, rejecting and revoking a plan hash stay ``tessera site approve|reject|revoke``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from client_app.governance.studies import plan_diff, receive_plan, received_plan, received_plans
from client_app.node.controller import NodeController
from client_app.store.folder import open_site_dir
from common.errors import ErrorCode, TesseraError
from privacy.passphrase import passphrase_from_environment

SiteDirOption = Annotated[
    Path, typer.Option("--site-dir", help="The site folder (WORKDIR/sites/<site>).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PlanHashArgument = Annotated[str, typer.Argument(help="The plan hash (64 hex characters).")]
Boundary = Callable[[], AbstractContextManager[None]]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"study plan file not found: {path}") from None
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.PLAN_INVALID, f"study plan: {path}: not UTF-8 text"
                           ) from None


def register(app: typer.Typer, boundary: Boundary) -> None:
    """Add the ``study`` and ``node`` command groups to the site CLI."""
    study = typer.Typer(help="Received study plans: receive, list, show, diff.",
                        no_args_is_help=True)
    node = typer.Typer(help="The site's node (agent and SuperNode): start, stop, status.",
                       no_args_is_help=True)
    app.add_typer(study, name="study")
    app.add_typer(node, name="node")

    @study.command("receive")
    def study_receive(
        plan: Annotated[Path, typer.Argument(help="The study plan (TOML) to review.")],
        site_dir: SiteDirOption,
    ) -> None:
        """Validate a study plan and add it to this site's inbox (pending until approved)."""
        with boundary():
            received = receive_plan(open_site_dir(site_dir), _read_text(plan), source="file")
        typer.echo(f"received study {received.study} plan {received.plan_hash} "
                   f"({received.status})")

    @study.command("list")
    def study_list(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
        """List received study plans, newest first, with the site's decision."""
        with boundary():
            plans = received_plans(open_site_dir(site_dir))
        if as_json:
            typer.echo(json.dumps([p.to_json() for p in plans], indent=2))
            return
        table = Table("plan hash", "study", "status", "received (UTC)", "source",
                      title="Study plans")
        for p in plans:
            table.add_row(*(Text(v) for v in (
                p.plan_hash, p.study, p.status,
                p.received_at.isoformat(timespec="seconds"), p.source)))
        Console(width=200).print(table)

    @study.command("show")
    def study_show(plan_hash: PlanHashArgument, site_dir: SiteDirOption,
                   as_json: JsonOption = False) -> None:
        """Show a received plan's summary: model, data fields, rounds, privacy, release."""
        with boundary():
            received = received_plan(open_site_dir(site_dir), plan_hash)
        if as_json:
            typer.echo(json.dumps({**received.to_json(),
                                   "summary": received.summary.to_json()}, indent=2))
            return
        typer.echo(f"status: {received.status} (received "
                   f"{received.received_at.isoformat(timespec='seconds')} from "
                   f"{received.source})")
        for label, value in received.summary.lines():
            typer.echo(f"{label + ':':<18}{value}")

    @study.command("diff")
    def study_diff(plan_hash: PlanHashArgument, site_dir: SiteDirOption,
                   as_json: JsonOption = False) -> None:
        """Compare a plan with the newest earlier plan of the same study."""
        with boundary():
            diff = plan_diff(open_site_dir(site_dir), plan_hash)
        if as_json:
            typer.echo(json.dumps({
                "plan_hash": diff.plan_hash, "previous_hash": diff.previous_hash,
                "changes": [c.__dict__ for c in diff.changes], "unified": diff.unified,
            }, indent=2))
            return
        if diff.previous_hash is None:
            typer.echo(f"plan {diff.plan_hash[:12]}: no earlier plan of this study received")
            return
        typer.echo(f"plan {diff.plan_hash[:12]} against {diff.previous_hash[:12]}: "
                   f"{len(diff.changes)} field(s) changed")
        for change in diff.changes:
            typer.echo(f"  {change.path}: {change.old} -> {change.new}")
        if diff.unified:
            typer.echo("")
            typer.echo(diff.unified.rstrip("\n"))

    @node.command("start")
    def node_start(
        site_dir: SiteDirOption,
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="No TLS, no node authentication: development only.")] = False,
        superlink: Annotated[str | None, typer.Option(
            "--superlink", help="HOST:PORT of the SuperLink (default: the signed manifest's)."
        )] = None,
        wait: Annotated[float, typer.Option(
            "--wait", help="Seconds to wait for the agent to answer (0: do not wait).")] = 120.0,
    ) -> None:
        """Start the site agent and its SuperNode in the background."""
        with boundary():
            controller = NodeController(open_site_dir(site_dir))
            controller.start(passphrase=passphrase_from_environment(), insecure=insecure,
                             superlink=superlink)
            status = controller.wait_ready(timeout=wait) if wait > 0 else controller.status()
        typer.echo(f"node started (pid {status.pid}), SuperLink {status.superlink}"
                   f"{', agent answering' if status.agent_up else ''}; log {status.log_path}")

    @node.command("stop")
    def node_stop(
        site_dir: SiteDirOption,
        timeout: Annotated[float, typer.Option(
            "--timeout", help="Seconds to wait before killing the node.")] = 30.0,
    ) -> None:
        """Stop the site agent and its SuperNode."""
        with boundary():
            controller = NodeController(open_site_dir(site_dir))
            before = controller.status()
            controller.stop(timeout=timeout)
        typer.echo(f"node stopped (pid {before.pid})" if before.running
                   else "node was not running")

    @node.command("status")
    def node_status(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
        """Show whether the node runs, the agent answers, and its current study and round."""
        with boundary():
            status = NodeController(open_site_dir(site_dir)).status()
        if as_json:
            typer.echo(json.dumps(status.to_json(), indent=2))
            return
        rows = [
            ("node", f"running (pid {status.pid})" if status.running else "stopped"),
            ("agent", "answering" if status.agent_up else "down"),
            ("SuperNode", "running" if status.supernode_up else "down"),
            ("SuperLink", (status.superlink or "-")
             + (" (insecure)" if status.insecure else "")
             + (f", {status.connection}" if status.running else "")),
            ("current study", status.current_study or "-"),
            ("current round", "-" if status.current_round is None else str(status.current_round)),
            ("last task", "-" if status.last_task is None else
             f"{status.last_task} at {status.last_task_at.isoformat(timespec='seconds')}"
             if status.last_task_at else status.last_task),
            ("last error", status.last_error or "-"),
        ]
        for label, value in rows:
            typer.echo(f"{label + ':':<15}{value}")
