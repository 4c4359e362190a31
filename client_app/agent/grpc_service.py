"""The site agent's local gRPC service, on a Unix socket only the site's own user can open
(mode 0600), or, with a socket group, that group too (mode 0660: a SuperNode run under
another account in that group; docs/security.md, "Running the SuperNode as a separate OS
user")."""

from __future__ import annotations

import grp
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import SiteVault
from client_app.governance.audit_trail import sync_quietly
from common.errors import ErrorCode, TesseraError
from protos.tessera.v1 import agent_pb2, agent_pb2_grpc
from protos.wire import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


class SiteAgentServicer(agent_pb2_grpc.SiteAgentServicer):
    """Translate gRPC calls into agent tasks; nothing else."""

    def __init__(self, agent: SiteAgent) -> None:
        self._agent = agent

    def Handle(  # noqa: N802 (gRPC method name)
        self, request: agent_pb2.TaskRequest, context: grpc.ServicerContext
    ) -> agent_pb2.TaskReply:
        return self._agent.handle(request)


def socket_address(path: Path) -> str:
    """gRPC address of a Unix socket path."""
    return f"unix:{path}"


def socket_group_id(group: str) -> int:
    """The id of ``group``: a number as it is, a name this system knows; CONFIG_INVALID if
    neither."""
    name = group.strip()
    if name.isdigit():
        if int(name) >= 2**32 - 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"socket group: {name} is not a group id")
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"socket group: this system has no group '{group}'") from None


def start_server(agent: SiteAgent, socket_path: Path, *,
                 socket_group: str | None = None) -> grpc.Server:
    """Serve the agent on a Unix socket: owner-only (0600), or owner and ``socket_group``
    (0660; the group is checked before anything is served)."""
    gid = None if socket_group is None else socket_group_id(socket_group)
    if socket_path.exists():
        socket_path.unlink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=_OPTIONS)
    agent_pb2_grpc.add_SiteAgentServicer_to_server(SiteAgentServicer(agent), server)
    old_umask = os.umask(0o177)
    try:
        server.add_insecure_port(socket_address(socket_path))
        server.start()
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, 0o600)
    if gid is not None:
        try:
            os.chown(socket_path, -1, gid)  # the group first, then its access
        except PermissionError:
            server.stop(grace=None)
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"socket group: this account may not give its socket to group "
                               f"'{socket_group}' (it must be a member)") from None
        os.chmod(socket_path, 0o660)
    return server


def serve_forever(vault: SiteVault, *, socket_group: str | None = None) -> None:
    """Run the site agent until SIGTERM or SIGINT (``socket_group``: see start_server)."""
    site = vault.site
    stop = threading.Event()
    # Before the socket exists: whoever sees the socket may already stop the agent cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = start_server(SiteAgent(vault), site.socket_path, socket_group=socket_group)
    log.info("site agent for '%s' listening", site.name)
    stop.wait()
    server.stop(grace=2).wait()
    sync_quietly(vault)
    if site.socket_path.exists():
        site.socket_path.unlink()


class AgentClient:
    """A client of a running agent's local socket (what the ClientApp shim does), for tests and
    diagnostics; the desktop app talks to the site through client_app.facade instead."""

    def __init__(self, socket_path: Path) -> None:
        self._channel = grpc.insecure_channel(socket_address(socket_path), options=_OPTIONS)
        self._stub = agent_pb2_grpc.SiteAgentStub(self._channel)

    def handle(
        self, request: agent_pb2.TaskRequest, *, timeout: float = 600.0
    ) -> agent_pb2.TaskReply:
        """Send one task."""
        return self._stub.Handle(request, timeout=timeout)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
