"""``tessera demo``: a whole federation of real processes on 127.0.0.1, one study, a report.

Starts a real ``flower-superlink``, one site agent and one ``flower-supernode`` per site,
submits the study with ``flwr run``, follows its progress, writes ``report.json`` and stops
every process it started, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from client_app.node.commands import (
    agent_command,
    python_module,
    supernode_command,
    venv_binary,
)
from client_app.node.passphrase_fd import start_with_passphrase
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan
from common.processes import ProcessGroup, flower_env, free_port, port_open
from common.workdir import WorkDir
from privacy.manifest import CA_CERT_FILE, load_manifest
from privacy.passphrase import PASSPHRASE_ENV_VAR
from tessera import coordinator_ops, local_federation
from tessera.baseline import centralised_baseline
from tessera.progress import ProgressView
from tessera.report import build_report

CONNECTION = coordinator_ops.CONNECTION
#: Passphrase of the demo's site keystores when TESSERA_SITE_PASSPHRASE is not set.
DEMO_PASSPHRASE = "tessera-demo"  # noqa: S105 (documented demo default, not a secret)


@dataclass(frozen=True)
class DemoOptions:
    """What the demo was asked to do."""

    workdir: Path
    report: Path
    sites: int = 3
    insecure: bool = False
    ceilings: dict[str, float] = field(default_factory=dict)
    timeout: float = 1800.0
    passphrase: str = field(repr=False, default=DEMO_PASSPHRASE)
    #: After the study, leave each site out in turn (server/loso.py).
    loso: bool = False


def _audit_serve(log: str, path: Path, address: str, kit: Path) -> list[str]:
    """``tessera audit serve`` for one party's log."""
    return python_module("tessera.cli", "audit", "serve", "--log", f"{log}={path}",
                         "--address", address, "--kit", str(kit))


def _audit_addresses(fed: local_federation.LocalFederation) -> dict[str, str]:
    """Where each party serves its audit log (provisioned federations only)."""
    if not fed.tls:
        return {}
    parties = ["coordinator", *[site.name for site in fed.sites]]
    return {party: f"127.0.0.1:{free_port()}" for party in parties}


def pull_audit_logs(fed: local_federation.LocalFederation,
                    addresses: dict[str, str]) -> dict[str, Any]:
    """As the auditor: pull every party's log over the AuditService and verify the copies."""
    from common.files import atomic_write_bytes
    from privacy.audit_verify import verify_bytes
    from tessera.audit_service import pull_log

    auditor = fed.layout.auditor
    kit = auditor.kit_dir
    out: dict[str, Any] = {}
    for party, address in addresses.items():
        name = "coordinator" if party == "coordinator" else "site"
        try:
            data = _pull_with_retry(pull_log, address, log=name, kit_dir=kit)
        except TesseraError as err:
            out[party] = {"pulled": False, "error": err.message}
            continue
        atomic_write_bytes(auditor.pulled_log(party), data)
        report = verify_bytes(data)
        out[party] = {"pulled": True, "records": report.records, "verified": report.ok,
                      "message": report.message}
    return out


