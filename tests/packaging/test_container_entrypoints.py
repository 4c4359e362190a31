"""The container images' entry points, run as processes (no container engine runs here).

``packaging/docker/coordinator_entrypoint.py`` starts the SuperLink (TLS, SuperNode
authentication), registers the sites' node keys and serves the coordinator's audit log;
``packaging/docker/site_entrypoint.py``, started as root as in the site image, prepares the
two accounts and the folders and starts the agent as the site account and the SuperNode as
the node account. Two sites and the coordinator run this way, each site with its own pair of
accounts; a one-round study completes; the node accounts cannot read their site's database;
stopping the entry points stops everything they started.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from common.plan import bundled_plan_path, load_plan, override
from common.processes import ProcessGroup, flower_env, free_port, port_open
from tessera import local_federation
from tests.packaging.environments import ROOT, shared_environment
from tests.packaging.processes import (
    accounts_turn,
    descendants,
    probe,
    record_accounts,
    remove_accounts,
    run_study,
    scratch_folder,
)

DOCKER = ROOT / "packaging" / "docker"
PASSPHRASE = "container entry point passphrase"
SUFFIX = secrets.token_hex(3)
ACCOUNTS = {site: (f"tcs{n}-{SUFFIX}", f"tcn{n}-{SUFFIX}")
            for n, site in enumerate(("site-1", "site-2"), start=1)}

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="the site entry point creates accounts and switches to them: needs root")


def test_the_compose_file_keeps_the_federation_private_and_secure() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"coordinator", "site-1", "site-2", "site-3"} <= set(services)
    assert compose["networks"]["federation"]["internal"] is True
    for name in ("coordinator", "site-1", "site-2", "site-3"):
        assert services[name]["networks"] == ["federation"]
        assert "ports" not in services[name]  # nothing published outside the network
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert "--insecure" not in text
    for site in ("site-1", "site-2", "site-3"):
        service = services[site]
        assert service["secrets"] == [{"source": f"{site}-passphrase",
                                       "target": "site-passphrase"}]
        assert not any("PASSPHRASE=" in str(v) or k == "TESSERA_SITE_PASSPHRASE"
                       for k, v in service["environment"].items())


def test_the_dockerfile_targets_run_the_entry_points_that_exist() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    for target, script in (("coordinator", "coordinator_entrypoint.py"),
                           ("site", "site_entrypoint.py")):
        assert f"AS {target}" in text
        assert f'"/opt/tessera/entrypoints/{script}"' in text
        assert (DOCKER / script).is_file()
    assert "--no-index" in text  # built from the wheelhouse, offline


def _alive(pid: int) -> str:
    """The command line of ``pid`` if it still runs (not a zombie), else ""."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
    return "" if state == "Z" else f"{pid} {cmdline}"


@pytest.fixture
def base() -> Iterator[Path]:
    """A scratch folder, and this test's turn at adding OS accounts (useradd refuses while
    another adds its own), so the test need not run alone."""
    with accounts_turn():
        with scratch_folder("tessera-entrypoints-") as folder:
            yield folder
        remove_accounts([user for pair in ACCOUNTS.values() for user in pair])


@pytest.mark.slow
@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("useradd") is None,
                    reason="needs setpriv (util-linux) and useradd (passwd)")
def test_a_study_completes_with_every_party_started_by_its_entry_point(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_SITE_PASSPHRASE", raising=False)
    shared = shared_environment(base)
    if shared is None:
        pytest.skip("no Python here that other accounts may run")
    python = str(shared / "python")
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    link_port, audit_port = free_port(), free_port()
    fed = local_federation.build(base / "work", plan, sites=2, ceilings={},
                                 passphrase=PASSPHRASE, tls=True, port=link_port)
    coordinator_home = fed.layout.coordinator.flower_home
    env = flower_env(coordinator_home)
    with ProcessGroup(base / "logs", env) as procs:
        coordinator = procs.start("coordinator", [
            python, str(DOCKER / "coordinator_entrypoint.py")], env={
            "TESSERA_COORDINATOR_DIR": str(fed.coordinator_dir), "TESSERA_HOST": "127.0.0.1",
            "TESSERA_SUPERLINK_PORT": str(link_port), "TESSERA_AUDIT_PORT": str(audit_port)})
        procs.wait_until(lambda: "node key site-2: registered" in coordinator.tail(50),
                         what="the node keys' registration", timeout=180,
                         watch=["coordinator"])
        procs.wait_until(lambda: port_open(audit_port), what="the audit service", timeout=60,
                         watch=["coordinator"])
        secret_dir = base / "secrets"
        secret_dir.mkdir(mode=0o700)
        entrypoints = {}
        for site in fed.sites:
            secret = secret_dir / site.name
            secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
            secret.chmod(0o600)
            site_user, node_user = ACCOUNTS[site.name]
            entrypoints[site.name] = procs.start(f"entry-{site.name}", [
                python, str(DOCKER / "site_entrypoint.py")], env={
                "TESSERA_SITE_DIR": str(site.root), "TESSERA_PASSPHRASE_FILE": str(secret),
                "TESSERA_SUPERLINK": f"127.0.0.1:{link_port}", "TESSERA_SITE_USER": site_user,
                "TESSERA_NODE_USER": node_user,
                "TESSERA_NODE_HOME": str(base / f"node-{site.name}"),
                "TESSERA_SUPERNODE_PORT": str(free_port())})
        for site in fed.sites:
            procs.wait_until(site.socket_path.exists, what=f"the agent of {site.name}",
                             timeout=180, watch=[f"entry-{site.name}"])
            site_user, node_user = ACCOUNTS[site.name]
            assert probe(node_user, {"site database": site.db_path}, listing=site.root,
                         socket=site.socket_path, python=shared / "python") == {
                "site database": "PermissionError", "list the site folder": "PermissionError",
                "agent socket": "connected"}
        seen: dict[int, int] = {}
        result = run_study(procs, fed, watch=lambda: record_accounts(
            [p.popen.pid for p in entrypoints.values()], seen))
        assert result["status"] == "completed", result.get("error")
        assert result["rounds"][0]["participating_sites"] == ["site-1", "site-2"]
        expected = {pwd.getpwnam(user).pw_uid for pair in ACCOUNTS.values() for user in pair}
        assert set(seen.values()) == expected  # agents and SuperNodes, none as root

        started = {pid for p in (coordinator, *entrypoints.values())
                   for pid in descendants(p.popen.pid)}
        for child in (coordinator, *entrypoints.values()):
            os.kill(child.popen.pid, signal.SIGTERM)
        for child in (coordinator, *entrypoints.values()):
            assert child.popen.wait(timeout=60) == 0
        time.sleep(1)
        assert [_alive(pid) for pid in started if _alive(pid)] == [], \
            "an entry point left processes behind"
        assert not port_open(link_port)
