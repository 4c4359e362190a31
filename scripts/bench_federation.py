"""Benchmark a federation at scale: many sites, many rounds; per-round wall time, lost updates
and the memory curve, as JSON.

Usage::

    python scripts/bench_federation.py [--sites 20] [--rounds 10] [--study breast_cancer]
                                       [--no-he] [--tracemalloc] [--deployment]
                                       [--out bench-out/bench_federation.json]

The study runs on in-process site agents (:class:`tessera.inprocess.InProcessGrid`: the real
agents, the real signed tasks and contributions, the real encrypted FedAvg strategy, no
Flower processes), so the memory figures are those of one process holding the coordinator
*and* every agent: a coordinator that kept per-round state would show as growth after round
2. The process's resident memory is sampled every 0.2 s; each round's figure is the sample
at the end of the round (its evaluation, or its training when the plan does not evaluate
that round). A lost update is a site that was admitted but did not take
part in a round. With ``--tracemalloc`` the Python allocations held when the last round was
trained are compared with those held when round 2 was trained, and the lines that grew most
are reported (what a coordinator keeps per round).

With ``--deployment`` the study runs on real processes instead (``tessera demo``: a
SuperLink and one SuperNode and site agent per site, TLS on), and the memory curve is the
resident memory of the coordinator's ServerApp process (``flwr-serverapp``) at the end of
each round. Every run works in a temporary folder, removed afterwards. The script is run by
hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.node.commands import venv_binary
from client_app.node.procfs import cmdline, descendants
from common.plan import bundled_plan_path, load_plan, override
from common.workdir import RunDir
from server.coordinator import run_study
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASSPHRASE = "benchmark-only passphrase"
RUN_ID = "bench"


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux; 0.0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class MemorySampler(threading.Thread):
    """Samples :func:`rss_mib` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.time(), rss_mib()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def at(self, when: float) -> float | None:
        """The last sample taken at or before ``when``."""
        before = [mib for t, mib in self.samples if t <= when]
        return before[-1] if before else None


class RoundSnapshots(threading.Thread):
    """Takes a tracemalloc snapshot when the run's progress shows each round of ``at``
    trained (while the run, and what it keeps, is alive)."""

    def __init__(self, progress: Path, *, at: tuple[int, ...]) -> None:
        super().__init__(daemon=True)
        self.progress, self.at = progress, at
        self.snapshots: dict[int, tracemalloc.Snapshot] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set() and len(self.snapshots) < len(self.at):
            try:
                lines = self.progress.read_text(encoding="utf-8").splitlines()
            except OSError:
                lines = []
            for number in self.at:
                marker = f'"round": {number},'
                if number not in self.snapshots and any(
                        '"round_trained"' in line and marker in line for line in lines):
                    self.snapshots[number] = tracemalloc.take_snapshot()
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def growth_top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, *,
               limit: int = 12) -> list[dict[str, Any]]:
    """The source lines whose held allocations grew most between two snapshots."""
    stats = after.compare_to(before, "lineno")
    return [{"where": "/".join(Path(stat.traceback[0].filename).parts[-2:])
                      + f":{stat.traceback[0].lineno}",
             "grew_kib": round(stat.size_diff / 1024, 1), "blocks": stat.count_diff}
            for stat in stats[:limit]]


def bench(*, sites: int, rounds: int, study: str, he: bool,
          trace: bool = False) -> dict[str, Any]:
    """Run one study on ``sites`` in-process agents; the figures."""
    plan = override(load_plan(bundled_plan_path(study)), rounds=rounds, he_enabled=he,
                    min_sites=min(sites, 2))
    ceiling = max(10.0, plan.privacy.target_epsilon + 1.0)
    with tempfile.TemporaryDirectory(prefix="tessera-bench-fed-") as tmp:
        started = time.perf_counter()
        fed = local_federation.build(Path(tmp) / "work", plan, sites=sites, ceilings={},
                                     passphrase=PASSPHRASE, default_ceiling=ceiling)
        provision_s = time.perf_counter() - started
        grid = InProcessGrid([SiteAgent(unlock_vault(s, PASSPHRASE)) for s in fed.sites])
        run = RunDir(fed.layout.coordinator.run(RUN_ID).root)
        sampler = MemorySampler()
        sampler.start()
        snapshots = RoundSnapshots(run.progress_path, at=(2, rounds))
        if trace:
            tracemalloc.start()
            snapshots.start()
        rss_before = rss_mib()
        started = time.perf_counter()
        result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id=RUN_ID,
                           expected_sites=sites, custodian=fed.custodian)
        study_s = time.perf_counter() - started
        sampler.stop()
        growth: list[dict[str, Any]] | None = None
        if trace:
            snapshots.stop()
            tracemalloc.stop()
            taken = snapshots.snapshots
            growth = growth_top(taken[2], taken[rounds]) if len(taken) == 2 else None
        events = [json.loads(line) for line in run.progress_path.read_text().splitlines()]
    # A round ends with its evaluation when the plan evaluates it, else with its training.
    ends = {int(e["round"]): float(e["t"]) for e in events if e["event"] == "round_trained"}
    ends.update({int(e["round"]): float(e["t"]) for e in events
                 if e["event"] == "round_evaluated"})
    admitted: list[str] = next(
        (e["sites"] for e in events if e["event"] == "sites_admitted"), [])
    per_round = []
    for rnd in result.get("rounds", []):
        number = int(rnd["round"])
        taking_part = sorted(rnd["participating_sites"])
        per_round.append({
            "round": number, "seconds": rnd["seconds"],
            "aggregation_seconds": rnd["aggregation_seconds"],
            "sites": len(taking_part),
            "lost_updates": sorted(set(admitted) - set(taking_part)),
            "rss_mib": _round(sampler.at(ends[number])) if number in ends else None,
        })
    curve = [r["rss_mib"] for r in per_round if r["rss_mib"] is not None]
    after_two = curve[1:] if len(curve) > 1 else curve
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": "in-process agents (tessera.inprocess.InProcessGrid)",
        "study": plan.name, "sites": sites, "rounds": rounds, "he": he, "dp": plan.privacy.dp,
        "cpus": os.cpu_count(),
        "status": result.get("status"), "error": result.get("error"),
        "provision_seconds": round(provision_s, 2), "study_seconds": round(study_s, 2),
        "per_round": per_round,
        "mean_round_seconds": round(sum(r["seconds"] for r in per_round) / len(per_round), 3)
        if per_round else None,
        "lost_updates": sum(len(r["lost_updates"]) for r in per_round),
        "rss_mib_before_study": round(rss_before, 1),
        "rss_mib_peak": round(max((m for _, m in sampler.samples), default=0.0), 1),
        "rss_growth_after_round_2_mib": round(after_two[-1] - after_two[0], 1)
        if after_two else None,
        "final": {k: result.get("final", {}).get(k) for k in ("auc", "accuracy")}
        if result.get("final") else None,
        "tracemalloc_growth_after_round_2": growth,
    }


