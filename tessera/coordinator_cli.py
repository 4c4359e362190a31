"""``tessera coordinator start|stop|status``: the coordinator's SuperLink as a background
service. The work is :class:`tessera.coordinator_control.CoordinatorController`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, print_json
from common.workdir import CoordinatorDir
from tessera.coordinator_control import CoordinatorController, CoordinatorStatus
from tessera.coordinator_ops import coordinator_manifest, install_kit

app = typer.Typer(help="The coordinator's SuperLink: start, stop, status.",
                  no_args_is_help=True, add_completion=False)

CoordinatorDirOption = Annotated[Path, typer.Option(
    "--coordinator-dir", help="The coordinator folder (its kit in DIR/kit).")]


@app.callback()
def _group() -> None:
    """The coordinator's long-lived processes."""


@app.command("start")
def start(
    ctx: typer.Context,
    coordinator_dir: CoordinatorDirOption,
    host: Annotated[str | None, typer.Option(
        help="Interface the SuperLink listens on (default: the manifest's SuperLink "
             "address). Its control API has no login: keep it on a private interface.")
    ] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="SuperLink port (default: the manifest's).")] = None,
    audit_address: Annotated[str | None, typer.Option(
        help="HOST:PORT serving the coordinator's audit log to the auditor (default: the "
             "SuperLink's host, its port + 1).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS, no node authentication: development only.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait until it runs.")] = 180.0,
    as_json: JsonOption = False,
) -> None:
    """Start the SuperLink (TLS, SuperNode authentication) and register every site's node key.

    The coordinator kit comes from DIR/kit, or is installed there from the kit you run with
    (``tessera --kit COORDINATOR_KIT`` or TESSERA_KIT) on the first start.
    """
    kit = (ctx.obj or {}).get("kit")
    with cli_boundary():
        layout = CoordinatorDir(coordinator_dir.expanduser().absolute())
        if kit is not None:
            install_kit(layout, Path(kit))
        controller = CoordinatorController(layout)
        if insecure:
            typer.echo("WARNING: --insecure: no TLS and no node authentication; "
                       "development only.", err=True)
        if audit_address is None:
            manifest = coordinator_manifest(layout)
            audit_address = (f"{host or manifest.superlink_address}:"
                             f"{(port or manifest.superlink_port) + 1}")
        status = controller.start(host=host, port=port, audit_address=audit_address,
                                  insecure=insecure, wait=wait)
    _show(status, as_json=as_json, verb="started")


@app.command("stop")
def stop(coordinator_dir: CoordinatorDirOption,
         timeout: Annotated[float, typer.Option(help="Seconds before killing it.")] = 30.0,
         as_json: JsonOption = False) -> None:
    """Stop the coordinator's SuperLink, the running study apps and the audit service."""
    with cli_boundary():
        controller = CoordinatorController(CoordinatorDir(coordinator_dir.expanduser()))
        before = controller.status()
        controller.stop(timeout=timeout)
    if as_json:
        print_json({"action": "stopped" if before.running else "not_running",
                    "pid": before.pid if before.running else None})
        return
    typer.echo(f"coordinator stopped (pid {before.pid})" if before.running
               else "coordinator was not running")


@app.command("status")
def status(coordinator_dir: CoordinatorDirOption, as_json: JsonOption = False) -> None:
    """Whether the coordinator runs, its SuperLink answers, and which node keys it holds."""
    with cli_boundary():
        current = CoordinatorController(CoordinatorDir(coordinator_dir.expanduser())).status()
    _show(current, as_json=as_json, verb=None)


def _show(status: CoordinatorStatus, *, as_json: bool, verb: str | None) -> None:
    if as_json:
        print_json(status.to_json(), sort_keys=True)
        return
    if verb is not None:
        typer.echo(f"coordinator {verb} (pid {status.pid}), SuperLink {status.superlink}"
                   f" ({'TLS, node authentication' if status.tls else 'insecure'})")
    rows = [
        ("coordinator", f"{status.phase} (pid {status.pid})" if status.running else "stopped"),
        ("SuperLink", (status.superlink or "-")
         + ((" answering" if status.superlink_up else " not answering")
            if status.running else "")),
        ("node keys", ", ".join(status.registered_sites) or "-"),
        ("audit log", status.audit_address or "-"),
        ("last error", status.error or "-"),
        ("log", status.log_path),
    ]
    for label, value in rows:
        typer.echo(f"{label + ':':<13}{value}")
