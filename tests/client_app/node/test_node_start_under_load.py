"""``tessera site node start`` on a busy machine: it reports the node it started, and that
node is the one ``node status`` (from another folder, by a relative path) and ``node stop``
see; nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.datasets import csv_bytes, load_bundled
from common.plan import bundled_plan_path, load_plan
from common.processes import free_port
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites

#: serial: it keeps every core busy on purpose, which would starve a test running beside it.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

TESSERA = str(Path(sys.executable).parent / "tessera")
PLAN = load_plan(bundled_plan_path("breast_cancer"))


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Every core busy (two busy loops per core) for the duration of the test."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(2 * (os.cpu_count() or 2))]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _tessera(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_KIT"}
    env["TESSERA_SITE_PASSPHRASE"] = TEST_PASSPHRASE
    return subprocess.run([TESSERA, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=400, check=False)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def test_node_start_reports_the_node_it_started_under_cpu_load(tmp_path: Path,
                                                               cpu_load: None) -> None:
    fed = provision_sites(tmp_path / "fed", ("h1",), passphrase=TEST_PASSPHRASE)
    site, vault = fed.sites["h1"], fed.vaults["h1"]
    vault.write_dataset(PLAN.dataset.name, csv_bytes(load_bundled(PLAN.dataset.name)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = os.path.relpath(site.root, elsewhere)
    superlink = f"127.0.0.1:{free_port()}"  # nothing listens: the SuperNode keeps retrying
    for attempt in range(2):
        started = _tessera("site", "node", "start", "--site-dir", str(site.root),
                           "--insecure", "--superlink", superlink, cwd=tmp_path)
        assert started.returncode == 0, (attempt, started.stdout, started.stderr)
        pid = int(started.stdout.split("(pid ", 1)[1].split(")", 1)[0])
        status = _tessera("site", "node", "status", "--site-dir", relative, "--json",
                          cwd=elsewhere)
        assert status.returncode == 0, status.stderr
        seen = json.loads(status.stdout)
        assert seen["running"] and seen["pid"] == pid, seen
        assert seen["connection"] in ("connecting", "retrying")
        stopped = _tessera("site", "node", "stop", "--site-dir", relative, cwd=elsewhere)
        assert stopped.returncode == 0 and f"node stopped (pid {pid})" in stopped.stdout, \
            (stopped.stdout, stopped.stderr)
        assert _processes_mentioning(str(site.root)) == []
