"""Test helper: a real federation set up and driven through the ``tessera`` CLI (coordinator
and three sites as real processes, TLS), for the tests that fault its processes.

:func:`running_federation` makes the kit, splits the data, gives every site the study's plan
to receive and approve, makes its CKKS keys (site ``a`` holds them), starts the
coordinator and the sites' nodes, and on the way out stops them all and asserts that no
process started under the federation's folder outlives it. :func:`start_nodes` and
:func:`stop_nodes` start and stop several sites' nodes at once (their start-ups overlap).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from client_app.node.controller import NodeController
from client_app.node.procfs import cmdline, descendants
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import TesseraError
from common.processes import free_port
from common.workdir import CoordinatorDir
from tessera.cli import app
from tests.conftest import TEST_PASSPHRASE

SITES = ("a", "b", "c")


@dataclass(frozen=True)
class Federation:
    root: Path
    kit: Path
    coord: CoordinatorDir
    plan: Path


def invoke(*args: object, kit: Path | None = None) -> tuple[int, str]:
    """Run the CLI in-process; its exit code and output."""
    argv = [*(["--kit", str(kit)] if kit else []), *map(str, args)]
    result = CliRunner().invoke(app, argv, env={"TESSERA_SITE_PASSPHRASE": TEST_PASSPHRASE,
                                                "TESSERA_KIT": ""})
    return result.exit_code, result.output


def tessera(*args: object, kit: Path | None = None) -> str:
    """Run the CLI in-process, asserting it succeeds; its output."""
    code, output = invoke(*args, kit=kit)
    assert code == 0, (args, output)
    return output


def site_dir(root: Path, name: str) -> Path:
    return root / f"site-{name}"


def processes_under(root: Path) -> list[int]:
    """Processes whose command line names a path under ``root``."""
    mine = os.getpid()
    return [int(p.name) for p in Path("/proc").glob("[0-9]*")
            if int(p.name) != mine and str(root) in cmdline(int(p.name))]


def start_nodes(root: Path, names: Iterable[str] = SITES, *, timeout: float = 300.0) -> None:
    """Start the nodes of the sites ``names`` under ``root`` (``tessera site node start
    --wait 0``, one after the other) and wait until every agent answers and every SuperNode
    is connected to the SuperLink: the nodes start up side by side, not in turn."""
    names = list(names)
    for name in names:
        tessera("site", "node", "start", "--site-dir", site_dir(root, name), "--wait", 0)
    nodes = {name: NodeController(open_site_dir(site_dir(root, name))) for name in names}
    deadline = time.monotonic() + timeout
    while True:
        statuses = {name: node.status() for name, node in nodes.items()}
        for name, status in statuses.items():
            assert status.running, (name, status.last_error)
        if all(s.agent_up and s.connection == "connected" for s in statuses.values()):
            return
        assert time.monotonic() < deadline, statuses
        time.sleep(0.25)


def stop_nodes(root: Path, names: Iterable[str] = SITES) -> None:
    """Stop the nodes of the sites ``names`` under ``root``, side by side (as ``tessera site
    node stop`` does: SIGTERM, then SIGKILL what is left after 30 s); a node that will not
    stop is left to the caller's check for leftover processes."""
    def stop(name: str) -> None:
        with contextlib.suppress(TesseraError):
            NodeController(open_site_dir(site_dir(root, name))).stop()

    names = list(names)
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        list(pool.map(stop, names))


@contextlib.contextmanager
def running_federation(root: Path, *, rounds: int) -> Iterator[Federation]:
    """The federation under ``root``, running, its sites approving one breast-cancer plan
    of ``rounds`` rounds that needs two sites (seeded with its number of rounds)."""
    tessera("federation", "init", "--name", root.name, "--sites", ",".join(SITES),
            "--port", free_port(), "--out", root / "fed", "--no-archives")
    kit = root / "fed" / "coordinator-kit"
    coord = CoordinatorDir(root / "coord")
    tessera("data", "split", "--study", "breast_cancer", "--sites", ",".join(SITES),
            "--out", root / "data")
    plan = root / "plan.toml"
    tessera("study", "plan", "breast_cancer", "--rounds", rounds, "--min-sites", 2,
            "--seed", rounds, "--out", plan)
    for name in SITES:
        site = site_dir(root, name)
        tessera("site", "import-kit", root / "fed" / "site-kits" / name, "--site-dir", site)
        tessera("site", "init", "--site-dir", site, "--name", name)
        tessera("site", "dataset", "register", root / "data" / f"{name}.csv", "--site-dir",
                site, "--plan", plan, "--actor", "Dana")
        tessera("site", "study", "receive", plan, "--site-dir", site)
        digest = tessera("study", "validate", plan).strip().splitlines()[-1]
        tessera("site", "approve", digest, "--site-dir", site)
    out = root / "he"
    tessera("site", "he-keygen", "--site-dir", site_dir(root, "a"), "--plan", plan,
            "--out", out, "--yes")
    for site_name in SITES[1:]:
        tessera("site", "he-import", out / "sealed" / f"{site_name}.sealed", "--site-dir",
                site_dir(root, site_name))
    tessera("federation", "he-context", out / "evaluation-context.json", "--kit", kit,
            "--coordinator-dir", coord.root)
    tessera("coordinator", "start", "--coordinator-dir", coord.root, kit=kit)
    try:
        start_nodes(root)
        yield Federation(root, kit, coord, plan)
    finally:
        stop_nodes(root)
        invoke("coordinator", "stop", "--coordinator-dir", coord.root, kit=kit)
        deadline = time.monotonic() + 30
        while processes_under(root) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {pid: cmdline(pid)[:200] for pid in processes_under(root)}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"orphan processes: {left}"


def events(fed: Federation, run_id: str) -> list[dict]:
    """The run's progress events so far (whole lines only)."""
    path = fed.coord.run(run_id).progress_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


def wait_for(fed: Federation, run_id: str, event: str, round_: int) -> None:
    """Until the run records ``event`` for round ``round_`` (failing if the run ends first)."""
    deadline = time.monotonic() + 900
    while not any(e.get("event") == event and e.get("round") == round_
                  for e in events(fed, run_id)):
        assert not fed.coord.run(run_id).result_path.exists(), events(fed, run_id)[-3:]
        assert time.monotonic() < deadline, f"no {event} for round {round_}"
        time.sleep(0.1)


def submit(fed: Federation, *, round_timeout: float) -> str:
    """Submit the plan (site ``a`` holds its keys); the run's id."""
    out = tessera("study", "submit", fed.plan, "--coordinator-dir", fed.coord.root,
                  "--custodian", "a", "--round-timeout", round_timeout, kit=fed.kit)
    return out.strip().splitlines()[-1]


def signal_tree(pid: int, sig: signal.Signals) -> dict[int, str]:
    """Send ``sig`` to ``pid`` and everything below it; their command lines, by pid."""
    members = {member: cmdline(member) for member in [pid, *descendants(pid)]}
    for member in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, sig)
    return members


def dp_sgd_rounds(fed: Federation, site: str, run_id: str) -> list[int]:
    """The rounds of ``run_id`` that ``site``'s ledger holds a DP-SGD entry for."""
    with SiteStore.open(open_site_dir(site_dir(fed.root, site))) as store:
        return [e.round for e in store.ledger() if e.kind == "dp_sgd" and e.run_id == run_id]
