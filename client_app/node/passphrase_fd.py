"""How the site passphrase reaches a long-lived process Tessera starts: an inherited pipe,
never an environment variable or a command-line argument.

Any process of the same operating-system account can read another's ``/proc/<pid>/environ``
(the environment it was started with; removing a variable inside the process later does not
change what /proc shows) and ``/proc/<pid>/cmdline`` for as long as it runs, and Flower runs
coordinator-shipped code in the SuperNode's tree. A pipe is readable only by the processes
that hold it. The parent writes the passphrase into a fresh pipe, closes the write end and
hands the read end to exactly one child (``pass_fds``, ``--passphrase-fd N``); the child
reads it once, to its end, and closes it. Every process Tessera starts gets an environment
without :data:`SECRET_ENV_VARS`, and an entry point started with them in its own environment
re-executes itself without them (:func:`reexec_without_secret_env`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping

from common.errors import ErrorCode, TesseraError
from common.processes import Child, ProcessGroup
from privacy.passphrase import PASSPHRASE_ENV_VAR, passphrase_from_environment

#: Variables that carry a site passphrase; no process Tessera starts inherits them.
SECRET_ENV_VARS = (PASSPHRASE_ENV_VAR, "TESSERA_NEW_SITE_PASSPHRASE")
#: The longest passphrase handed over a pipe (well below any system's pipe buffer, so the
#: parent's write never waits for the child).
MAX_PASSPHRASE_BYTES = 4096
#: The option every entry point that receives a passphrase accepts.
PASSPHRASE_FD_OPTION = "--passphrase-fd"  # noqa: S105 (an option name)


def without_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's environment) without the passphrase
    variables."""
    source = os.environ if env is None else env
    return {key: value for key, value in source.items() if key not in SECRET_ENV_VARS}


def passphrase_pipe(passphrase: str) -> int:
    """The read end of a new pipe holding ``passphrase`` and a newline, its write end closed.

    Hand it to one child with ``pass_fds`` and close it in the parent once the child runs.
    """
    data = passphrase.encode("utf-8") + b"\n"
    if not passphrase or len(data) > MAX_PASSPHRASE_BYTES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"passphrase: must be 1 to {MAX_PASSPHRASE_BYTES - 1} bytes")
    read_end, write_end = os.pipe()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except OSError:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


@contextlib.contextmanager
def passphrase_handoff(passphrase: str) -> Iterator[int]:
    """A pipe's read end holding ``passphrase`` for the child started in the block; the
    parent's copy is closed when the block ends, whether the child started or not."""
    read_end = passphrase_pipe(passphrase)
    try:
        yield read_end
    finally:
        os.close(read_end)


def read_passphrase_fd(fd: int) -> str:
    """The passphrase an inherited descriptor carries, read once to its end; the descriptor
    is closed. One trailing newline is dropped (so ``--passphrase-fd 3 3<file`` works too)."""
    option = f"{PASSPHRASE_FD_OPTION} {fd}"
    if fd < 0:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{option}: not a file descriptor")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, MAX_PASSPHRASE_BYTES + 1):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_PASSPHRASE_BYTES:
                raise TesseraError(ErrorCode.CONFIG_INVALID,
                                   f"{option}: longer than {MAX_PASSPHRASE_BYTES} bytes")
    except OSError as err:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{option}: cannot be read ({err.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{option}: not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise TesseraError(ErrorCode.KEY_MISSING, f"{option}: no passphrase was sent")
    return text


def passphrase_from(fd: int | None) -> str | None:
    """The passphrase of ``--passphrase-fd`` when given; None lets the vault ask the usual
    sources (the environment, the OS keyring, a prompt)."""
    return None if fd is None else read_passphrase_fd(fd)


def start_with_passphrase(procs: ProcessGroup, name: str, argv: list[str], passphrase: str, *,
                          env: Mapping[str, str] | None = None) -> Child:
    """Start ``argv`` + ``--passphrase-fd N`` in ``procs``, the passphrase on a pipe; neither
    the group's environment nor ``env`` may carry a passphrase variable."""
    leaked = [var for var in SECRET_ENV_VARS if var in procs.env or var in (env or {})]
    if leaked:
        raise TesseraError(ErrorCode.INTERNAL,
                           f"{name}: refusing to start a process with {', '.join(leaked)} set")
    with passphrase_handoff(passphrase) as fd:
        return procs.start(name, [*argv, PASSPHRASE_FD_OPTION, str(fd)], env=env,
                           pass_fds=(fd,))


def reexec_without_secret_env(passphrase_fd: int | None) -> None:
    """Replace this process by itself, same pid and arguments, without the passphrase
    variables, when its environment has them; the passphrase moves to a pipe.

    Call it first in an entry point that runs for long (``tessera site run``, ``tessera site
    agent``): the environment a process started with stays readable in /proc for its whole
    life. A ``passphrase_fd`` already given is kept (the variable is then ignored); otherwise
    the variable's value goes to a new pipe named by an added ``--passphrase-fd``. Returns
    only when there is nothing to remove.
    """
    if not any(var in os.environ for var in SECRET_ENV_VARS):
        return
    argv = list(sys.orig_argv)
    if passphrase_fd is None and PASSPHRASE_ENV_VAR in os.environ:
        passphrase_fd = passphrase_pipe(passphrase_from_environment(prompt=False,
                                                                     use_keyring=False))
        argv += [PASSPHRASE_FD_OPTION, str(passphrase_fd)]
    if passphrase_fd is not None:
        os.set_inheritable(passphrase_fd, True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os.execve(sys.executable, argv, without_secrets())  # noqa: S606 (this same program)


__all__ = [
    "MAX_PASSPHRASE_BYTES",
    "PASSPHRASE_FD_OPTION",
    "SECRET_ENV_VARS",
    "passphrase_from",
    "passphrase_handoff",
    "passphrase_pipe",
    "read_passphrase_fd",
    "reexec_without_secret_env",
    "start_with_passphrase",
    "without_secrets",
]
