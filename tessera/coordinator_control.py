"""Start, stop and inspect a detached coordinator (``tessera coordinator start|stop|status``).

:class:`CoordinatorController` starts :mod:`tessera.coordinator_process` in its own session,
output in ``<coordinator>/logs/coordinator.log``, pid in ``<coordinator>/run/coordinator.pid``
(written as soon as the process exists, so a slow start never loses it) and waits until the
process reports "running" in ``run/coordinator.json``. A pid file is removed only when its
process is gone or is clearly another program; a process whose command line cannot be read
yet counts as ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from client_app.node.commands import python_module
from client_app.node.passphrase_fd import without_secrets
from client_app.node.procfs import cmdline, pid_alive
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.workdir import CoordinatorDir
from tessera.coordinator_ops import coordinator_manifest
from tessera.coordinator_process import reachable, state_path

MODULE = "tessera.coordinator_process"
PID_FILE = "coordinator.pid"
LOG_FILE = "coordinator.log"


@dataclass(frozen=True)
class CoordinatorStatus:
    """The coordinator as its operator sees it."""

    running: bool
    pid: int | None
    phase: str
    superlink: str | None
    superlink_up: bool
    tls: bool
    audit_address: str | None
    registered_sites: tuple[str, ...]
    error: str | None
    log_path: str
    #: When the running coordinator process started (ISO 8601, UTC), if it runs.
    started_at: str | None = None

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["registered_sites"] = list(self.registered_sites)
        return out


class CoordinatorController:
    """Start, stop and inspect the coordinator of one coordinator folder."""

    def __init__(self, coordinator: CoordinatorDir) -> None:
        self.coordinator = CoordinatorDir(Path(coordinator.root).expanduser().resolve())
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def pid_path(self) -> Path:
        return self.coordinator.process_dir / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.coordinator.logs_dir / LOG_FILE

    def start(self, *, host: str | None = None, port: int | None = None,
              audit_address: str | None = None, insecure: bool = False,
              wait: float = 180.0) -> CoordinatorStatus:
        """Start the coordinator detached and wait until it runs (or ``wait`` is 0)."""
        pid = self.live_pid()
        if pid is not None:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"the coordinator of {self.coordinator.root} is already "
                               f"running (pid {pid})")
        manifest = coordinator_manifest(self.coordinator)  # refuse before detaching
        host = host or manifest.superlink_address
        port = port or manifest.superlink_port
        argv = python_module(MODULE, "--coordinator-dir", str(self.coordinator.root),
                             "--host", host, "--port", str(port))
        if audit_address:
            argv += ["--audit-address", audit_address]
        if insecure:
            argv.append("--insecure")
        for folder in (self.coordinator.process_dir, self.coordinator.logs_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        state_path(self.coordinator).unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            self._child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in without_secrets().items() if k != "TESSERA_KIT"},
                start_new_session=True, cwd=self.coordinator.root)
        atomic_write_bytes(self.pid_path, f"{self._child.pid}\n".encode())
        return self.wait_running(timeout=wait) if wait > 0 else self.status()

    def wait_running(self, *, timeout: float) -> CoordinatorStatus:
        """Wait for phase "running"; PROCESS_FAILED (with the reason) if it fails or stops."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.phase == "running":
                return status
            if not status.running or status.phase == "failed":
                self.stop(timeout=10)
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   "the coordinator stopped while starting: "
                                   f"{status.error or f'see {self.log_path}'}")
            if time.monotonic() > deadline:
                self.stop(timeout=10)
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   f"the coordinator did not start within {timeout:g} s; "
                                   f"see {self.log_path}")
            time.sleep(0.3)

    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM the coordinator's process group, SIGKILL after ``timeout``; whether it
        was running."""
        pid = self.live_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        while self._alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
        self.pid_path.unlink(missing_ok=True)
        return True

    def status(self) -> CoordinatorStatus:
        """Liveness, phase and addresses of the coordinator."""
        pid = self.live_pid()
        state = self._state() if pid is not None else {}
        if pid is not None and state.get("pid") not in (None, pid):
            state = {}  # written by an earlier coordinator
        superlink = state.get("superlink")
        phase = str(state.get("phase", "starting")) if pid is not None else "stopped"
        return CoordinatorStatus(
            running=pid is not None, pid=pid, phase=phase,
            superlink=superlink if isinstance(superlink, str) else None,
            superlink_up=isinstance(superlink, str) and pid is not None and reachable(superlink),
            tls=bool(state.get("tls", False)),
            audit_address=_text(state.get("audit_address")),
            registered_sites=_names(state.get("registered")),
            error=_text(state.get("error")) or (self._log_error() if pid is None else None),
            log_path=str(self.log_path), started_at=_text(state.get("started_at")))

    def live_pid(self) -> int | None:
        """The coordinator's pid if it runs; the pid file of a gone (or foreign) process is
        removed."""
        try:
            pid = int(self.pid_path.read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and self._alive(pid):
            args = cmdline(pid)
            # Empty: not readable yet (or on a system without /proc): ours, not foreign.
            if not args or (MODULE in args and str(self.coordinator.root) in args):
                return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    def _alive(self, pid: int) -> bool:
        return pid_alive(pid, self._child)

    def _state(self) -> dict[str, object]:
        try:
            raw = json.loads(state_path(self.coordinator).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _log_error(self) -> str | None:
        state = self._state()
        if state.get("phase") == "failed":
            return _text(state.get("error"))
        return None


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