def process_rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def deployment(*, sites: int, rounds: int, study: str, he: bool) -> dict[str, Any]:
    """Run ``tessera demo`` (real processes) and sample the ServerApp's memory per round."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-deploy-") as tmp:
        work, report = Path(tmp) / "work", Path(tmp) / "report.json"
        argv = [venv_binary("tessera"), "demo", "--num-sites", str(sites), "--rounds", str(rounds),
                "--study", study, "--workdir", str(work), "--report", str(report),
                *([] if he else ["--no-he"])]
        env = {**os.environ, "TESSERA_SITE_PASSPHRASE": PASSPHRASE}
        samples: list[tuple[float, float]] = []
        started = time.perf_counter()
        with subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as demo:
            server: int | None = None
            while demo.poll() is None:
                if server is None or process_rss_mib(server) is None:
                    server = next((p for p in descendants(demo.pid)
                                   if "flwr-serverapp" in cmdline(p)), None)
                mib = process_rss_mib(server) if server is not None else None
                if mib is not None:
                    samples.append((time.time(), mib))
                time.sleep(0.5)
            errors = demo.stderr.read() if demo.stderr else ""
        study_s = time.perf_counter() - started
        if not report.exists():
            raise RuntimeError(f"tessera demo failed: {errors[-800:]}")
        doc = json.loads(report.read_text())
        events = [json.loads(line) for path in (work / "coordinator" / "runs").glob(
            "*/progress.jsonl") for line in path.read_text().splitlines()]
    ends = {int(e["round"]): float(e["t"]) for e in events if e["event"] == "round_completed"}
    per_round = []
    for rnd in doc.get("rounds", []):
        number = int(rnd["round"])
        before = [m for t, m in samples if t <= ends.get(number, 0.0)]
        per_round.append({"round": number, "seconds": rnd["seconds"],
                          "sites": len(rnd["participating_sites"]),
                          "lost_updates": sites - len(rnd["participating_sites"]),
                          "serverapp_rss_mib": _round(before[-1]) if before else None})
    curve = [r["serverapp_rss_mib"] for r in per_round if r["serverapp_rss_mib"] is not None]
    after_two = curve[1:] if len(curve) > 1 else curve
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": "Deployment Engine (tessera demo: SuperLink, SuperNodes, agents, TLS)",
        "study": study, "sites": sites, "rounds": rounds, "he": he, "cpus": os.cpu_count(),
        "status": doc.get("status"), "study_seconds": round(study_s, 2),
        "per_round": per_round,
        "mean_round_seconds": round(sum(r["seconds"] for r in per_round) / len(per_round), 3)
        if per_round else None,
        "lost_updates": sum(r["lost_updates"] for r in per_round),
        "serverapp_rss_mib_peak": _round(max((m for _, m in samples), default=0.0)),
        "rss_growth_after_round_2_mib": round(after_two[-1] - after_two[0], 1)
        if after_two else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--study", default="breast_cancer")
    parser.add_argument("--no-he", action="store_true", help="Plaintext FedAvg.")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="Report the source lines whose allocations grew after round 2.")
    parser.add_argument("--deployment", action="store_true",
                        help="Real processes (tessera demo) instead of in-process agents.")
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_federation.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if args.deployment:
        figures = deployment(sites=args.sites, rounds=args.rounds, study=args.study,
                             he=not args.no_he)
    else:
        figures = bench(sites=args.sites, rounds=args.rounds, study=args.study,
                        he=not args.no_he, trace=args.tracemalloc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(json.dumps({k: figures[k] for k in ("status", "sites", "rounds", "study_seconds",
                                              "mean_round_seconds", "lost_updates",
                                              "rss_growth_after_round_2_mib")}))
    for row in figures["per_round"]:
        print(f"round {row['round']:>2}: {row['seconds']:7.2f} s  {row['sites']} sites  "
              f"rss {row.get('rss_mib', row.get('serverapp_rss_mib'))} MiB")


if __name__ == "__main__":
    main()