def _pull_with_retry(pull: Any, address: str, **kwargs: Any) -> bytes:
    for attempt in range(5):
        try:
            return bytes(pull(address, **kwargs))
        except TesseraError:
            if attempt == 4:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def run_demo(plan: StudyPlan, options: DemoOptions, console: Console) -> dict[str, Any]:
    """Build the federation, run the study on real processes, write and return the report."""
    # Child processes run in other folders: every path they get must be absolute.
    options = replace(options, workdir=options.workdir.absolute(),
                      report=options.report.absolute())
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    link_port = free_port()
    fed = local_federation.build(options.workdir, plan, sites=options.sites,
                                 ceilings=options.ceilings, passphrase=options.passphrase,
                                 tls=not options.insecure, port=link_port)
    timings["provision_seconds"] = time.perf_counter() - t0
    baseline = centralised_baseline(fed)
    if options.insecure:
        console.print("[bold red]WARNING: insecure transport (no TLS, no node "
                      "authentication); for development only.[/]")
    coord = fed.coordinator_dir
    layout = fed.layout.coordinator
    env = flower_env(layout.flower_home)
    coordinator_ops.write_flwr_config(
        layout.flower_home, f"127.0.0.1:{link_port}",
        ca=None if options.insecure else fed.coordinator_kit / CA_CERT_FILE)
    run_config = {"coordinator-dir": str(coord.resolve()), "plan": str(fed.plan_path.resolve()),
                  "expected-sites": len(fed.sites), "custodian": fed.custodian,
                  "round-timeout": float(options.timeout), "loso": options.loso}
    app_dir, run_toml = coordinator_ops.app_folder(coord, run_config)
    result: dict[str, Any] | None = None
    with ProcessGroup(fed.layout.logs_dir, env) as procs:
        t1 = time.perf_counter()
        procs.start("superlink", coordinator_ops.superlink_command(
            layout, host="127.0.0.1", port=link_port, tls=fed.tls), cwd=coord)
        procs.wait_until(lambda: port_open(link_port), what="the SuperLink",
                         timeout=90, watch=["superlink"])
        if fed.tls:
            coordinator_ops.register_nodes(procs, layout,
                                           load_manifest(fed.layout.manifest_path))
        audit = _audit_addresses(fed)
        for site in fed.sites:
            # The passphrase goes on a pipe: no environment of a running process holds it.
            start_with_passphrase(procs, f"agent-{site.name}", agent_command(site),
                                  options.passphrase, env=flower_env(site.flower_home))
            if site.name in audit:
                procs.start(f"audit-{site.name}", _audit_serve(
                    "site", site.audit_log, audit[site.name], site.kit_dir))
        if "coordinator" in audit:
            procs.start("audit-coordinator", _audit_serve(
                "coordinator", fed.layout.coordinator.audit_log, audit["coordinator"],
                fed.coordinator_kit))
        for site in fed.sites:
            procs.wait_until(site.socket_path.exists, what=f"the agent of {site.name}",
                             timeout=120, watch=[f"agent-{site.name}"])
            procs.start(f"supernode-{site.name}",
                        supernode_command(site, f"127.0.0.1:{link_port}",
                                          insecure=not fed.tls),
                        env=flower_env(site.flower_home))
        timings["startup_seconds"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        runner = procs.start("flwr-run", oneshot=True, argv=[
            venv_binary("flwr"), "run", str(app_dir), CONNECTION, "--run-config", str(run_toml),
            "--stream",
        ], cwd=coord)
        view = ProgressView(fed.layout.coordinator.runs_dir, console, rounds=plan.training.rounds)
        deadline = time.monotonic() + options.timeout
        while result is None:
            result = view.poll()
            if result is not None:
                break
            if runner.popen.poll() is not None and view.result_path() is None:
                time.sleep(2)
                result = view.poll()
                if result is None:
                    raise TesseraError(ErrorCode.PROCESS_FAILED,
                                       "the study run ended without a result; see logs/")
            procs.check_alive()
            if time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED, "the study run timed out")
            time.sleep(0.5)
        timings["study_seconds"] = time.perf_counter() - t2
        audit_pulled = pull_audit_logs(fed, audit)
    timings["total_seconds"] = time.perf_counter() - t0
    report = build_report(fed, result, baseline=baseline, timings=timings,
                          superlink=f"127.0.0.1:{link_port}", tls=fed.tls,
                          node_auth=fed.tls)
    report["audit"] = audit_pulled
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def next_steps(options: DemoOptions, *, passphrase_is_default: bool) -> list[str]:
    """What to try after the demo: open a site in the app, list the model, read the report."""
    layout = WorkDir(options.workdir.absolute())
    site = layout.site(local_federation.site_names(options.sites)[0]).root
    coordinator = layout.coordinator
    as_coordinator = f"tessera --kit {coordinator.kit_dir}"
    secret = (f"the passphrase '{DEMO_PASSPHRASE}'" if passphrase_is_default
              else f"the passphrase you set in {PASSPHRASE_ENV_VAR}")
    return [
        "next steps:",
        f"  open a site in the desktop app: tessera site gui --site-dir {site}",
        f"    (its keystore opens with {secret})",
        f"  the registered model:  {as_coordinator} model list --coordinator-dir "
        f"{coordinator.root}",
        f"  the study's report:    {as_coordinator} study report latest --coordinator-dir "
        f"{coordinator.root}",
        f"  a site's privacy ledger: tessera site budget --site-dir {site}",
    ]
