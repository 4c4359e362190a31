"""``tessera demo``: a whole federation of real processes on 127.0.0.1, one study, a report.

Starts a real ``flower-superlink``, one site agent and one ``flower-supernode`` per site,
submits the study with ``flwr run``, follows its progress, writes ``report.json`` and stops
every process it started, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan
from tessera import local_federation
from tessera.baseline import centralised_baseline
from tessera.processes import ProcessGroup, flower_env, free_port, port_open
from tessera.progress import ProgressView
from tessera.report import build_report

CONNECTION = "tessera"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo was asked to do."""

    workdir: Path
    report: Path
    sites: int = 3
    insecure: bool = True
    ceilings: dict[str, float] = field(default_factory=dict)
    timeout: float = 1800.0


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _write_flwr_config(home: Path, port: int) -> None:
    text = (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    (home / "config.toml").write_text(text, encoding="utf-8")


def run_demo(plan: StudyPlan, options: DemoOptions, console: Console) -> dict[str, Any]:
    """Build the federation, run the study on real processes, write and return the report."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fed = local_federation.build(options.workdir, plan, sites=options.sites,
                                 ceilings=options.ceilings)
    timings["provision_seconds"] = time.perf_counter() - t0
    baseline = centralised_baseline(fed.data, fed.partitions,
                                    test_fraction=plan.dataset.test_fraction, seed=plan.seed)
    if options.insecure:
        console.print("[bold red]WARNING: insecure transport (no TLS, no node "
                      "authentication); for development only.[/]")
    coord = fed.coordinator_dir
    home = coord / "flwr-home"
    env = flower_env(home)
    link_port = free_port()
    _write_flwr_config(home, link_port)
    run_config = {"workdir": str(options.workdir.resolve()), "plan": str(fed.plan_path.resolve()),
                  "expected-sites": len(fed.sites), "custodian": fed.custodian,
                  "round-timeout": float(options.timeout)}
    app_dir, run_toml = local_federation.app_folder(coord, run_config)
    result: dict[str, Any] | None = None
    with ProcessGroup(options.workdir / "logs", env) as procs:
        t1 = time.perf_counter()
        procs.start("superlink", [
            _bin("flower-superlink"), "--insecure", "--host", "127.0.0.1",
            "--port", str(link_port), "--database", str(coord / "superlink.db"),
            "--disable-runtime-dependency-installation",
        ], cwd=coord)
        procs.wait_until(lambda: port_open(link_port), what="the SuperLink",
                         timeout=90, watch=["superlink"])
        for site in fed.sites:
            procs.start(f"agent-{site.name}", [
                sys.executable, "-m", "tessera.cli", "site", "agent", "--site-dir",
                str(site.root),
            ], env=flower_env(site.root / "flwr-home"))
        for site in fed.sites:
            procs.wait_until(site.socket_path.exists, what=f"the agent of {site.name}",
                             timeout=120, watch=[f"agent-{site.name}"])
            procs.start(f"supernode-{site.name}", [
                _bin("flower-supernode"), "--insecure", "--superlink",
                f"127.0.0.1:{link_port}", "--port", str(free_port()),
                "--node-config", f"agent-address='unix:{site.socket_path.resolve()}'",
            ], env=flower_env(site.root / "flwr-home"))
        timings["startup_seconds"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        runner = procs.start("flwr-run", [
            _bin("flwr"), "run", str(app_dir), CONNECTION, "--run-config", str(run_toml),
            "--stream",
        ], cwd=coord)
        view = ProgressView(coord / "runs", console, rounds=plan.training.rounds)
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
            procs.check_alive(*[c.name for c in procs.children if c.name != "flwr-run"])
            if time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED, "the study run timed out")
            time.sleep(0.5)
        timings["study_seconds"] = time.perf_counter() - t2
    timings["total_seconds"] = time.perf_counter() - t0
    report = build_report(fed, result, baseline=baseline, timings=timings,
                          superlink=f"127.0.0.1:{link_port}", tls=not options.insecure,
                          node_auth=False)
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report
