"""Start and stop the real processes of a local federation, and never leave one behind.

Each child runs in its own session (process group) with its output in a log file. Stopping
sends SIGTERM to every group, waits, then SIGKILLs what is left. The group is stopped on
normal exit, on error and on Ctrl-C (the context manager), and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import ErrorCode, TesseraError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Child:
    """A started process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    oneshot: bool = False

    def tail(self, lines: int = 15) -> str:
        """Last lines of the child's log (for error messages about the child itself)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessGroup:
    """The processes one command started; stops them all when the block ends."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all)

    def __enter__(self) -> ProcessGroup:
        self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._old_term)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, oneshot: bool = False,
              pass_fds: Sequence[int] = ()) -> Child:
        """Start one child in its own process group, output to ``<log_dir>/<name>.log``;
        ``pass_fds`` are inherited by the child (every other descriptor is closed)."""
        log_path = self.log_dir / f"{name}.log"
        merged = {**self.env, **(env or {})}
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                list(argv), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=merged, cwd=cwd, start_new_session=True, pass_fds=tuple(pass_fds),
            )
        child = Child(name, popen, log_path, oneshot)
        self.children.append(child)
        return child

    def check_alive(self, *names: str) -> None:
        """Raise if a named child (or any child, when none named) has exited."""
        for child in self.children:
            if (names and child.name not in names) or (not names and child.oneshot):
                continue
            if child.popen.poll() is not None:
                raise TesseraError(
                    ErrorCode.PROCESS_FAILED,
                    f"{child.name} exited with status {child.popen.returncode}; "
                    f"see {child.log_path.name}",
                )

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float,
                   watch: Sequence[str] = ()) -> None:
        """Poll ``ready`` until true; fail early if a watched child dies."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive(*watch) if watch else None
            if time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED, f"timed out waiting for {what}")
            time.sleep(0.2)

    def stop_all(self, grace: float = 8.0) -> None:
        """SIGTERM every child's group, wait up to ``grace`` seconds, then SIGKILL."""
        running = [c for c in self.children if c.popen.poll() is None]
        for child in running:
            _signal_group(child.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in self.children:
            # The whole group: also grandchildren (ServerApp, ClientApp processes).
            _signal_group(child.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def flower_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: private home, no telemetry, no update check."""
    env = dict(os.environ if base is None else base)
    # Flower processes run coordinator-shipped code: they never see the site passphrase.
    env.pop("TESSERA_SITE_PASSPHRASE", None)
    env.pop("TESSERA_NEW_SITE_PASSPHRASE", None)
    # Each process's identity comes from its own folder, never from the caller's kit.
    env.pop("TESSERA_KIT", None)
    flwr_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Flower starts helpers (flower-superexec, flwr-serverapp, flwr-clientapp) by name.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",
    )
    return env
