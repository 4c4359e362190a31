"""``tessera study plan|submit|status|follow|list|cancel|resume|report``: study runs.

Commands only translate options; the work is :mod:`tessera.study_ops`'s, the progress view
is the demo's (:mod:`tessera.progress`) and the report is the demo's ``report.json``
(:mod:`tessera.report`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, print_json
from common.errors import ErrorCode, TesseraError, exit_status
from common.files import atomic_write_bytes
from common.workdir import CoordinatorDir
from tessera.coordinator_control import CoordinatorController
from tessera.coordinator_ops import coordinator_manifest
from tessera.progress import ProgressView, num

# The plan schema (pydantic) and the run operations that read plans: imported inside the
# commands, so that --help stays light.
if TYPE_CHECKING:
    from common.plan import StudyPlan
    from tessera import study_ops

console = Console()
CoordinatorDirOption = Annotated[Path, typer.Option(
    "--coordinator-dir", help="The coordinator folder.")]
RunArgument = Annotated[str, typer.Argument(
    help="The run id 'study submit' printed, or 'latest' for the newest run.")]


def _coordinator(path: Path) -> CoordinatorDir:
    return CoordinatorDir(path.expanduser().absolute())


def _plan(plan: Path | None, study: str | None) -> StudyPlan:
    from common.plan import bundled_plan_path, load_plan

    if (plan is None) == (study is None):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "give a PLAN file or --study NAME (one)")
    return load_plan(plan if plan is not None else bundled_plan_path(str(study)))


def plan_command(
    study: Annotated[str, typer.Argument(help="A bundled study plan's name.")],
    out: Annotated[Path, typer.Option("--out", help="The plan file to write.")],
    rounds: Annotated[int | None, typer.Option(min=1, help="Rounds.")] = None,
    epsilon: Annotated[float | None, typer.Option(help="Target epsilon per site.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    min_sites: Annotated[int | None, typer.Option(min=1, help="Minimum sites.")] = None,
    attesters: Annotated[int | None, typer.Option(
        min=0, max=32, help="Sites that check each set and sign its sum for the others "
                            "(encrypted studies; 0: every site checks every contribution).")
    ] = None,
) -> None:
    """Write a bundled study plan (with the changes given) to a file and print its hash."""
    from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml

    with cli_boundary(f"cannot write {out}"):
        plan = override(load_plan(bundled_plan_path(study)), rounds=rounds,
                        target_epsilon=epsilon, seed=seed, min_sites=min_sites,
                        attesters=attesters)
        if out.is_dir():
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"--out: {out} is a folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(plan_to_toml(plan), encoding="utf-8")
    typer.echo(f"{plan.name}: written to {out}")
    typer.echo(plan_hash(plan))


def submit(
    coordinator_dir: CoordinatorDirOption,
    plan: Annotated[Path | None, typer.Argument(help="The study plan file.")] = None,
    study: Annotated[str | None, typer.Option(help="A bundled study plan, by name.")] = None,
    custodian: Annotated[str, typer.Option(
        help="The site that holds the study's CKKS key and is asked first to release the "
             "model.")] = "",
    round_timeout: Annotated[float, typer.Option(help="Seconds a round may take.")] = 1800.0,
    follow_run: Annotated[bool, typer.Option(
        "--follow", help="Follow the run to its end (not with --json).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a study to the running coordinator; prints the run id."""
    from tessera import study_ops

    with cli_boundary():
        _json_without_follow(as_json=as_json, follow_run=follow_run)
        parsed = _plan(plan, study)
        layout = _coordinator(coordinator_dir)
        status = study_ops.submit(layout, parsed, custodian=custodian,
                                  round_timeout=round_timeout)
    if as_json:
        print_json(status.to_json(), sort_keys=True)
        return
    typer.echo(f"study {parsed.name} plan hash {status.plan_hash}")
    typer.echo(status.run_id)
    if follow_run:
        follow(status.run_id, coordinator_dir)


def _json_without_follow(*, as_json: bool, follow_run: bool) -> None:
    if as_json and follow_run:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "--json and --follow: give one (--follow streams progress)")


def status(run: RunArgument, coordinator_dir: CoordinatorDirOption,
           as_json: JsonOption = False) -> None:
    """A run's state, rounds done and last error."""
    from tessera import study_ops

    with cli_boundary():
        layout = _coordinator(coordinator_dir)
        found = study_ops.run_status(layout, study_ops.resolve_run(layout, run))
    if as_json:
        print_json(found.to_json(), sort_keys=True)
        return
    _status_line(found)


def _status_line(found: study_ops.RunStatus) -> None:
    typer.echo(f"run {found.run_id}: {found.study or '?'} {found.state}, round "
               f"{found.rounds_done}/{found.rounds}"
               + (f"; error: {found.error}" if found.error else ""))


