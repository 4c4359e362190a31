"""Start, stop and watch a site's node (``tessera site run``: the agent and its SuperNode).

:class:`NodeController` runs the node entry point (``tessera site run``) detached, in its own
session, with output in ``<site>/logs/node.log``, its pid in ``<site>/run/node.pid`` and what it was
started with (never the passphrase, which travels only on an inherited pipe, never in an
environment or a command line: :mod:`client_app.node.passphrase_fd`) in
``<site>/run/node.json``. ``tessera site run`` stops the agent and the SuperNode on SIGTERM.

The agent records what it last did (task, study, round, outcome) in the site store's
``agent_state`` setting after every task (:mod:`client_app.store.agent_state`); :meth:`status` joins
that with process liveness and whether the agent's socket answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from client_app.custody.kit import load_site_identity
from client_app.custody.vault import unlock_vault
from client_app.node.commands import NODE_MODULE, SITE_DIR_OPTION, node_command
from client_app.node.passphrase_fd import passphrase_handoff, without_secrets
from client_app.node.procfs import (
    cmdline,
    cmdline_args,
    descendants,
    pid_alive,
    signal_group,
)
from client_app.store.agent_state import read_agent_state
from client_app.store.folder import SiteDir
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes

log = logging.getLogger(__name__)

START_MARKER = "--- tessera node started"
_SUPERLINK = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
#: Variables a started node must not inherit besides the passphrase variables: identity
#: comes from the site folder.
_DROPPED_ENV = ("TESSERA_KIT",)


@dataclass(frozen=True)
class NodeStatus:
    """The node as the operator sees it."""

    running: bool
    pid: int | None
    agent_up: bool
    superlink: str | None
    current_study: str | None
    current_round: int | None
    last_task: str | None
    last_task_at: datetime | None
    last_error: str | None
    supernode_up: bool = False
    insecure: bool = False
    log_path: str | None = None
    #: "connected" (the SuperLink admitted this node), "retrying" (the last attempt to reach
    #: the SuperLink failed), "connecting" (no answer yet) or "stopped".
    connection: str = "stopped"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out["last_task_at"] = self.last_task_at.isoformat() if self.last_task_at else None
        return out


class NodeController:
    """Start, stop and inspect the node of one site folder."""

    def __init__(self, site: SiteDir) -> None:
        self.site = site
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def run_dir(self) -> Path:
        return self.site.run_dir

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "node.pid"

    @property
    def info_path(self) -> Path:
        return self.run_dir / "node.json"

    @property
    def log_path(self) -> Path:
        return self.site.logs_dir / "node.log"

    @property
    def supernode_log_path(self) -> Path:
        """The SuperNode's own output (written by ``tessera site run``)."""
        return self.site.logs_dir / "supernode.log"

    # -- start / stop ------------------------------------------------------------------
    def start(self, *, passphrase: str, insecure: bool = False,
              superlink: str | None = None) -> None:
        """Start the node detached; refuses while it runs; checks the passphrase first."""
        pid = self._live_pid()
        if pid is not None:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"the node of site '{self.site.name}' is already running "
                               f"(pid {pid})")
        address = self._superlink(superlink)
        unlock_vault(self.site, passphrase)  # a wrong passphrase fails here, not detached
        env = {k: v for k, v in without_secrets().items() if k not in _DROPPED_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        started = datetime.now(UTC)
        supernode_offset = _size(self.supernode_log_path)
        with self.log_path.open("ab") as out, passphrase_handoff(passphrase) as fd:
            out.write(f"{START_MARKER} {started.isoformat(timespec='seconds')} ---\n".encode())
            out.flush()
            self._child = subprocess.Popen(
                node_command(self.site, address, insecure=insecure, passphrase_fd=fd),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True, pass_fds=(fd,),
            )
        atomic_write_bytes(self.info_path, json.dumps({
            "pid": self._child.pid, "superlink": address, "insecure": insecure,
            "started_at": started.isoformat(), "supernode_log_offset": supernode_offset,
        }).encode("utf-8"))
        atomic_write_bytes(self.pid_path, f"{self._child.pid}\n".encode())

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM the node's process group and wait; SIGKILL what is left after ``timeout``."""
        pid = self._live_pid()
        if pid is None:
            return
        family = descendants(pid)
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftover = [p for p in (pid, *family) if self._alive(p)]
        for p in leftover:
            signal_group(p, signal.SIGKILL)
        self._cleanup()
        if pid in leftover:
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               f"the node did not stop within {timeout:g} s and was killed")

    def wait_ready(self, *, timeout: float = 120.0) -> NodeStatus:
        """Wait until the agent answers; PROCESS_FAILED if the node exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if not status.running:
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   "the node stopped while starting: "
                                   f"{status.last_error or 'see logs/node.log'}")
            if status.agent_up:
                return status
            if time.monotonic() > deadline:
                raise TesseraError(ErrorCode.PROCESS_FAILED,
                                   f"the site agent did not answer within {timeout:g} s")
            time.sleep(0.25)

    def wait_connection(self, *, timeout: float) -> NodeStatus:
        """Wait (at most ``timeout`` s) until the SuperNode has either reached the SuperLink
        or failed to once; the status then (its ``connection`` says which)."""
        deadline = time.monotonic() + timeout
        status = self.status()
        while status.running and status.connection == "connecting" \
                and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status()
        return status

    # -- status ------------------------------------------------------------------------
    def status(self) -> NodeStatus:
        """Process liveness, the agent's socket and its last recorded task."""
        pid = self._live_pid()
        info = self._info() if pid is not None else {}
        state = read_agent_state(self.site)
        started = _parse_time(info.get("started_at"))
        current = state is not None and pid is not None and (
            started is None or state.at >= started)
        last_error = None
        if state is not None and not state.ok:
            last_error = f"{state.kind} task refused: {state.reason}"
        log_error = self._log_error()
        if pid is None and log_error is not None:
            last_error = log_error
        return NodeStatus(
            running=pid is not None, pid=pid, agent_up=self._agent_answers(),
            superlink=_str_or_none(info.get("superlink")),
            current_study=state.study if current and state else None,
            current_round=state.round if current and state else None,
            last_task=state.kind if state else None, last_task_at=state.at if state else None,
            last_error=last_error,
            supernode_up=pid is not None and any(
                "flower-supernode" in cmdline(p) for p in descendants(pid)),
            insecure=bool(info.get("insecure", False)), log_path=str(self.log_path),
            connection=self._connection(info) if pid is not None else "stopped",
        )

    # -- helpers -----------------------------------------------------------------------
    def _superlink(self, superlink: str | None) -> str:
        if superlink is None:
            kit = load_site_identity(self.site.root)
            manifest = kit.manifest
            host = manifest.site(self.site.name).superlink_address or manifest.superlink_address
            superlink = f"{host}:{manifest.superlink_port}"
        match = _SUPERLINK.fullmatch(superlink)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "superlink: expected HOST:PORT with a port from 1 to 65535")
        return superlink

    def _info(self) -> dict[str, object]:
        try:
            raw = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _live_pid(self) -> int | None:
        """The node's pid if it runs; a pid file of a dead (or foreign) process is removed."""
        try:
            pid = int(self.pid_path.read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and self._alive(pid):
            own_child = self._child is not None and self._child.pid == pid
            if own_child or _is_node(pid, self.site.root):
                return pid
        self._cleanup()
        return None

    def _alive(self, pid: int) -> bool:
        return pid_alive(pid, self._child)

    def _cleanup(self) -> None:
        for path in (self.pid_path, self.info_path):
            path.unlink(missing_ok=True)

    def _agent_answers(self) -> bool:
        socket_path = self.site.socket_path
        if not socket_path.exists():
            return False
        channel = grpc.insecure_channel(f"unix:{socket_path}")
        try:
            grpc.channel_ready_future(channel).result(timeout=1.0)
            return True
        except grpc.FutureTimeoutError:
            return False
        finally:
            channel.close()

    def _connection(self, info: dict[str, object]) -> str:
        """The SuperNode's link to the SuperLink, from what it printed since this start."""
        offset = info.get("supernode_log_offset")
        start = offset if isinstance(offset, int) and offset >= 0 else 0
        try:
            with self.supernode_log_path.open("rb") as handle:
                end = handle.seek(0, os.SEEK_END)
                handle.seek(max(start, end - 262144))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return "connecting"
        return connection_from_log(text)

    def _log_error(self) -> str | None:
        """The last ``error:`` line the node printed since it was last started."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
                tail = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        tail = tail.rsplit(START_MARKER, 1)[-1]
        errors = [line.strip() for line in tail.splitlines()
                  if line.strip().lower().startswith("error")]
        return errors[-1] if errors else None


def connection_from_log(text: str) -> str:
    """"connected", "retrying" or "connecting", from the SuperNode's log lines.

    Flower's SuperNode prints its node id once the SuperLink has admitted it, and "Connection
    attempt failed" on each failed attempt ("Failed to activate SuperNode" when the SuperLink
    still holds an earlier session of the node); the latest of these tells the current state.
    """
    admitted = text.rfind("SuperNode ID:")
    failed = max(text.rfind("Connection attempt failed"),
                 text.rfind("Failed to activate SuperNode"))
    if admitted < 0 and failed < 0:
        return "connecting"
    return "connected" if admitted > failed else "retrying"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _is_node(pid: int, root: Path) -> bool:
    """Whether ``pid`` runs the node entry point for ``root`` (True where /proc is absent,
    so that a pid file is trusted on systems without it).

    A command line that reads empty (a process between fork and exec, or one whose /proc
    entry cannot be read yet) counts as the node: only a process that is clearly another
    program loses the pid file. The site folder is compared as a resolved path, so a node
    started with one spelling of the folder is found through any other.
    """
    if not Path("/proc/self/cmdline").exists():
        return True
    args = cmdline_args(pid)
    deadline = time.monotonic() + 2.0
    while not args and time.monotonic() < deadline:
        time.sleep(0.05)
        args = cmdline_args(pid)
    if not args:
        return True
    if NODE_MODULE not in args or SITE_DIR_OPTION not in args[:-1]:
        return False
    given = Path(args[args.index(SITE_DIR_OPTION) + 1])
    try:
        return given.resolve() == Path(root).resolve()
    except OSError:
        return False


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value)
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
