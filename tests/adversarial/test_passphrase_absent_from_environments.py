"""Attack: coordinator-shipped code reads the site passphrase out of another process's /proc.

Flower runs the ClientApp named by the app bundle the coordinator submits, unverified, inside
the SuperNode's process tree and, unless the site separates them, under the same
operating-system account as the site agent. Such code can read ``/proc/<pid>/environ`` (the
environment a process was started with, which popping a variable later does not clear) and
``/proc/<pid>/cmdline`` of every process of that account. The site passphrase, which opens
the vault, must therefore be in neither, in any process of a running node: the node started
by the desktop app or ``tessera site node start`` (:class:`NodeController`), and ``tessera
site run`` started by an operator whose shell exports ``TESSERA_SITE_PASSPHRASE``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client_app.node.controller import NodeController
from common.processes import free_port
from tests.federation import provision_sites

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads Linux /proc"),
]
BIN = Path(sys.executable).parent
#: What every node's tree runs once it is up: the agent, the SuperNode and its SuperExec.
EXPECTED = ("client_app.node.agent_process", "flower-supernode", "flower-superexec")


def _proc(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # exited meanwhile
        return None


def _stat(pid: int) -> list[str] | None:
    raw = _proc(pid, "stat")
    if raw is None:
        return None
    return raw.decode(errors="replace").rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a process from a later one with its pid)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        out.extend(below)
        todo.extend(below)
    return out


def _cmdline(pid: int) -> str:
    return (_proc(pid, "cmdline") or b"").replace(b"\0", b" ").decode(errors="replace")


class Watch:
    """Every process a test started, so that none outlives it (also when the test fails)."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.seen: dict[int, str] = {}
        self.stoppers: list[Callable[[], None]] = []

    def add(self, pid: int, stop: Callable[[], None]) -> None:
        self.roots.append(pid)
        self.stoppers.append(stop)
        self.tree()

    def tree(self) -> list[int]:
        """The roots and all their descendants now (each remembered for the final check)."""
        pids = [*self.roots, *(p for root in self.roots for p in _descendants(root))]
        for pid in pids:
            if (started := _start_time(pid)) is not None:
                self.seen.setdefault(pid, started)
        return pids

    def alive(self) -> list[int]:
        """Processes seen that still run (not the same pid reused, not a zombie)."""
        out = []
        for pid, started in self.seen.items():
            fields = _stat(pid)
            if fields and fields[19] == started and fields[0] != "Z":
                out.append(pid)
        return out


@pytest.fixture
def watch() -> Iterator[Watch]:
    watched = Watch()
    try:
        yield watched
    finally:
        for stop in reversed(watched.stoppers):
            with contextlib.suppress(Exception):
                stop()
        survivors = {pid: _cmdline(pid) for pid in watched.alive()}
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert survivors == {}, "processes outlived the test"


def _wait_for_tree(watch: Watch, root: int, *, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    missing: list[str] = list(EXPECTED)
    while missing:
        watch.tree()
        running = " ".join(_cmdline(p) for p in _descendants(root))
        missing = [name for name in EXPECTED if name not in running]
        assert time.monotonic() < deadline, f"the node of pid {root} never started {missing}"
        assert _start_time(root) is not None, f"the node of pid {root} exited"
        time.sleep(0.5)


def _interrupt(runner: subprocess.Popen[bytes]) -> None:
    if runner.poll() is None:
        os.killpg(runner.pid, signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)


def test_no_process_of_a_running_node_shows_the_passphrase(
        tmp_path: Path, watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    passphrase = f"adversarial {secrets.token_hex(12)}"
    fed = provision_sites(tmp_path, ("h1", "h2"), passphrase=passphrase)
    # The desktop app's (and `tessera site node start`'s) way: a detached node. This test
    # process itself has the variable set, as an operator's desktop session might.
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", passphrase)
    monkeypatch.setenv("TESSERA_NEW_SITE_PASSPHRASE", passphrase)
    controller = NodeController(fed.sites["h1"])
    controller.start(passphrase=passphrase, insecure=True,
                     superlink=f"127.0.0.1:{free_port()}")
    pid = controller.status().pid
    assert pid is not None
    watch.add(pid, lambda: controller.stop(timeout=60))
    # The operator's way: `tessera site run` with the passphrase exported in their shell.
    site_dir = fed.sites["h2"].root
    runner = subprocess.Popen(
        [str(BIN / "tessera"), "site", "run", "--site-dir", str(site_dir), "--insecure",
         "--superlink", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, "TESSERA_SITE_PASSPHRASE": passphrase})
    watch.add(runner.pid, lambda: _interrupt(runner))

    for root in watch.roots:
        _wait_for_tree(watch, root)
    assert controller.wait_ready(timeout=60).agent_up  # the passphrase did reach the agent
    assert NodeController(fed.sites["h2"]).status().agent_up

    secret = passphrase.encode()
    read, leaked = [], []
    for pid in watch.tree():
        environ, cmdline = _proc(pid, "environ"), _proc(pid, "cmdline")
        if environ is None or cmdline is None:
            continue
        read.append(_cmdline(pid))
        leaked += [f"{what} of pid {pid} ({_cmdline(pid)[:120]})"
                   for what, raw in (("environ", environ), ("cmdline", cmdline))
                   if secret in raw]
    for name in EXPECTED:  # the scan really covered both trees
        assert sum(name in line for line in read) >= 2, f"no {name} was read"
    assert leaked == [], "the passphrase is readable in:\n" + "\n".join(leaked)
