"""The site agent process: its passphrase arrives on a pipe (``--passphrase-fd``), its
environment never holds one, and its socket is owner-only unless a socket group is named."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_app.node.commands import agent_command
from client_app.node.passphrase_fd import PASSPHRASE_FD_OPTION, passphrase_handoff, without_secrets
from client_app.store.folder import SiteDir
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites

BIN = Path(sys.executable).parent


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return provision_sites(tmp_path, ("h1",), passphrase=TEST_PASSPHRASE).sites["h1"]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Agents a test starts; each is stopped (and its group killed) afterwards."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)


def _start(started: list[subprocess.Popen[bytes]], argv: list[str], *,
           env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, env=env, pass_fds=pass_fds, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    started.append(child)
    return child


def _wait_for_socket(site: SiteDir, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not site.socket_path.exists():
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        assert time.monotonic() < deadline, "the agent never opened its socket"
        time.sleep(0.2)


def test_agent_unlocks_from_its_pipe_and_serves_on_an_owner_only_socket(
        site: SiteDir, started: list[subprocess.Popen[bytes]]) -> None:
    with passphrase_handoff(TEST_PASSPHRASE) as fd:
        agent = _start(started, [*agent_command(site), PASSPHRASE_FD_OPTION, str(fd)],
                       env=without_secrets(), pass_fds=(fd,))
    _wait_for_socket(site, agent)
    assert stat.S_IMODE(site.socket_path.stat().st_mode) == 0o600
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes()
    assert TEST_PASSPHRASE.encode() not in environ + cmdline
    os.killpg(agent.pid, signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    assert not site.socket_path.exists()


def test_agent_with_a_wrong_passphrase_on_its_pipe_exits_with_status_9(
        site: SiteDir, started: list[subprocess.Popen[bytes]]) -> None:
    with passphrase_handoff("not the passphrase") as fd:
        agent = _start(started, [*agent_command(site), PASSPHRASE_FD_OPTION, str(fd)],
                       env=without_secrets(), pass_fds=(fd,))
    assert agent.wait(timeout=120) == 9
    assert agent.stdout is not None and b"error:" in agent.stdout.read()
    assert not site.socket_path.exists()


def test_unknown_socket_group_is_refused_and_nothing_is_served(
        site: SiteDir, started: list[subprocess.Popen[bytes]]) -> None:
    with passphrase_handoff(TEST_PASSPHRASE) as fd:
        agent = _start(started, [*agent_command(site), PASSPHRASE_FD_OPTION, str(fd),
                                 "--socket-group", "no-such-group-for-tessera"],
                       env=without_secrets(), pass_fds=(fd,))
    assert agent.wait(timeout=120) == 2
    assert agent.stdout is not None
    assert "this system has no group 'no-such-group-for-tessera'" in agent.stdout.read().decode()
    assert not site.socket_path.exists()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads Linux /proc")
def test_site_agent_command_started_with_the_variable_drops_it_and_shares_its_socket(
        site: SiteDir, started: list[subprocess.Popen[bytes]]) -> None:
    group = os.getgid()
    env = {**os.environ, "TESSERA_SITE_PASSPHRASE": TEST_PASSPHRASE}
    agent = _start(started, [str(BIN / "tessera"), "site", "agent", "--site-dir",
                             str(site.root), "--socket-group", str(group)], env=env)
    _wait_for_socket(site, agent)
    info = site.socket_path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == group
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
    assert TEST_PASSPHRASE.encode() not in environ
    assert b"TESSERA_SITE_PASSPHRASE" not in environ
    assert PASSPHRASE_FD_OPTION.encode() in cmdline  # the same process, now fed by a pipe
    assert all(TEST_PASSPHRASE.encode() not in arg for arg in cmdline)
