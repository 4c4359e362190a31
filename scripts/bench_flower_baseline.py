"""Latency of a Tessera round against a bare Flower FedAvg round on the same Deployment
Engine, as JSON.

Usage::

    python scripts/bench_flower_baseline.py [--sites 3] [--rounds 3] [--study breast_cancer]
                                            [--out bench-out/bench_latency.json]

Both run on this machine's loopback, with real ``flower-superlink`` and ``flower-supernode``
processes and no TLS (the transport is then the same):

1. **bare Flower**: an app written into a temporary folder: Flower's ``FedAvg`` over the
   plan's model (the same zoo model and seed), each SuperNode training on its partition of
   the bundled data with plain SGD (the plan's local epochs, batch size and learning rate)
   and evaluating every round. A round is timed in the ServerApp from sending the training
   messages to aggregating the evaluation replies.
2. **Tessera**: ``tessera demo --insecure`` with the same sites and rounds (CKKS and DP-SGD
   on), and once more with ``--no-he``. A round is timed the same way (the report's round
   seconds: sending the training tasks to the summed, opened evaluation counts).

Besides the ratio the JSON splits a Tessera round: the slowest site's agent time (training
with DP-SGD, sealing), its input verification, the coordinator's checks, and the rest
(Flower transport, the SuperNode's 3 s idle pull, one ClientApp process per message, and the
extra evaluation step that opens the summed counts). Every run works in its own temporary
folder, removed afterwards; every process started is stopped. Run by hand, not by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from client_app.node.commands import venv_binary
from common.plan import bundled_plan_path, load_plan, override, plan_to_toml
from common.processes import ProcessGroup, flower_env, free_port, port_open
from tessera.coordinator_ops import CONNECTION, write_flwr_config

BARE_APP = '''"""Bare Flower FedAvg of a Tessera plan's model: the latency baseline."""
import json
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from common.datasets import load_bundled, partition_indices, select
from common.models import build_model
from common.plan import load_plan


def _plan(context):
    return load_plan(Path(str(context.run_config["plan"])))


def _data(context):
    plan = _plan(context)
    data = select(load_bundled(plan.dataset.name), plan.dataset)
    n = int(context.node_config["num-partitions"])
    part = partition_indices(data.y, n, seed=plan.seed, scheme=plan.dataset.partition,
                             alpha=plan.dataset.alpha)[int(context.node_config["partition-id"])]
    X, y = data.X[part].astype(np.float32), data.y[part].astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    cut = int(0.8 * len(y))
    return plan, torch.tensor(X[:cut]), torch.tensor(y[:cut]), torch.tensor(X[cut:]), \\
        torch.tensor(y[cut:])


def _model(plan, n_features, arrays):
    model = build_model(plan.model, n_features=n_features, seed=plan.seed)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    plan, X, y, _, _ = _data(context)
    model = _model(plan, X.shape[1], msg.content["arrays"])
    opt = torch.optim.SGD(model.parameters(), lr=plan.training.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = plan.training.batch_size
    for _ in range(plan.training.local_epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss_fn(model(X[idx]).reshape(-1), y[idx]).backward()
            opt.step()
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(y)})})
    return Message(content=content, reply_to=msg)


@client.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    plan, _, _, X, y = _data(context)
    model = _model(plan, X.shape[1], msg.content["arrays"])
    with torch.no_grad():
        accuracy = float(((model(X).reshape(-1) > 0).float() == y).float().mean())
    content = RecordDict({"metrics": MetricRecord({"accuracy": accuracy,
                                                   "num-examples": len(y)})})
    return Message(content=content, reply_to=msg)


class TimedFedAvg(FedAvg):
    def __init__(self, times: Path, **kwargs):
        super().__init__(**kwargs)
        self.times, self.started = times, {}

    def configure_train(self, server_round, arrays, config, grid):
        self.started[server_round] = time.perf_counter()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        out = super().aggregate_evaluate(server_round, replies)
        seconds = time.perf_counter() - self.started[server_round]
        with self.times.open("a") as handle:
            handle.write(json.dumps({"round": server_round, "seconds": seconds}) + "\\n")
        return out


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    plan = _plan(context)
    sites = int(context.run_config["sites"])
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    strategy = TimedFedAvg(Path(str(context.run_config["times"])), fraction_train=1.0,
                           fraction_evaluate=1.0, min_train_nodes=sites,
                           min_evaluate_nodes=sites, min_available_nodes=sites)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                   num_rounds=plan.training.rounds, timeout=600)
