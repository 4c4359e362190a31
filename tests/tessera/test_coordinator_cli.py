"""``tessera coordinator start|stop|status`` without starting a SuperLink: the refusals, the
kit's installation, stale pid files, and the ServerApp reading the coordinator folder it is
given. (The running coordinator is exercised by test_federation_by_hand.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml
from common.workdir import CoordinatorDir
from server.coordinator import run_study
from server.provisioning import Federation, init_federation
from tessera.cli import app
from tessera.coordinator_control import CoordinatorController
from tessera.coordinator_ops import (
    coordinator_manifest,
    install_kit,
    started_run_id,
    superlink_command,
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "f", name="t", sites=["a", "b"],
                           archives=False)


def _tessera(*args: object):
    env = {k: "" for k in ("TESSERA_KIT",)}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_start_refuses_a_kit_without_the_signing_key_and_starts_nothing(
        fed: Federation, tmp_path: Path) -> None:
    layout = CoordinatorDir(tmp_path / "coord")
    install_kit(layout, fed.coordinator_kit)
    (layout.kit_dir / "signing.key").unlink()
    result = _tessera("--kit", fed.coordinator_kit, "coordinator", "start",
                      "--coordinator-dir", layout.root)
    assert result.exit_code == 10, result.output
    assert "signing.key" in result.output and "Traceback" not in result.output
    assert not (layout.process_dir / "coordinator.pid").exists()
    assert not CoordinatorController(layout).status().running


def test_a_kit_whose_signing_key_is_not_the_manifests_is_refused(
        fed: Federation, tmp_path: Path) -> None:
    layout = CoordinatorDir(tmp_path / "coord")
    install_kit(layout, fed.coordinator_kit)
    (layout.kit_dir / "signing.key").write_text("11" * 32, encoding="ascii")
    with pytest.raises(TesseraError) as caught:
        coordinator_manifest(layout)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert "not the coordinator key" in caught.value.message


def test_coordinator_commands_need_the_coordinators_kit(tmp_path: Path) -> None:
    result = _tessera("coordinator", "start", "--coordinator-dir", tmp_path / "coord")
    assert result.exit_code == 10 and "kit" in result.output
    assert not (tmp_path / "coord").exists()


def test_the_kit_is_installed_once_and_another_federations_is_refused(
        fed: Federation, tmp_path: Path) -> None:
    layout = CoordinatorDir(tmp_path / "coord")
    install_kit(layout, fed.coordinator_kit)
    install_kit(layout, fed.coordinator_kit)  # the same kit again: nothing to do
    assert coordinator_manifest(layout).name == "t"
    other = init_federation(tmp_path / "other", name="o", sites=["a"], archives=False)
    with pytest.raises(TesseraError) as caught:
        install_kit(layout, other.coordinator_kit)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert coordinator_manifest(layout).name == "t"


def test_superlink_runs_with_tls_and_node_authentication_from_the_kit(
        fed: Federation, tmp_path: Path) -> None:
    layout = CoordinatorDir(tmp_path / "coord")
    argv = superlink_command(layout, host="127.0.0.1", port=9999)
    for flag in ("--enable-supernode-auth", "--ssl-ca-certfile", "--ssl-certfile",
                 "--ssl-keyfile", "--disable-runtime-dependency-installation", "--database"):
        assert flag in argv
    assert "--insecure" not in argv
    assert "--insecure" in superlink_command(layout, host="127.0.0.1", port=9999, tls=False)


def test_status_of_a_stopped_coordinator_and_stale_pid_files(fed: Federation,
                                                             tmp_path: Path) -> None:
    layout = CoordinatorDir(tmp_path / "coord")
    install_kit(layout, fed.coordinator_kit)
    result = _tessera("--kit", fed.coordinator_kit, "coordinator", "status",
                      "--coordinator-dir", layout.root, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["running"] is False
    controller = CoordinatorController(layout)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    layout.process_dir.mkdir(parents=True, exist_ok=True)
    for pid in (dead.pid, os.getpid()):  # a gone process; a live one that is another program
        controller.pid_path.write_text(f"{pid}\n")
        assert controller.status().running is False
        assert not controller.pid_path.exists()
    assert controller.stop() is False
    stopped = _tessera("--kit", fed.coordinator_kit, "coordinator", "stop",
                       "--coordinator-dir", layout.root)
    assert stopped.exit_code == 0 and "was not running" in stopped.output
    as_json = _tessera("--kit", fed.coordinator_kit, "coordinator", "stop",
                       "--coordinator-dir", layout.root, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"action": "not_running", "pid": None}


def test_the_server_app_uses_the_coordinator_folder_it_is_given(monkeypatch) -> None:
    import server.server_app as server_app

    calls: dict = {}
    monkeypatch.setattr(server_app, "run_study", lambda grid, **kw: calls.update(kw))
    context = SimpleNamespace(run_id=3, run_config={
        "coordinator-dir": "/srv/coord", "workdir": "", "plan": "/srv/coord/studies/x.toml"})
    server_app.main(None, context)  # type: ignore[arg-type]
    assert calls["coordinator_dir"] == Path("/srv/coord") and "workdir" not in calls
    calls.clear()
    context.run_config = {"workdir": "/srv/work", "plan": "/srv/p.toml"}
    server_app.main(None, context)  # type: ignore[arg-type]
    assert calls["workdir"] == Path("/srv/work") and "coordinator_dir" not in calls


def test_a_run_without_the_coordinators_kit_is_refused_with_a_recorded_result(
        tmp_path: Path) -> None:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), he_enabled=False)
    layout = CoordinatorDir(tmp_path / "bare-coord")
    plan_path = layout.plan_path(plan_hash(plan))
    plan_path.parent.mkdir(parents=True)
    plan_path.write_text(plan_to_toml(plan), encoding="utf-8")
    result = run_study(None, coordinator_dir=layout.root, plan_path=plan_path,  # type: ignore
                       run_id="9", expected_sites=2)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "permission_denied"
    assert "signing key" in result["error"]["message"]
    written = json.loads(layout.run("9").result_path.read_text())
    assert written["status"] == "failed"


def test_the_run_id_is_read_from_what_flwr_run_printed() -> None:
    assert started_run_id("Note: x\nSuccessfully started run 1234567\n") == "1234567"
    with pytest.raises(TesseraError) as caught:
        started_run_id("Error: connection refused\n")
    assert caught.value.code is ErrorCode.PROCESS_FAILED
