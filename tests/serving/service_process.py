"""Test helper: ``tessera model serve`` as a real process on 127.0.0.1, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(args: list[str], *, log: Path, ready: Callable[[], bool],
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``tessera ARGS`` until ``ready()`` answers True; stop it on exit."""
    base = {k: v for k, v in os.environ.items() if k not in (KIT_ENV_VAR, POLICY_ENV_VAR)}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tessera.cli", *args], stdout=out,
                                   stderr=subprocess.STDOUT, env={**base, **(env or {})})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if ready():
                    break
            except Exception:  # not listening yet
                pass
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.3)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
