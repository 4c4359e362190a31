"""The ``tessera`` console script: wires the role CLIs and the demo; no logic of its own."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console

from client_app.cli.main import app as site_app
from client_app.cli.options import SiteDirOption
from client_app.node.passphrase_fd import passphrase_from, reexec_without_secret_env
from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, KitOption, input_file, kit_from, login_name, print_json
from common.errors import ErrorCode, TesseraError, exit_status
from privacy.passphrase import PASSPHRASE_ENV_VAR
from server.cli import app as federation_app
from serving.cli import model_app
from tessera import __version__
from tessera.access import KIT_ENV_VAR, enforce_on
from tessera.audit_cli import app as audit_app
from tessera.cli_conventions import deprecated_site_count, group_help, kit_on_every_command
from tessera.coordinator_cli import app as coordinator_app
from tessera.data_cli import app as data_app
from tessera.drift_cli import register as register_study_drift
from tessera.progress import num
from tessera.simulate import register as register_simulate
from tessera.study_cli import register as register_study_runs

app = typer.Typer(help="Tessera: federated, privacy-preserving learning for hospitals.\n\n"
                  "Example: tessera demo --num-sites 3 --rounds 2",
                  no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})
study_app = typer.Typer(help="Study plans and runs: validate, write, submit, follow, report.",
                        no_args_is_help=True)
app.add_typer(site_app, name="site", help=group_help(
    "Site operator commands (run at a hospital).",
    "tessera site budget --site-dir work/sites/site-1"))
app.add_typer(study_app, name="study", help=group_help(
    "Study plans and runs: validate, write, submit, follow, report.",
    "tessera study validate plan.toml --json"))
register_study_drift(study_app)
app.add_typer(audit_app, name="audit", help=group_help(
    "Auditor tools: verify and read audit logs.",
    "tessera --kit auditor-kit audit verify coordinator/audit/audit.log"))
app.add_typer(federation_app, name="federation", help=group_help(
    "Coordinator commands: provision a federation.",
    "tessera federation init --name demo --sites site-1,site-2 --out fed"))
app.add_typer(model_app, name="model", help=group_help(
    "Registered models: list, show, predict.",
    "tessera model list --coordinator-dir work/coordinator --json"))
app.add_typer(coordinator_app, name="coordinator", help=group_help(
    "Coordinator: start, stop and inspect the SuperLink.",
    "tessera coordinator status --coordinator-dir work/coordinator"))
app.add_typer(data_app, name="data", help=group_help(
    "Sample data: per-site CSVs of a bundled study.",
    "tessera data split --study breast_cancer --sites site-1,site-2 --out data"))
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tessera {__version__}")
        raise typer.Exit()


@app.callback()
def _access(
    ctx: typer.Context,
    kit: Annotated[Path | None, typer.Option(
        "--kit", envvar=KIT_ENV_VAR, show_envvar=True,
        help="Your kit folder (coordinator, site or auditor): who runs the command. "
        "Default: the kit installed in --site-dir.")] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print Tessera's version and exit.")] = False,
) -> None:
    """Every command checks the access policy (tessera/roles.toml) before it runs."""
    ctx.obj = {"kit": kit}
    if isinstance(ctx.command, click.Group):
        kit_on_every_command(ctx.command)
    enforce_on(ctx, kit=kit)


#: Set by :func:`main` only: this process is the ``tessera`` command itself, so a long-running
#: command may replace it (same pid) with one whose environment holds no site passphrase.
#: Not set when the app is invoked in-process (tests, other tools).
_OWN_PROCESS: dict[str, bool] = {"exec": False}

PassphraseFdOption = Annotated[int | None, typer.Option(
    "--passphrase-fd", metavar="N", min=0,
    help="Read the site passphrase from inherited file descriptor N (to its end; one trailing "
         "newline dropped), e.g. --passphrase-fd 3 3<file; default: "
         f"{PASSPHRASE_ENV_VAR}, the OS keyring or a prompt.")]


def _leave_secret_env(passphrase_fd: int | None) -> None:
    """Started with a passphrase variable, re-execute without it (see passphrase_fd)."""
    if _OWN_PROCESS["exec"]:
        reexec_without_secret_env(passphrase_fd)


@site_app.command("agent")
def site_agent(
    site_dir: SiteDirOption,
    audit_address: Annotated[str | None, typer.Option(
        help="HOST:PORT to serve this site's audit log to the auditor (mutual TLS).")] = None,
    passphrase_fd: PassphraseFdOption = None,
    socket_group: Annotated[str | None, typer.Option(
        "--socket-group", metavar="GROUP",
        help="Also let GROUP (name or id) use the agent's socket (mode 0660), for a SuperNode "
             "run under another account in GROUP; default: this account only (0600).")] = None,
) -> None:
    """Run the site agent (the process that owns data, keys and ledger) until stopped."""
    from client_app.agent.grpc_service import serve_forever
    from client_app.node.agent_process import open_agent_vault

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    audit = None
    try:
        with cli_boundary():
            _leave_secret_env(passphrase_fd)
            vault = open_agent_vault(site_dir, passphrase=passphrase_from(passphrase_fd))
            if audit_address:
                from tessera.audit_service import serve_audit

                site = vault.site
                audit = serve_audit({"site": site.audit_log},
                                    address=audit_address, kit_dir=site.kit_dir)
            serve_forever(vault, socket_group=socket_group)
    finally:
        if audit is not None:
            audit.stop(grace=1)


@site_app.command("run")
def site_run(
    site_dir: SiteDirOption,
    superlink: Annotated[str | None, typer.Option(
        help="HOST:PORT of the SuperLink (default: from the signed manifest).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS, no node authentication: development only.")] = False,
    passphrase_fd: PassphraseFdOption = None,
) -> None:
    """Run this site's agent and SuperNode (TLS and node authentication by default)."""
    from client_app.node.run import run_site

    try:
        with cli_boundary():
            _leave_secret_env(passphrase_fd)
            run_site(site_dir, superlink=superlink, insecure=insecure, console=console,
                     passphrase=passphrase_from(passphrase_fd))
    except KeyboardInterrupt:
        err_console.print("stopped: the agent and the SuperNode were shut down")


