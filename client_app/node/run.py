"""``tessera site run``: a hospital's two long-lived processes, the site agent and SuperNode.

TLS and SuperNode authentication are on by default, from the site's imported kit (the
federation CA and the site's node-authentication key). ``--insecure`` exists only for
development and says so loudly on every start. Both processes are stopped together, also on
Ctrl-C or when either one fails. ``python -m client_app.node.run`` is the entry point the node
controller detaches.

The site passphrase reaches the agent on an inherited pipe (:mod:`client_app.node.passphrase_fd`),
never in an environment: the agent and the SuperNode start without the passphrase variables,
and the entry point, started with them, re-executes itself without them first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from client_app.custody.vault import unlock_vault
from client_app.node.commands import agent_command, default_superlink, supernode_command
from client_app.node.controller import connection_from_log
from client_app.node.passphrase_fd import (
    PASSPHRASE_FD_OPTION,
    passphrase_from,
    reexec_without_secret_env,
    start_with_passphrase,
)
from client_app.store.folder import open_site_dir
from common.errors import ErrorCode, TesseraError, describe
from common.processes import ProcessGroup, flower_env
from privacy.passphrase import passphrase_from_environment

INSECURE_WARNING = ("WARNING: --insecure: no TLS and no node authentication. Updates and "
                    "the node's identity are unprotected; use only for development.")


def run_site(site_dir: Path, *, superlink: str | None, insecure: bool, console: Console,
             passphrase: str | None = None) -> None:
    """Start the agent and the SuperNode; return when either stops or on Ctrl-C.

    ``passphrase`` None: from the environment, the OS keyring or a prompt.
    """
    site = open_site_dir(site_dir)
    if insecure:
        console.print(f"[bold red]{INSECURE_WARNING}[/]")
    secret = passphrase if passphrase is not None else passphrase_from_environment()
    unlock_vault(site, secret)  # fail early, before any process starts
    address = superlink or default_superlink(site)
    command = supernode_command(site, address, insecure=insecure)
    # Without the passphrase variables: neither child inherits them.
    env = flower_env(site.flower_home)
    with ProcessGroup(site.logs_dir, env) as procs:
        # Only the agent, which owns data and keys, receives the passphrase, on a pipe.
        start_with_passphrase(procs, "agent", agent_command(site), secret)
        procs.wait_until(site.socket_path.exists, what="the site agent", timeout=120,
                         watch=["agent"])
        log = site.logs_dir / "supernode.log"
        offset = log.stat().st_size if log.exists() else 0
        supernode = procs.start("supernode", command)
        console.print(f"site {site.name}: agent and SuperNode started, SuperLink {address}"
                      f" ({'insecure' if insecure else 'TLS, node authentication'})")
        shown, give_up = "connecting", time.monotonic() + ACTIVATION_PATIENCE
        while True:
            procs.check_alive("agent")
            text = _read_from(log, offset)
            if supernode.popen.poll() is not None:
                if ACTIVATION_REFUSED not in text or time.monotonic() > give_up:
                    raise TesseraError(ErrorCode.PROCESS_FAILED,
                                       f"supernode exited with status "
                                       f"{supernode.popen.returncode}; see supernode.log")
                # A node restarted after a crash: the SuperLink holds its previous session
                # until that session's heartbeats lapse (about a minute); try again.
                console.print(f"the SuperLink {address} still holds this site's previous "
                              f"connection; retrying in {ACTIVATION_RETRY:g} s", highlight=False)
                shown = "retrying"
                time.sleep(ACTIVATION_RETRY)
                offset = log.stat().st_size if log.exists() else 0
                supernode = procs.start("supernode", command)
                continue
            state = connection_from_log(text)
            if state != shown:
                console.print(_CONNECTION_NEWS[state].format(address=address), highlight=False)
                shown = state
            time.sleep(1.0)


#: What Flower's SuperNode prints when the SuperLink refuses to activate it (it then exits).
ACTIVATION_REFUSED = "Failed to activate SuperNode"
#: Seconds between SuperNode starts while the SuperLink refuses to activate it, and for how
#: long (Flower's SuperLink lets a session lapse after two missed 30 s heartbeats).
ACTIVATION_RETRY = 10.0
ACTIVATION_PATIENCE = 300.0


#: What ``site run`` prints when the SuperNode's link to the SuperLink changes.
_CONNECTION_NEWS = {
    "connected": "connected to the SuperLink {address}: waiting for study tasks",
    "retrying": "the SuperLink {address} is unreachable; the SuperNode keeps retrying "
                "(is the coordinator started? see logs/supernode.log)",
    "connecting": "connecting to the SuperLink {address} ...",
}


def _read_from(path: Path, offset: int) -> str:
    """What the SuperNode printed since this start (its last 256 KiB)."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, 2)
            handle.seek(max(offset, end - 262144))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of a detached node; the process exit status."""
    parser = argparse.ArgumentParser(prog="client_app.node.run",
                                     description="Run a site's agent and SuperNode.")
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--superlink", default=None)
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument(PASSPHRASE_FD_OPTION, type=int, default=None, metavar="N",
                        help="Read the site passphrase from inherited file descriptor N.")
    args = parser.parse_args(argv)
    try:
        if argv is None:  # this process is the entry point, not a caller in-process
            reexec_without_secret_env(args.passphrase_fd)
        run_site(args.site_dir, superlink=args.superlink, insecure=args.insecure,
                 console=Console(), passphrase=passphrase_from(args.passphrase_fd))
    except TesseraError as err:
        status, message = describe(err) or (1, str(err))
        print(f"error: {message}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print("stopped: the agent and the SuperNode were shut down", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["INSECURE_WARNING", "main", "run_site"]
