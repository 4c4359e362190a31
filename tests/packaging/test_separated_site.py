"""A site whose agent and SuperNode run under two OS accounts, as real processes.

``tessera site install-service --create-users`` creates the accounts, gives the site folder
to the site account and writes the two systemd units. There is no systemd here, so the test
runs each unit's ``ExecStart=`` itself the way systemd would for the account part: a clean
environment (``Environment=`` lines, ``HOME``, ``USER``), the unit's user, group and
supplementary groups (``setpriv``), ``UMask=``, ``NoNewPrivileges=``, and the passphrase
credential in a folder only the site account can read (``%d``). The units' sandboxing lines
(``ProtectSystem=``, ``PrivateTmp=``, ``ReadWritePaths=``, ``InaccessiblePaths=``) are not
applied: what is shown is what the accounts alone enforce.

With site-1 run that way (site-2 runs as in the demo), the node account cannot read the
vault, the site database, the kit's keys, the audit log, the passphrase credential or the
agent's environment, nor list the site folder; it can reach the agent's socket; every process
of the SuperNode's tree runs as the node account; and a two-site study still completes.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_app.node.commands import agent_command, supernode_command
from client_app.node.passphrase_fd import start_with_passphrase
from common.plan import bundled_plan_path, load_plan, override
from common.processes import ProcessGroup, flower_env, free_port, port_open
from privacy.manifest import CA_CERT_FILE, load_manifest
from tessera import coordinator_ops, local_federation
from tests.packaging.environments import shared_environment
from tests.packaging.processes import (
    accounts_turn,
    probe,
    record_accounts,
    remove_accounts,
    run_study,
    scratch_folder,
    uid_after_exec,
)

#: It adds OS accounts, and useradd refuses while another adds its own: its ``base`` takes
#: turns with the other test that does (``accounts_turn``), so it need not run alone.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="creates OS accounts and switches to them: needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None or shutil.which("useradd") is None,
                       reason="needs setpriv (util-linux) and useradd (passwd)"),
]

PASSPHRASE = "separated-accounts passphrase"
SUFFIX = secrets.token_hex(3)
SITE_USER = f"tsite-{SUFFIX}"
NODE_USER = f"tnode-{SUFFIX}"


def _unit(path: Path) -> dict[str, list[str]]:
    """The ``[Service]`` settings of a unit file: key to values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _exec_start(value: str, credentials: Path) -> list[str]:
    """``ExecStart=`` as systemd reads it: specifiers and ``$$`` resolved, quotes removed."""
    value = value.replace("%d", str(credentials)).replace("%%", "%").replace("$$", "$")
    return shlex.split(value)


def _as_unit(path: Path, *, credentials: Path) -> list[str]:
    """The command line that starts ``path``'s service as systemd would (accounts only)."""
    unit = _unit(path)
    user = pwd.getpwnam(unit["User"][0])
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    groups |= {grp.getgrnam(g).gr_gid for g in unit.get("SupplementaryGroups", [])}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name,
           "LOGNAME": user.pw_name, "CREDENTIALS_DIRECTORY": str(credentials)}
    for item in unit.get("Environment", []):
        key, _, value = item.partition("=")
        env[key] = value
    umask = unit.get("UMask", ["0022"])[0]
    group = grp.getgrnam(unit["Group"][0]).gr_gid
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={group}",
            f"--groups={','.join(map(str, sorted(groups)))}", "--inh-caps=-all",
            *(["--no-new-privs"] if unit.get("NoNewPrivileges") == ["yes"] else []), "--",
            "/bin/sh", "-c", f'umask {umask} && exec "$0" "$@"',
            *_exec_start(unit["ExecStart"][0], credentials)]


@pytest.fixture
def base() -> Iterator[Path]:
    with accounts_turn():
        with scratch_folder("tessera-separated-") as folder:
            yield folder
        remove_accounts([SITE_USER, NODE_USER])


