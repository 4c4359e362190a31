"""What the packaging tests that run a site under two OS accounts share.

Reading a process's account and its process tree from ``/proc``; probing, as an account,
which of a site's files it can read; taking turns at adding and removing OS accounts, and
removing the accounts a test created; and submitting a one-round study to a running
SuperLink and following it, while recording the account of every process under given
parents.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from client_app.node.accounts import HOME_ROOT
from client_app.node.commands import venv_binary
from common.processes import ProcessGroup
from tessera import coordinator_ops, local_federation
from tessera.progress import ProgressView

_PROBE = """
import json, os, socket, sys
reads, listing, dial_path = json.loads(sys.argv[1])
out = {}
for name, path in reads.items():
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        out[name] = "read"
    except OSError as err:
        out[name] = type(err).__name__
try:
    os.listdir(listing)
    out["list the site folder"] = "read"
except OSError as err:
    out["list the site folder"] = type(err).__name__
dial = socket.socket(socket.AF_UNIX)
try:
    dial.connect(dial_path)
    out["agent socket"] = "connected"
except OSError as err:
    out["agent socket"] = type(err).__name__
print(json.dumps(out))
"""


def uid_of(pid: int) -> int:
    """The real user id process ``pid`` runs as."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise OSError(f"no Uid line for process {pid}")


def uid_after_exec(pid: int, *, launchers: frozenset[str] = frozenset({"env", "setpriv"}),
                   timeout: float = 30.0) -> int:
    """The real user id of ``pid`` once its launchers (``env``, then ``setpriv``, which
    switches user) have exec'd the unit's command; until then it is still root's launcher."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        if argv0 and Path(argv0.decode()).name not in launchers:
            return uid_of(pid)
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} still runs a launcher after {timeout} s")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` right now."""
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


def probe(account: str, reads: dict[str, Path], *, listing: Path, socket: Path,
          python: Path) -> dict[str, str]:
    """What ``account`` gets when it reads each file, lists ``listing`` and dials ``socket``:
    "read"/"connected", or the error's name."""
    user = pwd.getpwnam(account)
    args = json.dumps([{k: str(v) for k, v in reads.items()}, str(listing), str(socket)])
    done = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
         "--inh-caps=-all", "--", str(python), "-I", "-c", _PROBE, args],
        capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A folder under the system's temporary folder that every account may traverse."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)  # other accounts reach the agent's socket inside, by name
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: Held while a test adds, uses and removes OS accounts: ``useradd`` refuses while another
#: ``useradd`` holds ``/etc/passwd``, so two such tests on two workers take turns.
ACCOUNTS_LOCK = Path(tempfile.gettempdir()) / "tessera-tests-os-accounts.lock"


@contextmanager
def accounts_turn() -> Iterator[None]:
    """This process's turn at adding OS accounts (waits while another test has it)."""
    with ACCOUNTS_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_accounts(names: Iterable[str]) -> None:
    """Stop what still runs as ``names``, then delete the accounts, their groups and homes
    (site accounts first: they are members of the node groups)."""
    names = list(names)
    uids = set()
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            continue
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if uid_of(int(entry)) in uids:
                    os.kill(int(entry), 9)
            except OSError:
                continue
    for name in names:
        subprocess.run(["userdel", name], capture_output=True, check=False)
        shutil.rmtree(HOME_ROOT / name, ignore_errors=True)
    for name in names:
        subprocess.run(["groupdel", name], capture_output=True, check=False)


def run_study(procs: ProcessGroup, fed: local_federation.LocalFederation, *,
              watch: Callable[[], None], timeout: float = 900) -> dict[str, Any]:
    """Submit the federation's study with ``flwr run`` and follow it to its result, calling
    ``watch`` about twice a second meanwhile (the SuperLink is already up)."""
    app_dir, run_toml = coordinator_ops.app_folder(fed.coordinator_dir, {
        "coordinator-dir": str(fed.coordinator_dir.resolve()), "plan": str(fed.plan_path),
        "expected-sites": len(fed.sites), "custodian": fed.custodian,
        "round-timeout": float(timeout), "loso": False})
    runner = procs.start("flwr-run", [venv_binary("flwr"), "run", str(app_dir),
                                      coordinator_ops.CONNECTION,
                                      "--run-config", str(run_toml), "--stream"],
                         cwd=fed.coordinator_dir, oneshot=True)
    view = ProgressView(fed.layout.coordinator.runs_dir, Console(quiet=True),
                        rounds=fed.plan.training.rounds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watch()
        result = view.poll()
        if result is not None:
            return result
        if runner.popen.poll() not in (None, 0):
            raise AssertionError(f"flwr run failed: {runner.tail()}")
        procs.check_alive()
        time.sleep(0.5)
    raise AssertionError("the study did not finish in time")


def record_accounts(parents: Iterable[int], seen: dict[int, int]) -> None:
    """Add the account of every process below ``parents`` to ``seen`` (pid to uid)."""
    for parent in parents:
        for pid in descendants(parent):
            try:
                seen[pid] = uid_of(pid)
            except OSError:
                continue


__all__ = ["accounts_turn", "descendants", "probe", "record_accounts", "remove_accounts",
           "run_study", "scratch_folder", "uid_of"]
