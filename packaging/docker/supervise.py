"""What both container entry points share: start children, stop them all together.

Each child runs in its own session; when one exits, or the container gets SIGTERM/SIGINT,
every child's group, and every process below a child that left its group (Flower's SuperLink
starts SuperExec in a session of its own), gets SIGTERM, then SIGKILL after a grace period.
The exit status is the first child's that stopped on its own (0 when stopped by a signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRACE_SECONDS = 10.0


class Children:
    """The processes an entry point started, by name."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def start(self, name: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` (Popen keywords: user, group, env, pass_fds...)."""
        print(f"starting {name}", file=sys.stderr, flush=True)
        proc = subprocess.Popen(list(argv), start_new_session=True, **popen)
        self.procs[name] = proc
        return proc

    def wait_for(self, path: Path, *, watch: str, timeout: float) -> None:
        """Wait until ``path`` exists; fail if child ``watch`` exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.procs[watch].poll() is not None or self.stopping:
                self.stop()
                sys.exit(f"{watch} stopped before {path.name} appeared")
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"timed out waiting for {path.name}")
            time.sleep(0.2)

    def run(self) -> int:
        """Wait until a child exits or a signal comes; stop the rest; the exit status."""
        status = 0
        while not self.stopping:
            ended = [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]
            if ended:
                name, status = ended[0]
                print(f"{name} exited with status {status}", file=sys.stderr, flush=True)
                break
            time.sleep(0.5)
        self.stop()
        return status

    def stop(self) -> None:
        """SIGTERM every child's group and descendants, SIGKILL what is left after the grace
        period."""
        below = set().union(*(_descendants(p.pid) for p in self.procs.values()))
        for proc in self.procs.values():
            _signal(proc.pid, signal.SIGTERM, group=True)
        for pid in below:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal(proc.pid, signal.SIGKILL, group=True)
        while below and time.monotonic() < deadline:
            below = {pid for pid in below if Path(f"/proc/{pid}").exists()}
            time.sleep(0.2)
        for pid in below:
            _signal(pid, signal.SIGKILL)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals, *, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
