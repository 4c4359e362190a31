"""Entry point of the site agent process: ``python -m client_app.node.agent_process``.

Opens the site folder, unlocks the vault with the site passphrase (from ``--passphrase-fd``,
the pipe a parent hands over, else the environment, the OS keyring or a prompt) and serves the
agent on the site's local socket until SIGTERM or SIGINT. Started with a passphrase variable
in its environment, it first re-executes itself without it. Errors print ``error: ...`` and
exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from client_app.agent.grpc_service import serve_forever
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.node.passphrase_fd import (
    PASSPHRASE_FD_OPTION,
    passphrase_from,
    reexec_without_secret_env,
)
from client_app.store.folder import open_site_dir
from common.errors import TesseraError, describe


def open_agent_vault(site_dir: Path, *, passphrase: str | None = None) -> SiteVault:
    """The unlocked vault the agent serves (``passphrase`` None: the vault module's sources)."""
    return unlock_vault(open_site_dir(site_dir), passphrase)


def main(argv: list[str] | None = None) -> int:
    """Run the agent of ``--site-dir`` until stopped; the process exit status."""
    parser = argparse.ArgumentParser(prog="client_app.node.agent_process",
                                     description="Run a site agent until stopped.")
    parser.add_argument("--site-dir", type=Path, required=True, help="The site folder.")
    parser.add_argument(PASSPHRASE_FD_OPTION, type=int, default=None, metavar="N",
                        help="Read the site passphrase from inherited file descriptor N.")
    parser.add_argument("--socket-group", default=None, metavar="GROUP",
                        help="Let GROUP (a name or id) use the agent's socket (mode 0660); "
                             "default: the owner only (0600).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if argv is None:  # this process is the entry point, not a caller in-process
            reexec_without_secret_env(args.passphrase_fd)
        vault = open_agent_vault(args.site_dir, passphrase=passphrase_from(args.passphrase_fd))
        serve_forever(vault, socket_group=args.socket_group)
    except TesseraError as err:
        status, message = describe(err) or (1, str(err))
        print(f"error: {message}", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