def follow(run: RunArgument, coordinator_dir: CoordinatorDirOption,
           timeout: Annotated[float, typer.Option(help="Seconds to follow.")] = 7200.0) -> None:
    """Show a run's progress as it happens (as the demo does) until it ends."""
    from tessera import study_ops

    with cli_boundary():
        layout = _coordinator(coordinator_dir)
        run = study_ops.resolve_run(layout, run)
        current = study_ops.run_status(layout, run)
        view = ProgressView(layout.runs_dir, console, rounds=current.rounds, run_id=run)
        deadline = time.monotonic() + timeout
        result = view.poll()
        while result is None:
            if not CoordinatorController(layout).status().running:
                result = view.poll()
                if result is None:
                    raise TesseraError(ErrorCode.PROCESS_FAILED,
                                       f"the coordinator stopped before run {run} finished")
                break
            if time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   f"run {run} did not finish within {timeout:g} s")
            time.sleep(0.5)
            result = view.poll()
    final = study_ops.run_status(layout, run)
    _status_line(final)
    if final.state != "completed":
        raise typer.Exit(exit_status(ErrorCode.PROCESS_FAILED))


def resume(run: RunArgument, coordinator_dir: CoordinatorDirOption,
           follow_run: Annotated[bool, typer.Option(
               "--follow", help="Follow the run to its end (not with --json).")] = False,
           as_json: JsonOption = False) -> None:
    """Go on with a run the coordinator lost (killed or restarted) from its last completed
    round; sites are not asked again for what they already did."""
    from tessera import study_ops

    with cli_boundary():
        _json_without_follow(as_json=as_json, follow_run=follow_run)
        layout = _coordinator(coordinator_dir)
        found = study_ops.resume(layout, study_ops.resolve_run(layout, run))
    if as_json:
        print_json(found.to_json(), sort_keys=True)
        return
    _status_line(found)
    if follow_run:
        follow(found.run_id, coordinator_dir)


def list_command(coordinator_dir: CoordinatorDirOption, as_json: JsonOption = False) -> None:
    """Every run of this coordinator, oldest first."""
    from tessera import study_ops

    with cli_boundary():
        runs = study_ops.list_runs(_coordinator(coordinator_dir))
    if as_json:
        print_json([r.to_json() for r in runs], sort_keys=True)
        return
    if not runs:
        typer.echo("no runs")
    for found in runs:
        _status_line(found)


def cancel(run: RunArgument, coordinator_dir: CoordinatorDirOption,
           as_json: JsonOption = False) -> None:
    """Stop a run that has not finished; it is recorded as cancelled."""
    from tessera import study_ops

    with cli_boundary():
        layout = _coordinator(coordinator_dir)
        found = study_ops.cancel(layout, study_ops.resolve_run(layout, run))
    if as_json:
        print_json(found.to_json(), sort_keys=True)
        return
    _status_line(found)


def report(run: RunArgument, coordinator_dir: CoordinatorDirOption,
           out: Annotated[Path | None, typer.Option(
               "--out", help="Where to write report.json (default: in the run's folder).")]
           = None) -> None:
    """Write the run's report.json (the demo's format) and print a summary."""
    from tessera import study_ops
    from tessera.report import run_report

    with cli_boundary(f"cannot write {out}"):
        layout = _coordinator(coordinator_dir)
        run = study_ops.resolve_run(layout, run)
        result = study_ops.run_result(layout, run)
        plan = study_ops.run_plan(layout, run)
        manifest = coordinator_manifest(layout)
        state = CoordinatorController(layout).status()
        submitted = study_ops.run_status(layout, run)
        doc = run_report(plan, result, plan_digest=submitted.plan_hash,
                         custodian=_custodian(layout, run), supernodes=len(manifest.sites),
                         baseline=None, timings={}, superlink=state.superlink,
                         tls=state.tls, node_auth=state.tls)
        path = out or layout.run(run).root / "report.json"
        if path.is_dir():
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"--out: {path} is a folder")
        atomic_write_bytes(path, json.dumps(doc, indent=2).encode("utf-8"))
    _summary(doc)
    typer.echo(f"report written to {path}")


def _custodian(layout: CoordinatorDir, run: str) -> str:
    try:
        raw = json.loads(layout.run(run).submission_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(raw.get("custodian", "")) if isinstance(raw, dict) else ""


def _summary(doc: dict[str, Any]) -> None:
    study = doc["study"]
    console.print(f"[bold]{study['name']}[/] run {doc['engine'].get('run_id')}: "
                  f"{doc['status']}  (plan {study['plan_hash'][:12]}, "
                  f"{len(doc['rounds'])}/{study['rounds']} rounds)")
    for rnd in doc["rounds"]:
        m = rnd.get("metrics", {})
        console.print(f"  round {rnd['round']}: {', '.join(rnd['participating_sites'])}  "
                      f"accuracy {num(m.get('accuracy'))}  AUC {num(m.get('auc'))}")
    for site in doc["sites"]:
        console.print(f"  {site['name']}: {site['examples']} examples, epsilon spent "
                      f"{site['epsilon_spent']:.3f}")
    model = doc.get("model") or {}
    if model:
        console.print(f"model {model.get('study')} v{model.get('version')} registered "
                      f"(sha256 {str(model.get('sha256', ''))[:12]})")
    if doc.get("error"):
        console.print(f"[bold red]error:[/] {doc['error'].get('message')}")


def register(app: typer.Typer) -> None:
    """Add the run commands to the ``study`` group."""
    app.command("plan")(plan_command)
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("follow")(follow)
    app.command("list")(list_command)
    app.command("cancel")(cancel)
    app.command("resume")(resume)
    app.command("report")(report)
