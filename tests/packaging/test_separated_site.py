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
import json
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from client_app.node.accounts import HOME_ROOT
from client_app.node.commands import agent_command, supernode_command, venv_binary
from client_app.node.passphrase_fd import start_with_passphrase
from common.plan import bundled_plan_path, load_plan, override
from common.processes import ProcessGroup, flower_env, free_port, port_open
from tessera import demo, local_federation
from tessera.progress import ProgressView
from tests.packaging.environments import shared_environment

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
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={grp.getgrnam(unit['Group'][0]).gr_gid}",
            f"--groups={','.join(map(str, sorted(groups)))}", "--inh-caps=-all",
            *(["--no-new-privs"] if unit.get("NoNewPrivileges") == ["yes"] else []), "--",
            "/bin/sh", "-c", f'umask {umask} && exec "$0" "$@"',
            *_exec_start(unit["ExecStart"][0], credentials)]


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _probe(account: str, reads: dict[str, Path], *, listing: Path, socket: Path) -> dict:
    """What ``account`` gets when it tries each read, lists a folder and dials the socket."""
    code = f"""
import json, os, socket
out = {{}}
for name, path in {({k: str(v) for k, v in reads.items()})!r}.items():
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        out[name] = "read"
    except OSError as err:
        out[name] = type(err).__name__
try:
    os.listdir({str(listing)!r})
    out["list the site folder"] = "read"
except OSError as err:
    out["list the site folder"] = type(err).__name__
dial = socket.socket(socket.AF_UNIX)
try:
    dial.connect({str(socket)!r})
    out["agent socket"] = "connected"
except OSError as err:
    out["agent socket"] = type(err).__name__
print(json.dumps(out))
"""
    user = pwd.getpwnam(account)
    done = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
         "--inh-caps=-all", "--", sys.executable, "-I", "-c", code],
        capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="tessera-separated-"))
    folder.chmod(0o711)  # the node account must reach the agent's socket inside
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    yield
    for account in (SITE_USER, NODE_USER):  # the site account leaves the node group first
        subprocess.run(["userdel", account], capture_output=True, check=False)
        shutil.rmtree(HOME_ROOT / account, ignore_errors=True)
    for group in (SITE_USER, NODE_USER):
        subprocess.run(["groupdel", group], capture_output=True, check=False)


def test_the_node_account_reaches_only_the_socket_and_a_study_completes(
        base: Path, accounts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_SITE_PASSPHRASE", raising=False)
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1)
    link_port = free_port()
    fed = local_federation.build(base / "work", plan, sites=2, ceilings={},
                                 passphrase=PASSPHRASE, tls=True, port=link_port)
    separated, plain = fed.sites
    shared = shared_environment(base)
    if shared is None:
        pytest.skip("no Python here that other accounts may run")
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
    demo._write_flwr_config(coordinator_home, link_port, fed.coordinator_kit)
    app_dir, run_toml = local_federation.app_folder(fed.coordinator_dir, {
        "workdir": str(fed.workdir), "plan": str(fed.plan_path), "expected-sites": 2,
        "custodian": fed.custodian, "round-timeout": 600.0, "loso": False})
    with ProcessGroup(base / "logs", coordinator_env) as procs:
        procs.start("superlink", demo._superlink_args(fed, link_port), cwd=fed.coordinator_dir)
        procs.wait_until(lambda: port_open(link_port), what="the SuperLink", timeout=90,
                         watch=["superlink"])
        demo._register_nodes(procs, fed)
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
        assert _uid(agent.popen.pid) == site_uid
        assert _uid(node.popen.pid) == node_uid
        vault_file = next(p for p in separated.keys_dir.iterdir() if p.is_file())
        reads = {"vault": vault_file, "site database": separated.db_path,
                 "node-auth key in the kit": separated.kit_dir / "node-auth.key",
                 "audit log": separated.audit_log,
                 "passphrase credential": credentials / "site-passphrase",
                 "agent environment": Path(f"/proc/{agent.popen.pid}/environ")}
        as_node = _probe(NODE_USER, reads, listing=separated.root, socket=separated.socket_path)
        assert as_node == {**dict.fromkeys(reads, "PermissionError"),
                           "list the site folder": "PermissionError",
                           "agent socket": "connected"}
        as_site = _probe(SITE_USER, reads, listing=separated.root,
                         socket=separated.socket_path)
        assert as_site["site database"] == as_site["agent environment"] == "read"

        runner = procs.start("flwr-run", [venv_binary("flwr"), "run", str(app_dir), "tessera",
                                          "--run-config", str(run_toml), "--stream"],
                             cwd=fed.coordinator_dir, oneshot=True)
        view = ProgressView(fed.layout.coordinator.runs_dir, Console(quiet=True), rounds=1)
        node_tree: dict[int, int] = {}
        deadline = time.monotonic() + 900
        result = None
        while result is None and time.monotonic() < deadline:
            for pid in _descendants(node.popen.pid):
                try:
                    node_tree[pid] = _uid(pid)
                except (OSError, AssertionError):
                    continue
            result = view.poll()
            if result is None and runner.popen.poll() not in (None, 0):
                pytest.fail(f"flwr run failed: {runner.tail()}")
            procs.check_alive("superlink", "agent-site-1", "agent-site-2",
                              "supernode-site-1", "supernode-site-2")
            time.sleep(0.5)
    assert result is not None, "the study did not finish in time"
    assert result["status"] == "completed", result.get("error")
    assert result["rounds"][0]["participating_sites"] == ["site-1", "site-2"]
    assert node_tree, "the SuperNode started no process during the study"
    assert set(node_tree.values()) == {node_uid}, node_tree
