"""The read-only audit service: a party's audit logs, streamed to the federation's auditor.

The coordinator and each site serve their logs with :func:`serve_audit` over mutual TLS: the
server presents the party's ``audit-server`` certificate and accepts only clients holding a
certificate issued by the federation CA (the auditor kit's ``audit-client``). The service has
two calls, both reads (see ``protos/tessera/v1/audit.proto``): ``Records`` streams the stored
lines byte for byte from a line index, ``LatestCheckpoint`` returns the last signed checkpoint.
Nothing here can append to, rewrite or truncate a log; the auditor verifies what it pulls
(:func:`pull_log` is the client the ``tessera audit pull`` command uses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from concurrent import futures
from pathlib import Path

import grpc

from common.errors import ErrorCode, TesseraError
from privacy.manifest import (
    AUDIT_CLIENT_CERT_FILE,
    AUDIT_CLIENT_KEY_FILE,
    AUDIT_SERVER_CERT_FILE,
    AUDIT_SERVER_KEY_FILE,
    CA_CERT_FILE,
)
from protos.tessera.v1 import audit_pb2, audit_pb2_grpc

__all__ = ["AuditServicer", "latest_checkpoint", "pull_log", "serve_audit"]

_LOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TIMEOUT_S = 60.0


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Serves the named logs read-only; any other name is NOT_FOUND."""

    def __init__(self, log_paths: Mapping[str, Path]) -> None:
        self._logs = {name: Path(path) for name, path in log_paths.items()}

    def _path(self, name: str, context: grpc.ServicerContext) -> Path:
        path = self._logs.get(name)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no audit log named {name!r} here; this service serves: "
                          f"{', '.join(sorted(self._logs))}")
        assert path is not None
        if not path.is_file():
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"audit log {name!r} does not exist yet on this party")
        return path

    def Records(self, request: audit_pb2.RecordsRequest,  # noqa: N802 (gRPC name)
                context: grpc.ServicerContext) -> Iterator[audit_pb2.RecordLine]:
        """Stream complete lines from ``from_index`` (an unfinished last line is skipped)."""
        path = self._path(request.log, context)
        with path.open("rb") as handle:
            for index, raw in enumerate(handle):
                if not raw.endswith(b"\n"):
                    break  # an append still in progress (or cut by a crash): not yet a line
                if index >= request.from_index:
                    yield audit_pb2.RecordLine(line=raw[:-1])

    def LatestCheckpoint(self, request: audit_pb2.CheckpointRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> audit_pb2.CheckpointReply:
        """The last complete checkpoint line, or an empty reply when there is none."""
        path = self._path(request.log, context)
        latest = b""
        with path.open("rb") as handle:
            for raw in handle:
                if raw.endswith(b"\n") and b'"checkpoint"' in raw and _is_checkpoint(raw):
                    latest = raw[:-1]
        return audit_pb2.CheckpointReply(line=latest)


def _is_checkpoint(raw: bytes) -> bool:
    try:
        obj = json.loads(raw)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "checkpoint"


def _read(kit_dir: Path, name: str, what: str) -> bytes:
    try:
        return (Path(kit_dir) / name).read_bytes()
    except OSError:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"--kit: {kit_dir} has no readable {name} ({what}); use a kit "
                           "provisioned with audit-service certificates") from None


def serve_audit(log_paths: dict[str, Path], *, address: str, kit_dir: Path) -> grpc.Server:
    """Start serving ``log_paths`` (name -> file) on ``address`` (HOST:PORT); return the server.

    ``kit_dir`` is the coordinator's or a site's kit: its CA, ``audit-server.pem`` and
    ``audit-server.key``. Clients must present a certificate the federation CA issued.
    """
    if not log_paths:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--log: name at least one log to serve")
    for name in log_paths:
        if not _LOG_NAME.fullmatch(name):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--log: {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    ca = _read(kit_dir, CA_CERT_FILE, "the federation CA")
    cert = _read(kit_dir, AUDIT_SERVER_CERT_FILE, "the audit service certificate")
    key = _read(kit_dir, AUDIT_SERVER_KEY_FILE, "the audit service key")
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                              require_client_auth=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(log_paths), server)
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"--address: cannot listen on {address!r} (in use or not HOST:PORT)")
    server.start()
    return server


def _channel(address: str, kit_dir: Path) -> grpc.Channel:
    ca = _read(kit_dir, CA_CERT_FILE, "the federation CA")
    cert = _read(kit_dir, AUDIT_CLIENT_CERT_FILE, "the auditor's client certificate")
    key = _read(kit_dir, AUDIT_CLIENT_KEY_FILE, "the auditor's client key")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                               certificate_chain=cert)
    return grpc.secure_channel(address, credentials)


def _translate(err: grpc.RpcError, address: str) -> TesseraError:
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    if code is grpc.StatusCode.NOT_FOUND:
        return TesseraError(ErrorCode.NOT_FOUND, f"{address}: {details}")
    if code is grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "connection refused" in lowered or "deadline" in lowered or "dns" in lowered:
            return TesseraError(ErrorCode.PROCESS_FAILED,
                                f"cannot reach an audit service at {address} ({details})")
        # A failed handshake reads "certificate verify failed" when we reject the server,
        # and only "socket closed" when the server rejects our client certificate.
        return TesseraError(
            ErrorCode.PERMISSION_DENIED,
            f"mutual TLS with the audit service at {address} failed: either its "
            "certificate is not from this federation's CA, or it refused this kit's "
            f"auditor certificate ({details})")
    return TesseraError(ErrorCode.PROCESS_FAILED,
                        f"audit service at {address}: {code.name if code else 'error'}: "
                        f"{details}")


def pull_log(address: str, *, log: str, kit_dir: Path, from_index: int = 0,
             timeout: float = _TIMEOUT_S) -> bytes:
    """The log ``log`` served at ``address``, from line ``from_index``, as stored bytes."""
    if from_index < 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "from_index: must be 0 or more")
    with _channel(address, kit_dir) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        try:
            stream = stub.Records(audit_pb2.RecordsRequest(log=log, from_index=from_index),
                                  timeout=timeout)
            return b"".join(bytes(reply.line) + b"\n" for reply in stream)
        except grpc.RpcError as err:
            raise _translate(err, address) from None


def latest_checkpoint(address: str, *, log: str, kit_dir: Path,
                      timeout: float = _TIMEOUT_S) -> bytes | None:
    """The latest signed checkpoint line of ``log`` at ``address``; None if it has none."""
    with _channel(address, kit_dir) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        try:
            reply = stub.LatestCheckpoint(audit_pb2.CheckpointRequest(log=log), timeout=timeout)
        except grpc.RpcError as err:
            raise _translate(err, address) from None
    return bytes(reply.line) or None
