"""Transport security on real processes: TLS and SuperNode authentication refuse strangers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from common.processes import ProcessGroup, flower_env, free_port, port_open
from server.provisioning import init_federation

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def superlink(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tls")
    fed = init_federation(root / "fed", name="t", sites=["a", "b", "c"], archives=False)
    kit = fed.coordinator_kit
    home = root / "home"
    env = flower_env(home)
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "t"\n[superlink.t]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{kit / "ca.pem"}"\n')
    with ProcessGroup(root / "logs", env) as procs:
        procs.start("superlink", [
            str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
            "--database", str(root / "link.db"), "--disable-runtime-dependency-installation",
            "--ssl-ca-certfile", str(kit / "ca.pem"), "--ssl-certfile", str(kit / "superlink.pem"),
            "--ssl-keyfile", str(kit / "superlink.key"), "--enable-supernode-auth"])
        procs.wait_until(lambda: port_open(port), what="superlink", timeout=90,
                         watch=["superlink"])
        reg = procs.start("register-a", [str(BIN / "flwr"), "supernode", "register",
                                          str(kit / "node-auth" / "a.pub"), "t"], oneshot=True)
        assert reg.popen.wait(timeout=120) == 0, reg.tail()
        yield fed, procs, port, root


def _supernode(superlink, name: str, *extra: str, wait: float = 60) -> tuple[int | None, str]:
    fed, procs, port, root = superlink
    child = procs.start(name, [
        str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{port}",
        "--port", str(free_port()), "--max-retries", "1", "--max-wait-time", "20", *extra,
    ], env=flower_env(root / f"home-{name}"), oneshot=True)
    try:
        code = child.popen.wait(timeout=wait)
    except Exception:
        code = None
    return code, child.tail(40)


def test_registered_supernode_over_tls_stays_connected(superlink) -> None:
    fed = superlink[0]
    kit = fed.site_kit("a")
    code, log = _supernode(superlink, "good", "--root-certificates", str(kit / "ca.pem"),
                           "--auth-supernode-private-key", str(kit / "node-auth.key"), wait=20)
    assert code is None, log


def test_unregistered_supernode_key_is_refused(superlink) -> None:
    kit = superlink[0].site_kit("b")
    code, log = _supernode(superlink, "unregistered", "--root-certificates",
                           str(kit / "ca.pem"), "--auth-supernode-private-key",
                           str(kit / "node-auth.key"))
    assert code not in (None, 0), log


def test_supernode_without_a_key_is_refused(superlink) -> None:
    kit = superlink[0].site_kit("a")
    code, log = _supernode(superlink, "nokey", "--root-certificates", str(kit / "ca.pem"))
    assert code not in (None, 0), log


def test_supernode_without_tls_is_refused(superlink) -> None:
    kit = superlink[0].site_kit("a")
    code, log = _supernode(superlink, "plaintext", "--insecure",
                           "--auth-supernode-private-key", str(kit / "node-auth.key"))
    assert code not in (None, 0), log


def test_site_run_starts_agent_and_supernode_and_stops_both(superlink, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    from client_app.custody.kit import import_site_kit
    from client_app.custody.vault import create_vault
    from client_app.store.folder import open_site_dir
    from tests.conftest import TEST_PASSPHRASE

    fed, procs, port, root = superlink
    reg = procs.start("register-c", [str(BIN / "flwr"), "supernode", "register",
                                      str(fed.coordinator_kit / "node-auth" / "c.pub"), "t"],
                      oneshot=True)
    assert reg.popen.wait(timeout=120) == 0, reg.tail()
    site_dir = tmp_path / "c"
    import_site_kit(fed.site_kit("c"), site_dir)
    site = open_site_dir(site_dir)
    create_vault(site, TEST_PASSPHRASE)
    runner = subprocess.Popen(
        [str(BIN / "tessera"), "site", "run", "--site-dir", str(site_dir),
         "--superlink", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TESSERA_SITE_PASSPHRASE": TEST_PASSPHRASE})
    try:
        deadline = time.monotonic() + 120
        while not site.socket_path.exists() and time.monotonic() < deadline:
            assert runner.poll() is None, runner.stdout.read().decode()
            time.sleep(0.5)
        time.sleep(15)
        assert runner.poll() is None, runner.stdout.read().decode()
        log = (site_dir / "logs" / "supernode.log").read_text()
        assert "Failed to activate" not in log
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
    output = " ".join(runner.stdout.read().decode().split())
    assert "TLS, node authentication" in output
    leftovers = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(site_dir) in cmd:
                leftovers.append(cmd)
    assert leftovers == []
