"""``tessera site node start|stop|status``: the site's node (its agent and SuperNode) as
background processes. The work is :class:`client_app.node.controller.NodeController`'s,
which the desktop app drives too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from client_app.cli.options import JsonOption, SiteDirOption, print_json
from common.cli_boundary import cli_boundary
from privacy.passphrase import passphrase_from_environment

if TYPE_CHECKING:
    from client_app.node.controller import NodeStatus


def start(
    site_dir: SiteDirOption,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS, no node authentication: development only.")] = False,
    superlink: Annotated[str | None, typer.Option(
        "--superlink", help="HOST:PORT of the SuperLink (default: the signed manifest's)."
    )] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to wait for the agent to answer (0: do not wait).")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Start the site agent and its SuperNode in the background."""
    from client_app.node.controller import NodeController  # here: --help stays light
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        controller = NodeController(open_site_dir(site_dir))
        controller.start(passphrase=passphrase_from_environment(), insecure=insecure,
                         superlink=superlink)
        status = controller.wait_ready(timeout=wait) if wait > 0 else controller.status()
        if wait > 0:
            status = controller.wait_connection(timeout=min(wait, 20.0))
    if as_json:
        print_json({"action": "started", **status.to_json()})
        return
    typer.echo(f"node started (pid {status.pid}), SuperLink {status.superlink}"
               f"{', agent answering' if status.agent_up else ''}; log {status.log_path}")
    if status.connection == "retrying":
        typer.echo(f"warning: the SuperLink {status.superlink} is unreachable; the SuperNode "
                   "keeps retrying ('tessera site node status' shows when it connects)",
                   err=True)
    elif status.connection == "connected":
        typer.echo(f"connected to the SuperLink {status.superlink}")


def stop(
    site_dir: SiteDirOption,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait before killing the node.")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Stop the site agent and its SuperNode."""
    from client_app.node.controller import NodeController
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        controller = NodeController(open_site_dir(site_dir))
        before = controller.status()
        controller.stop(timeout=timeout)
    if as_json:
        print_json({"action": "stopped" if before.running else "not_running",
                    "pid": before.pid if before.running else None})
        return
    typer.echo(f"node stopped (pid {before.pid})" if before.running else "node was not running")


def _status_rows(status: NodeStatus) -> list[tuple[str, str]]:
    last_task = ("-" if status.last_task is None else
                 f"{status.last_task} at {status.last_task_at.isoformat(timespec='seconds')}"
                 if status.last_task_at else status.last_task)
    return [
        ("node", f"running (pid {status.pid})" if status.running else "stopped"),
        ("agent", "answering" if status.agent_up else "down"),
        ("SuperNode", "running" if status.supernode_up else "down"),
        ("SuperLink", (status.superlink or "-")
         + (" (insecure)" if status.insecure else "")
         + (f", {status.connection}" if status.running else "")),
        ("current study", status.current_study or "-"),
        ("current round", "-" if status.current_round is None else str(status.current_round)),
        ("last task", last_task),
        ("last error", status.last_error or "-"),
    ]


def status(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """Show whether the node runs, the agent answers, and its current study and round."""
    from client_app.node.controller import NodeController
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        current = NodeController(open_site_dir(site_dir)).status()
    if as_json:
        print_json(current.to_json())
        return
    for label, value in _status_rows(current):
        typer.echo(f"{label + ':':<15}{value}")


def register(app: typer.Typer) -> None:
    """Add the ``node`` command group to the site CLI."""
    group = typer.Typer(help="The site's node (agent and SuperNode): start, stop, status.\n\n"
                        "Example: tessera site node status --site-dir DIR --json",
                        no_args_is_help=True)
    group.command("start")(start)
    group.command("stop")(stop)
    group.command("status")(status)
    app.add_typer(group, name="node")
