"""The audit service streams a party's log, read-only, to the federation's auditor only."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from privacy.audit_log import AuditLog
from privacy.audit_verify import verify_bytes, verify_log
from privacy.signing import SigningKey
from protos.tessera.v1 import audit_pb2, audit_pb2_grpc
from server.provisioning import Federation, init_federation
from tessera.audit_service import AuditServicer, latest_checkpoint, pull_log, serve_audit
from tessera.cli import app


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _signing_key(kit: Path) -> SigningKey:
    return SigningKey(bytes.fromhex((kit / "signing.key").read_text().strip()))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="cardio",
                           sites=["north"], archives=False)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("other") / "out", name="rogue",
                           sites=["north"], archives=False)


@pytest.fixture(scope="module")
def log(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "coordinator.jsonl"
    audit = AuditLog.create(path, party="coordinator", role="coordinator",
                            signing_key=_signing_key(fed.coordinator_kit),
                            auditor_public_hex=fed.manifest.auditor_sealing_key)
    audit.append("study_started", actor="coordinator", details={"rounds": 3})
    audit.append("round_aggregated", actor="coordinator", details={"round": 1})
    audit.checkpoint()
    audit.append("round_aggregated", actor="coordinator", details={"round": 2})
    return path


@pytest.fixture(scope="module")
def address(fed: Federation, log: Path) -> Iterator[str]:
    where = _free_address()
    server = serve_audit({"coordinator": log}, address=where, kit_dir=fed.coordinator_kit)
    yield where
    server.stop(grace=None)


def test_auditor_pulls_a_byte_identical_copy_that_verifies(
        fed: Federation, log: Path, address: str) -> None:
    data = pull_log(address, log="coordinator", kit_dir=fed.auditor_kit)
    assert data == log.read_bytes()
    report = verify_bytes(data)
    assert report.ok and report.records == 3


def test_pull_from_an_index_and_the_latest_checkpoint(
        fed: Federation, log: Path, address: str) -> None:
    lines = log.read_bytes().split(b"\n")[:-1]
    assert pull_log(address, log="coordinator", kit_dir=fed.auditor_kit,
                    from_index=2) == b"".join(line + b"\n" for line in lines[2:])
    checkpoint = latest_checkpoint(address, log="coordinator", kit_dir=fed.auditor_kit)
    assert checkpoint == lines[3] and b'"type":"checkpoint"' in checkpoint


def test_cli_pull_writes_the_log_and_prints_the_verification(
        fed: Federation, log: Path, address: str, tmp_path: Path) -> None:
    out = tmp_path / "pulled.jsonl"
    result = CliRunner().invoke(app, ["audit", "pull", "--from", address, "--log",
                                      "coordinator", "--kit", str(fed.auditor_kit),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "OK: pulled 'coordinator'" in result.output and "3 records" in result.output
    assert out.read_bytes() == log.read_bytes()
    assert verify_log(out).ok


def test_a_client_without_a_certificate_is_refused(fed: Federation, address: str) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(fed.coordinator_kit / "ca.pem").read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Records(audit_pb2.RecordsRequest(log="coordinator"), timeout=10))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_plaintext_connection_is_refused(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Records(audit_pb2.RecordsRequest(log="coordinator"), timeout=10))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_client_certificate_from_another_ca_is_refused(
        fed: Federation, other: Federation, address: str, tmp_path: Path) -> None:
    kit = tmp_path / "forged-kit"
    kit.mkdir()
    shutil.copy(fed.auditor_kit / "ca.pem", kit / "ca.pem")  # trusts the real server
    for name in ("audit-client.pem", "audit-client.key"):
        shutil.copy(other.auditor_kit / name, kit / name)
    with pytest.raises(TesseraError) as err:
        pull_log(address, log="coordinator", kit_dir=kit)
    assert err.value.code is ErrorCode.PERMISSION_DENIED
    assert "mutual TLS" in err.value.message


def test_a_server_from_another_federation_is_refused(
        other: Federation, address: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "pull", "--from", address, "--log",
                                      "coordinator", "--kit", str(other.auditor_kit),
                                      "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == TesseraError(ErrorCode.PERMISSION_DENIED, "").exit_code
    assert "error: mutual TLS with the audit service" in result.output
    assert "not from this federation's CA" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_an_unknown_log_name_is_a_clear_not_found(fed: Federation, address: str) -> None:
    with pytest.raises(TesseraError) as err:
        pull_log(address, log="north", kit_dir=fed.auditor_kit)
    assert err.value.code is ErrorCode.NOT_FOUND
    assert "no audit log named 'north'" in err.value.message
    assert "serves: coordinator" in err.value.message


def test_the_service_has_only_the_two_read_calls() -> None:
    service = audit_pb2.DESCRIPTOR.services_by_name["AuditService"]
    assert sorted(m.name for m in service.methods) == ["LatestCheckpoint", "Records"]
    assert {m.name: m.server_streaming for m in service.methods} == {
        "Records": True, "LatestCheckpoint": False}
    assert not any(m.client_streaming for m in service.methods)
    public = {n for n in vars(AuditServicer) if not n.startswith("_")}
    assert public == {"Records", "LatestCheckpoint"}


def test_a_site_serves_its_log_with_its_own_certificate(
        fed: Federation, tmp_path: Path) -> None:
    kit = fed.site_kit("north")
    path = tmp_path / "north.jsonl"
    audit = AuditLog.create(path, party="north", role="site", signing_key=_signing_key(kit),
                            auditor_public_hex=fed.manifest.auditor_sealing_key)
    audit.append("dataset_added", actor="north", details={"rows": 10})
    audit.checkpoint()
    where = _free_address()
    server = serve_audit({"north": path}, address=where, kit_dir=kit)
    try:
        assert pull_log(where, log="north", kit_dir=fed.auditor_kit) == path.read_bytes()
    finally:
        server.stop(grace=None)


def test_serving_needs_a_kit_with_the_audit_certificate(fed: Federation, log: Path) -> None:
    with pytest.raises(TesseraError) as err:
        serve_audit({"coordinator": log}, address=_free_address(), kit_dir=fed.auditor_kit)
    assert err.value.code is ErrorCode.KEY_MISSING
    assert "audit-server.pem" in err.value.message


def test_nothing_listening_is_a_clear_error(fed: Federation) -> None:
    with pytest.raises(TesseraError) as err:
        pull_log(_free_address(), log="coordinator", kit_dir=fed.auditor_kit, timeout=5)
    assert err.value.code is ErrorCode.PROCESS_FAILED
    assert "cannot reach an audit service" in err.value.message
