"""The site node: the agent's recorded state, and starting, watching and stopping the node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import SiteVault, create_vault
from client_app.node.controller import NodeController, connection_from_log
from client_app.store.agent_state import read_agent_state
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.datasets import csv_bytes, load_bundled
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, plan_hash
from common.processes import free_port
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites, signed_task

PLAN = load_plan(bundled_plan_path("breast_cancer"))


def _site_with_data(root: Path) -> tuple[SiteDir, SiteVault, SigningKey]:
    fed = provision_sites(root, ("h1",), passphrase=TEST_PASSPHRASE)
    site, vault = fed.sites["h1"], fed.vaults["h1"]
    vault.write_dataset(PLAN.dataset.name, csv_bytes(load_bundled(PLAN.dataset.name)))
    return site, vault, fed.coordinator_key


def test_agent_records_its_state_after_each_task(tmp_path: Path) -> None:
    site, vault, key = _site_with_data(tmp_path)
    agent = SiteAgent(vault)
    assert read_agent_state(site) is None
    assert not agent.handle(signed_task(key, agent_pb2.TASK_HELLO, PLAN)).ok
    refused = read_agent_state(site)
    assert refused is not None
    assert (refused.kind, refused.study, refused.plan_hash, refused.ok, refused.error_code) == (
        "hello", "breast_cancer", plan_hash(PLAN), False, "not_approved")
    assert "not approved" in refused.reason
    status = NodeController(site).status()
    assert status.last_task == "hello" and status.last_task_at == refused.at
    assert status.last_error is not None and "not approved" in status.last_error
    assert status.current_study is None  # the node is not running
    with SiteStore.open(site) as store:
        store.approve(plan_hash(PLAN), actor="ops")
    assert agent.handle(signed_task(key, agent_pb2.TASK_HELLO, PLAN)).ok
    done = read_agent_state(site)
    assert done is not None and done.ok and done.reason == "" and done.at >= refused.at
    assert NodeController(site).status().last_error is None


def test_stale_or_foreign_pid_file_is_cleaned(tmp_path: Path) -> None:
    site, _, _ = _site_with_data(tmp_path)
    controller = NodeController(site)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, 1):  # a dead process; a live one that is not this site's node
        controller.run_dir.mkdir(exist_ok=True)
        controller.pid_path.write_text(f"{pid}\n")
        status = controller.status()
        assert not status.running and status.pid is None
        assert not controller.pid_path.exists()
    controller.stop()  # nothing to stop: no error


def test_start_refuses_bad_input_before_starting_anything(tmp_path: Path) -> None:
    site, _, _ = _site_with_data(tmp_path)
    controller = NodeController(site)
    cases = [
        ({"passphrase": TEST_PASSPHRASE, "superlink": "nohost"}, ErrorCode.CONFIG_INVALID),
        ({"passphrase": TEST_PASSPHRASE, "superlink": "h:70000"}, ErrorCode.CONFIG_INVALID),
        ({"passphrase": "wrong", "superlink": "127.0.0.1:9092"}, ErrorCode.WRONG_PASSPHRASE),
    ]
    for kwargs, code in cases:
        with pytest.raises(TesseraError) as caught:
            controller.start(insecure=True, **kwargs)  # type: ignore[arg-type]
        assert caught.value.code is code
    assert not controller.pid_path.exists() and not controller.log_path.exists()
    bare = init_site_dir(tmp_path / "bare", name="bare")  # no kit: no SuperLink to dial
    create_vault(bare, TEST_PASSPHRASE)
    with pytest.raises(TesseraError) as caught:
        NodeController(bare).start(passphrase=TEST_PASSPHRASE, insecure=True)
    assert caught.value.code is ErrorCode.KEY_MISSING


@pytest.mark.slow
def test_node_runs(tmp_path: Path) -> None:
    site, _, _ = _site_with_data(tmp_path)
    controller = NodeController(site)
    superlink = f"127.0.0.1:{free_port()}"  # nothing listens: the SuperNode keeps retrying
    controller.start(passphrase=TEST_PASSPHRASE, insecure=True, superlink=superlink)
    try:
        status = controller.wait_ready(timeout=120)
        assert status.running and status.agent_up and status.pid is not None
        assert status.superlink == superlink and status.insecure
        cmdline = Path(f"/proc/{status.pid}/cmdline").read_bytes()
        assert TEST_PASSPHRASE.encode() not in cmdline
        assert TEST_PASSPHRASE not in controller.info_path.read_text()
        assert json.loads(controller.info_path.read_text())["pid"] == status.pid
        with pytest.raises(TesseraError) as again:
            controller.start(passphrase=TEST_PASSPHRASE, insecure=True, superlink=superlink)
        assert again.value.code is ErrorCode.PERMISSION_DENIED
        # A second controller (another process, the desktop app) sees the same node.
        other = NodeController(site).status()
        assert other.running and other.pid == status.pid and other.agent_up
        children = _descendants(status.pid)
        assert children, "the node started no agent or SuperNode"
        assert controller.status().connection in ("connecting", "retrying")
    finally:
        controller.stop(timeout=60)
    stopped = controller.status()
    assert not stopped.running and not stopped.agent_up and stopped.superlink is None
    assert not controller.pid_path.exists()
    assert not site.socket_path.exists()
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in children)
    assert "--insecure" in controller.log_path.read_text()


def _descendants(pid: int) -> list[int]:
    from client_app.node.procfs import descendants

    return descendants(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def test_connection_state_follows_the_supernodes_last_word() -> None:
    assert connection_from_log("INFO: Starting Flower SuperNode\n") == "connecting"
    assert connection_from_log(
        "Starting Flower SuperNode\nWARNING: Connection attempt failed, retrying in 2.00 s\n"
    ) == "retrying"
    assert connection_from_log(
        "Connection attempt failed, retrying in 1.00 s\nINFO: SuperNode ID: 1234\n"
    ) == "connected"
    assert connection_from_log(
        "SuperNode ID: 1234\n...\nConnection attempt failed, retrying in 4.00 s\n"
    ) == "retrying"
    assert connection_from_log(  # restarted while the SuperLink holds the old session
        "SuperNode ID: 1234\n...\n[code: 2004] Failed to activate SuperNode.\n"
    ) == "retrying"
