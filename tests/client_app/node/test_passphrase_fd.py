"""The site passphrase crosses to a child process on an inherited pipe, read once, and never
stays in an environment: the child's, or that of an entry point started with the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client_app.node.passphrase_fd import (
    MAX_PASSPHRASE_BYTES,
    PASSPHRASE_FD_OPTION,
    SECRET_ENV_VARS,
    passphrase_handoff,
    passphrase_pipe,
    read_passphrase_fd,
    start_with_passphrase,
    without_secrets,
)
from common.errors import ErrorCode, TesseraError
from common.processes import ProcessGroup

PASSPHRASE = "correct horse\tbattery staple \u00e9"

# A child that reads the passphrase from the descriptor it was given and reports what it saw.
_READER = """
import json, os, sys
from client_app.node.passphrase_fd import read_passphrase_fd
fd = int(sys.argv[-1])
secret = read_passphrase_fd(fd)
try:
    os.fstat(fd)
    closed = False
except OSError:
    closed = True
environ = open("/proc/self/environ", "rb").read() if os.path.exists("/proc/self") else b""
print(json.dumps({"secret": secret, "closed": closed,
                  "in_environ": secret.encode() in environ}))
"""

# An entry point that re-executes itself without the passphrase variables.
_ENTRY = """
import argparse, json, os, sys
from client_app.node.passphrase_fd import passphrase_from, reexec_without_secret_env
parser = argparse.ArgumentParser()
parser.add_argument("--passphrase-fd", type=int, default=None)
args = parser.parse_args()
print(json.dumps({"start": os.getpid()}), flush=True)
reexec_without_secret_env(args.passphrase_fd)
environ = open("/proc/self/environ", "rb").read()
secret = passphrase_from(args.passphrase_fd)
print(json.dumps({"pid": os.getpid(), "secret": secret, "argv": sys.argv[1:],
                  "env_vars": sorted(k for k in os.environ if "PASSPHRASE" in k),
                  "in_environ": (secret or "").encode() in environ}))
"""


def _pipe_with(data: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_child_reads_the_passphrase_once_from_its_pipe_and_closes_it() -> None:
    env = without_secrets({**os.environ, "TESSERA_SITE_PASSPHRASE": PASSPHRASE})
    with passphrase_handoff(PASSPHRASE) as fd:
        done = subprocess.run([sys.executable, "-c", _READER, str(fd)], pass_fds=(fd,),
                              env=env, capture_output=True, check=True, timeout=60)
    assert _closed(fd)  # the parent's copy is gone too
    seen = json.loads(done.stdout)
    assert seen == {"secret": PASSPHRASE, "closed": True, "in_environ": False}


@pytest.mark.parametrize("secret", ["pw", "ends with a newline\n", "two\nlines",
                                    "x" * (MAX_PASSPHRASE_BYTES - 1)])
def test_pipe_carries_any_passphrase_exactly(secret: str) -> None:
    assert read_passphrase_fd(passphrase_pipe(secret)) == secret


def test_operator_file_with_a_final_newline_gives_the_passphrase_without_it() -> None:
    assert read_passphrase_fd(_pipe_with(b"from a file\n")) == "from a file"
    assert read_passphrase_fd(_pipe_with(b"from windows\r\n")) == "from windows"
    assert read_passphrase_fd(_pipe_with(b"no newline")) == "no newline"


@pytest.mark.parametrize(("data", "code", "words"), [
    (b"", ErrorCode.KEY_MISSING, "no passphrase was sent"),
    (b"  \n", ErrorCode.KEY_MISSING, "no passphrase was sent"),
    (b"\xff\xfe", ErrorCode.CONFIG_INVALID, "not UTF-8"),
    (b"y" * (MAX_PASSPHRASE_BYTES + 1), ErrorCode.CONFIG_INVALID, "longer than"),
])
def test_bad_pipe_content_is_refused_by_name_and_the_descriptor_closed(
        data: bytes, code: ErrorCode, words: str) -> None:
    fd = _pipe_with(data)
    with pytest.raises(TesseraError) as caught:
        read_passphrase_fd(fd)
    assert caught.value.code is code
    assert f"{PASSPHRASE_FD_OPTION} {fd}" in caught.value.message and words in caught.value.message
    assert _closed(fd)


def test_descriptor_that_is_not_open_is_refused() -> None:
    fd = _pipe_with(b"pw")
    os.close(fd)
    for bad in (fd, -1):
        with pytest.raises(TesseraError) as caught:
            read_passphrase_fd(bad)
        assert caught.value.code is ErrorCode.CONFIG_INVALID
        assert PASSPHRASE_FD_OPTION in caught.value.message


def test_pipe_refuses_an_empty_or_oversized_passphrase() -> None:
    for bad in ("", "z" * MAX_PASSPHRASE_BYTES):
        with pytest.raises(TesseraError) as caught:
            passphrase_pipe(bad)
        assert caught.value.code is ErrorCode.CONFIG_INVALID


def test_environment_for_children_has_no_passphrase_variable() -> None:
    env = without_secrets({"PATH": "/bin", **dict.fromkeys(SECRET_ENV_VARS, "pw")})
    assert env == {"PATH": "/bin"}
    assert set(SECRET_ENV_VARS) == {"TESSERA_SITE_PASSPHRASE", "TESSERA_NEW_SITE_PASSPHRASE"}


def test_group_refuses_to_start_a_child_whose_environment_holds_a_passphrase(
        tmp_path: Path) -> None:
    with ProcessGroup(tmp_path / "logs", {"TESSERA_SITE_PASSPHRASE": "pw"}) as procs:
        with pytest.raises(TesseraError) as caught:
            start_with_passphrase(procs, "child", [sys.executable, "-c", "pass"], "pw")
        assert caught.value.code is ErrorCode.INTERNAL
        assert procs.children == []
    with ProcessGroup(tmp_path / "logs", without_secrets()) as procs:
        child = start_with_passphrase(procs, "reader", [sys.executable, "-c", _READER],
                                      PASSPHRASE)
        assert child.popen.wait(timeout=60) == 0
    seen = json.loads(child.log_path.read_text().splitlines()[-1])
    assert seen == {"secret": PASSPHRASE, "closed": True, "in_environ": False}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads Linux /proc")
def test_entry_point_started_with_the_variable_replaces_itself_without_it(
        tmp_path: Path) -> None:
    script = tmp_path / "entry.py"
    script.write_text(_ENTRY, encoding="utf-8")
    env = {**os.environ, "TESSERA_SITE_PASSPHRASE": PASSPHRASE,
           "TESSERA_NEW_SITE_PASSPHRASE": "new one"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          check=True, timeout=60, text=True)
    first, again, result = (json.loads(line) for line in done.stdout.splitlines())
    assert first["start"] == again["start"] == result["pid"]  # the same process, re-executed
    assert result["secret"] == PASSPHRASE and not result["in_environ"]
    assert result["env_vars"] == [] and result["argv"][0] == PASSPHRASE_FD_OPTION
    # With neither variable set, nothing happens.
    quiet = subprocess.run([sys.executable, str(script)], env=without_secrets(),
                           capture_output=True, check=True, timeout=60, text=True)
    assert len(quiet.stdout.splitlines()) == 2