@site_app.command("gui")
def site_gui(
    ctx: typer.Context,
    site_dir: SiteDirOption,
    actor: Annotated[str, typer.Option(
        "--actor", "--operator", default_factory=login_name, show_default=False,
        help="Your name, recorded with every decision (default: your login name); "
             "--operator is the older spelling.")],
    kit: KitOption = None,
) -> None:
    """Open the site operator's desktop app on this site folder."""
    from gui.app import run_app
    from tessera.access import load_policy

    with cli_boundary():
        code = run_app(site_dir, policy=load_policy(), kit=kit_from(ctx, kit), actor=actor)
    raise typer.Exit(code)


@study_app.command("validate")
def study_validate(
    plan: Annotated[Path, typer.Argument(help="The study plan (TOML) to check.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a study plan, print its privacy budget split and its plan hash."""
    from common.plan import load_plan, plan_hash
    from privacy.release_plan import budget_split

    with cli_boundary():
        parsed = load_plan(input_file(plan, "PLAN"))
        split = budget_split(parsed)
        if split is not None and not split.feasible:
            raise TesseraError(ErrorCode.PLAN_INVALID, "study plan: " + split.lines()[-1])
    if as_json:
        print_json({"study": parsed.name, "valid": True, "plan_hash": plan_hash(parsed),
                    "budget": split.lines() if split is not None else []})
        return
    console.print(f"{parsed.name}: valid")
    for line in split.lines() if split is not None else []:
        console.print(f"  budget: {line}")
    console.print(plan_hash(parsed))


register_study_runs(study_app)
register_simulate(app)


@app.command()
def demo(
    num_sites: Annotated[int, typer.Option(
        "--num-sites", min=1, max=50, help="Number of hospital sites (named site-1, site-2, "
        "...).")] = 3,
    sites: Annotated[str | None, typer.Option(
        "--sites", hidden=True,
        help="Deprecated here: a count is --num-sites; --sites names sites elsewhere.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds (default: the plan's).")] = None,
    study: Annotated[str, typer.Option(help="Bundled study name or a plan file.")] =
        "breast_cancer",
    epsilon: Annotated[float | None, typer.Option(help="Target epsilon per site.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the plan's).")] = None,
    no_he: Annotated[bool, typer.Option("--no-he", help="Plaintext FedAvg, to compare.")] =
        False,
    workdir: Annotated[Path, typer.Option(help="Work folder to create.")] = Path("demo-work"),
    report: Annotated[Path | None, typer.Option(help="Report path.")] = None,
    ceiling: Annotated[list[str] | None, typer.Option(
        help="SITE=EPSILON privacy ceiling for one site (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 1800.0,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS, no node authentication: development only.")] = False,
    loso: Annotated[bool, typer.Option(
        "--loso", help="Also leave each site out in turn: train on the others, evaluate on "
                       "it (spends privacy budget at the training sites).")] = False,
) -> None:
    """Run a study on a local federation of real Flower processes and write a report."""
    from common.plan import bundled_plan_path, load_plan, override, plan_hash
    from tessera.demo import DEMO_PASSPHRASE, DemoOptions, next_steps, run_demo

    try:
        with cli_boundary():
            if sites is not None:
                num_sites = deprecated_site_count(sites, warn=err_console)
            path = Path(study) if study.endswith(".toml") else bundled_plan_path(study)
            plan = override(load_plan(path), rounds=rounds, target_epsilon=epsilon, seed=seed,
                            he_enabled=False if no_he else None,
                            min_sites=min(num_sites, load_plan(path).federation.min_sites),
                            loso=True if loso else None)  # the sites approve a plan that asks
            ceilings = _parse_ceilings(ceiling or [])
            passphrase = os.environ.get(PASSPHRASE_ENV_VAR) or DEMO_PASSPHRASE
            if passphrase == DEMO_PASSPHRASE:
                console.print(f"demo site keystores use the passphrase '{DEMO_PASSPHRASE}' "
                              f"(set {PASSPHRASE_ENV_VAR} to choose another)")
            options = DemoOptions(workdir=workdir, report=report or workdir / "report.json",
                                  sites=num_sites, ceilings=ceilings, timeout=timeout,
                                  passphrase=passphrase, insecure=insecure, loso=loso)
            console.print(f"study [bold]{plan.name}[/] plan hash {plan_hash(plan)}")
            result = run_demo(plan, options, console)
    except KeyboardInterrupt:
        err_console.print("interrupted: every started process was stopped")
        raise typer.Exit(130) from None
    final = result.get("final") or {}
    console.print(f"report written to {options.report}")
    if result["status"] != "completed":
        err_console.print(f"[bold red]study did not complete:[/] {result.get('error')}")
        raise typer.Exit(exit_status(ErrorCode.PROCESS_FAILED))
    console.print(f"final accuracy {num(final.get('accuracy'))}  AUC {num(final.get('auc'))}"
                  f"  (baseline AUC {num(result['baseline'].get('auc'))})")
    check = result.get("released_model_check")
    if final.get("dp_noise") and check:
        console.print(f"  the federation's metrics are DP estimates from noisy counts; scored "
                      f"exactly on the pooled held-out rows the released model has accuracy "
                      f"{num(check.get('accuracy'))}, AUC {num(check.get('auc'))}")
    for line in next_steps(options, passphrase_is_default=passphrase == DEMO_PASSPHRASE):
        typer.echo(line)  # not wrapped: each command stays one line to copy


def _parse_ceilings(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--ceiling: expected SITE=EPSILON, got '{item}'") from None
    return out


def main() -> None:
    """Console-script entry point."""
    _OWN_PROCESS["exec"] = True
    app()


if __name__ == "__main__":
    main()