'''


def bare_flower(*, sites: int, rounds: int, plan_path: Path, work: Path) -> dict[str, Any]:
    """Run the bare FedAvg app on ``sites`` insecure SuperNodes; its per-round seconds."""
    app_dir, times = work / "bare_app", work / "bare-times.jsonl"
    app_dir.mkdir(parents=True)
    (app_dir / "bare_fedavg.py").write_text(BARE_APP, encoding="utf-8")
    (app_dir / "pyproject.toml").write_text(tomli_w.dumps({
        "project": {"name": "bare-fedavg", "version": "1.0.0", "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "bench",
            "components": {"serverapp": "bare_fedavg:server", "clientapp": "bare_fedavg:client"},
            "config": {"plan": "", "times": "", "sites": 0}}}},
    }), encoding="utf-8")
    (work / "run-config.toml").write_text(tomli_w.dumps(
        {"plan": str(plan_path), "times": str(times), "sites": sites}), encoding="utf-8")
    home = work / "flwr-home"
    port = free_port()
    write_flwr_config(home, f"127.0.0.1:{port}", ca=None)
    env = flower_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), env.get("PYTHONPATH", "")]).strip(":")
    started = time.perf_counter()
    with ProcessGroup(work / "logs", env) as procs:
        procs.start("superlink", [venv_binary("flower-superlink"), "--insecure", "--host",
                                  "127.0.0.1", "--port", str(port), "--database",
                                  str(work / "superlink.db"),
                                  "--disable-runtime-dependency-installation"], cwd=work)
        procs.wait_until(lambda: port_open(port), what="the SuperLink", timeout=120,
                         watch=["superlink"])
        for index in range(sites):
            procs.start(f"supernode-{index}", [
                venv_binary("flower-supernode"), "--insecure", "--superlink",
                f"127.0.0.1:{port}", "--port", str(free_port()), "--node-config",
                f"partition-id={index} num-partitions={sites}"], cwd=work)
        done = subprocess.run([venv_binary("flwr"), "run", str(app_dir), CONNECTION,
                               "--run-config", str(work / "run-config.toml")],
                              capture_output=True, text=True, env=env, cwd=work, timeout=300,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"flwr run failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        deadline = time.monotonic() + 60 * rounds + 300
        while _lines(times) < rounds and time.monotonic() < deadline:
            procs.check_alive("superlink")
            time.sleep(0.5)
    per_round = [json.loads(line) for line in times.read_text().splitlines()] \
        if times.exists() else []
    return {"per_round_seconds": [round(r["seconds"], 2) for r in per_round],
            "mean_round_seconds": _mean([r["seconds"] for r in per_round]),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def tessera_demo(*, sites: int, rounds: int, study: str, he: bool,
                 work: Path) -> dict[str, Any]:
    """``tessera demo --insecure``; its per-round seconds and where a round's time goes."""
    report = work / "report.json"
    argv = [venv_binary("tessera"), "demo", "--insecure", "--sites", str(sites), "--rounds",
            str(rounds), "--study", study, "--workdir", str(work / "demo"), "--report",
            str(report), *([] if he else ["--no-he"])]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False,
                          env={**os.environ, "TESSERA_SITE_PASSPHRASE": "bench passphrase"})
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"tessera demo failed: {done.stdout[-800:]} {done.stderr[-800:]}")
    doc = json.loads(report.read_text())
    rounds_doc = doc["rounds"]
    split = []
    for rnd in rounds_doc:
        site = rnd.get("site_metrics", {})
        train = max((m.get("seconds", 0.0) for m in site.values()), default=0.0)
        verify = max((m.get("verify_seconds", 0.0) for m in site.values()), default=0.0)
        split.append({"round": rnd["round"], "seconds": rnd["seconds"],
                      "slowest_site_agent_seconds": round(train, 2),
                      "slowest_site_verify_seconds": round(verify, 2),
                      "coordinator_check_seconds": rnd["aggregation_seconds"],
                      "transport_and_rest_seconds": round(
                          rnd["seconds"] - train - rnd["aggregation_seconds"], 2)})
    return {"he": he, "per_round": split,
            "mean_round_seconds": _mean([r["seconds"] for r in rounds_doc]),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--study", default="breast_cancer")
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_latency.json"))
    args = parser.parse_args()
    plan = override(load_plan(bundled_plan_path(args.study)), rounds=args.rounds)
    figures: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                               "study": plan.name, "sites": args.sites, "rounds": args.rounds,
                               "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="tessera-bench-latency-") as tmp:
        root = Path(tmp)
        plan_path = root / "plan.toml"
        plan_path.write_text(plan_to_toml(plan), encoding="utf-8")
        (root / "bare").mkdir()
        figures["flower"] = bare_flower(sites=args.sites, rounds=args.rounds,
                                        plan_path=plan_path, work=root / "bare")
        for he in (True, False):
            name = "tessera" if he else "tessera_no_he"
            (root / name).mkdir()
            figures[name] = tessera_demo(sites=args.sites, rounds=args.rounds,
                                         study=args.study, he=he, work=root / name)
    base = figures["flower"]["mean_round_seconds"]
    for name in ("tessera", "tessera_no_he"):
        mean = figures[name]["mean_round_seconds"]
        figures[f"{name}_over_flower"] = round(mean / base, 2) if base and mean else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}, indent=1))
    for name in ("flower", "tessera", "tessera_no_he"):
        print(name, figures[name]["mean_round_seconds"], "s per round")


if __name__ == "__main__":
    main()