def test_the_node_account_reaches_only_the_socket_and_a_study_completes(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_SITE_PASSPHRASE", raising=False)
    shared = shared_environment(base)
    if shared is None:
        pytest.skip("no Python here that other accounts may run")
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    link_port = free_port()
    fed = local_federation.build(base / "work", plan, sites=2, ceilings={},
                                 passphrase=PASSPHRASE, tls=True, port=link_port)
    separated, plain = fed.sites
    units, node_home = base / "units", base / "node-site-1"
    installed = subprocess.run([
        shared / "python", "-m", "tessera.cli", "site", "install-service",
        "--site-dir", separated.root, "--site-user", SITE_USER, "--node-user", NODE_USER,
        "--node-home", node_home, "--credential", base / "etc" / "site-passphrase",
        "--unit-dir", units, "--superlink", f"127.0.0.1:{link_port}",
        "--supernode-port", str(free_port()), "--create-users"],
        capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site_uid, node_uid = pwd.getpwnam(SITE_USER).pw_uid, pwd.getpwnam(NODE_USER).pw_uid
    assert separated.db_path.stat().st_uid == site_uid
    # systemd's credentials folder: the passphrase, readable by the service's account only.
    credentials = base / "credentials"
    credentials.mkdir(mode=0o500)
    (credentials / "site-passphrase").write_text(PASSPHRASE + "\n", encoding="utf-8")
    for path, mode in ((credentials / "site-passphrase", 0o400), (credentials, 0o500)):
        os.chown(path, site_uid, -1)
        path.chmod(mode)

    coordinator_home = fed.layout.coordinator.flower_home
    coordinator_env = flower_env(coordinator_home)
    coordinator_ops.write_flwr_config(coordinator_home, f"127.0.0.1:{link_port}",
                                      ca=fed.coordinator_kit / CA_CERT_FILE)
    with ProcessGroup(base / "logs", coordinator_env) as procs:
        procs.start("superlink", coordinator_ops.superlink_command(
            fed.layout.coordinator, host="127.0.0.1", port=link_port, tls=fed.tls),
            cwd=fed.coordinator_dir)
        procs.wait_until(lambda: port_open(link_port), what="the SuperLink", timeout=90,
                         watch=["superlink"])
        coordinator_ops.register_nodes(procs, fed.layout.coordinator,
                                       load_manifest(fed.layout.manifest_path))
        agent = procs.start("agent-site-1", _as_unit(
            units / f"tessera-agent-{separated.name}.service", credentials=credentials))
        start_with_passphrase(procs, "agent-site-2", agent_command(plain), PASSPHRASE,
                              env=flower_env(plain.flower_home))
        for site in fed.sites:
            procs.wait_until(site.socket_path.exists, what=f"the agent of {site.name}",
                             timeout=120, watch=[f"agent-{site.name}"])
        node = procs.start("supernode-site-1", _as_unit(
            units / f"tessera-supernode-{separated.name}.service", credentials=credentials))
        procs.start("supernode-site-2", supernode_command(
            plain, f"127.0.0.1:{link_port}", insecure=False), env=flower_env(plain.flower_home))

        socket = separated.socket_path.stat()
        assert (socket.st_mode & 0o777, socket.st_gid) == (0o660, pwd.getpwnam(NODE_USER).pw_gid)
        assert uid_after_exec(agent.popen.pid) == site_uid
        assert uid_after_exec(node.popen.pid) == node_uid
        vault_file = next(p for p in separated.keys_dir.iterdir() if p.is_file())
        reads = {"vault": vault_file, "site database": separated.db_path,
                 "node-auth key in the kit": separated.kit_dir / "node-auth.key",
                 "audit log": separated.audit_log,
                 "passphrase credential": credentials / "site-passphrase",
                 "agent environment": Path(f"/proc/{agent.popen.pid}/environ")}
        where = {"listing": separated.root, "socket": separated.socket_path,
                 "python": shared / "python"}
        assert probe(NODE_USER, reads, **where) == {
            **dict.fromkeys(reads, "PermissionError"),
            "list the site folder": "PermissionError", "agent socket": "connected"}
        as_site = probe(SITE_USER, reads, **where)
        assert as_site["site database"] == as_site["agent environment"] == "read"

        node_tree: dict[int, int] = {}
        result = run_study(procs, fed, watch=lambda: record_accounts([node.popen.pid],
                                                                     node_tree))
    assert result["status"] == "completed", result.get("error")
    assert result["rounds"][0]["participating_sites"] == ["site-1", "site-2"]
    assert node_tree, "the SuperNode started no process during the study"
    assert set(node_tree.values()) == {node_uid}, node_tree
