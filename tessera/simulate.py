"""``tessera simulate``: one study over many virtual sites, for scale experiments.

This module owns simulation-scale runs. It builds a local federation of ``sites`` real site
folders (vault, SQLite store, approvals, the sealed CKKS key), gives each virtual site a
stratified draw of rows from the bundled data (sites may share patients: the data only has
to make every site's work realistic), unlocks one in-process site agent per site, and runs
the real coordinator (``server.coordinator.run_study``: the same strategy, signed tasks,
DP-SGD and encrypted sums as a deployment) over :class:`tessera.inprocess.InProcessGrid`.
It reports per round the seconds, the bytes sent to and from the sites and the refusals.

Flower's Simulation Engine (Ray) is not used: it would run the same ClientApp code in Ray
workers, but on a machine of a few cores every virtual site's work (DP-SGD, encryption,
verifying and adding the other sites' contributions) is the cost, not message passing, and
the in-process grid carries exactly the messages the Deployment Engine would.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, print_json
from common.errors import ErrorCode, TesseraError, exit_status

if TYPE_CHECKING:  # the site agent, DP-SGD and CKKS load only when a simulation runs
    import numpy as np
    from flwr.serverapp import Grid

    from common.plan import StudyPlan

#: Passphrase of the simulated sites' keystores (throwaway folders).
SIMULATION_PASSPHRASE = "tessera simulation only"  # noqa: S105 (throwaway folders)


@dataclass(frozen=True)
class RoundFigures:
    """One round of a simulation."""

    round: int
    sites: int
    seconds: float
    aggregation_seconds: float
    bytes_up: int
    bytes_down: int
    refused_sites: int


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation measured."""

    study: str
    sites: int
    rows_per_site: int
    status: str
    build_seconds: float
    run_seconds: float
    rounds: tuple[RoundFigures, ...]
    error: str | None = None

    @property
    def seconds_per_round(self) -> float:
        """Mean seconds of a training round (0 when none ran)."""
        return (sum(r.seconds for r in self.rounds) / len(self.rounds)) if self.rounds else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, with the mean seconds per round."""
        return {**asdict(self), "seconds_per_round": self.seconds_per_round}


def site_rows(y: np.ndarray, *, sites: int, rows_per_site: int, seed: int) -> list[np.ndarray]:
    """Each site's rows: a draw without replacement, stratified by label (every label at
    least five rows), independent across sites."""
    import numpy as np

    labels = np.asarray(y)
    classes, counts = np.unique(labels, return_counts=True)
    if not isinstance(rows_per_site, int) or rows_per_site < 5 * len(classes):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"rows_per_site: must be an integer >= {5 * len(classes)}")
    if rows_per_site > labels.size:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"rows_per_site: the data has only {labels.size} rows")
    rng = np.random.default_rng(seed)
    take = np.maximum(5, np.floor(counts / labels.size * rows_per_site).astype(np.int64))
    take = np.minimum(take, counts)
    pools = [np.flatnonzero(labels == c) for c in classes]
    return [np.sort(np.concatenate([rng.choice(pool, size=int(k), replace=False)
                                    for pool, k in zip(pools, take, strict=True)]))
            for _ in range(sites)]


def simulate(plan: StudyPlan, *, sites: int, workdir: Path, rows_per_site: int = 40,
             timeout: float = 3600.0, workers: int = 1) -> SimulationResult:
    """Build ``sites`` virtual sites in ``workdir`` and run ``plan`` over them in process,
    or, with ``workers`` above 1, over that many worker processes
    (:class:`tessera.sim_workers.WorkerGrid`; the build counts their start)."""
    from client_app.agent.site_agent import SiteAgent
    from common.datasets import load_bundled, select
    from server.coordinator import run_study
    from tessera import local_federation
    from tessera.inprocess import InProcessGrid
    from tessera.sim_workers import WorkerGrid

    if not isinstance(sites, int) or sites < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "sites: must be an integer >= 1")
    if not isinstance(workers, int) or workers < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "workers: must be an integer >= 1")
    started = time.perf_counter()
    data = select(load_bundled(plan.dataset.name), plan.dataset)
    parts = site_rows(data.y, sites=sites, rows_per_site=rows_per_site, seed=plan.seed)
    fed = local_federation.build(workdir, plan, sites=sites, ceilings={},
                                 passphrase=SIMULATION_PASSPHRASE, parts=parts,
                                 simulation_only=True)
    with ExitStack() as stack:
        grid: Grid
        if workers > 1:
            grid = stack.enter_context(WorkerGrid([v.site for v in fed.vaults],
                                                  passphrase=SIMULATION_PASSPHRASE,
                                                  workers=workers))
        else:  # the vaults the build unlocked
            grid = InProcessGrid([SiteAgent(vault) for vault in fed.vaults])
        built = time.perf_counter()
        result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path,
                           run_id="simulation", expected_sites=sites, custodian=fed.custodian,
                           timeout=timeout)
        finished = time.perf_counter()
    rounds = tuple(
        RoundFigures(round=int(r["round"]), sites=len(r.get("participating_sites", ())),
                     seconds=float(r["seconds"]),
                     aggregation_seconds=float(r.get("aggregation_seconds", 0.0)),
                     bytes_up=int(sum(r.get("bytes_up", {}).values())),
                     bytes_down=int(sum(r.get("bytes_down", {}).values())),
                     refused_sites=len(r.get("refused_sites", ())))
        for r in result.get("rounds", ()))
    error = result.get("error")
    return SimulationResult(study=plan.name, sites=sites, rows_per_site=rows_per_site,
                            status=str(result["status"]), build_seconds=built - started,
                            run_seconds=finished - built, rounds=rounds,
                            error=None if error is None else json.dumps(error))


def register(app: typer.Typer) -> None:
    """Add ``tessera simulate`` to ``app``."""
    app.command(name="simulate")(simulate_command)


def simulate_command(
    sites: Annotated[int, typer.Option(min=1, max=5000, help="Number of virtual sites.")],
    study: Annotated[str, typer.Option(help="Bundled study name or a plan file.")] =
        "breast_cancer",
    rounds: Annotated[int | None, typer.Option(min=1, help="Rounds (default: the plan's).")] =
        None,
    rows_per_site: Annotated[int, typer.Option(
        min=10, help="Rows each virtual site draws from the bundled data.")] = 40,
    workdir: Annotated[Path, typer.Option(help="Work folder to create.")] =
        Path("simulate-work"),
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    attesters: Annotated[int | None, typer.Option(
        min=0, max=32, help="Sites that verify each set and sign its sum for the others "
                            "(\\[federation] attesters; default: the plan's).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=256, help="Worker processes the sites are spread over (1: all in this "
                             "process).")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Run a study over many virtual sites in one process (real agents, DP and HE on)."""
    from common.plan import bundled_plan_path, load_plan, override

    console = Console(stderr=as_json)
    with cli_boundary():
        path = Path(study) if study.endswith(".toml") else bundled_plan_path(study)
        base = load_plan(path)
        plan = override(base, rounds=rounds, min_sites=min(sites, base.federation.min_sites),
                        attesters=attesters)
        logging.getLogger("flwr").setLevel(logging.WARNING)
        console.print(f"simulating study [bold]{plan.name}[/] over {sites} sites "
                      f"({rows_per_site} rows each), {plan.training.rounds} rounds")
        result = simulate(plan, sites=sites, workdir=workdir, rows_per_site=rows_per_site,
                          workers=workers)
    for r in result.rounds:
        console.print(f"round {r.round}: {r.sites} sites, {r.seconds:.1f} s "
                      f"(sum {r.aggregation_seconds:.2f} s), up {r.bytes_up / 1e6:.2f} MB, "
                      f"down {r.bytes_down / 1e6:.2f} MB, {r.refused_sites} refused")
    console.print(f"built in {result.build_seconds:.1f} s; {result.seconds_per_round:.1f} s "
                  f"per round; status {result.status}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(result.to_json())
    if result.status != "completed":
        Console(stderr=True).print(f"[bold red]simulation did not complete:[/] {result.error}")
        raise typer.Exit(exit_status(ErrorCode.PROCESS_FAILED))
