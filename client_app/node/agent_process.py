"""Entry point of the site agent process: ``python -m client_app.node.agent_process``.

Opens the site folder, unlocks the vault with the site passphrase and serves the agent on the
site's local socket until SIGTERM or SIGINT. Errors print ``error: ...`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from client_app.agent.grpc_service import serve_forever
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.store.folder import open_site_dir
from common.errors import TesseraError, describe


def open_agent_vault(site_dir: Path) -> SiteVault:
    """The unlocked vault the agent serves (the passphrase as the vault module reads it)."""
    return unlock_vault(open_site_dir(site_dir))


def main(argv: list[str] | None = None) -> int:
    """Run the agent of ``--site-dir`` until stopped; the process exit status."""
    parser = argparse.ArgumentParser(prog="client_app.node.agent_process",
                                     description="Run a site agent until stopped.")
    parser.add_argument("--site-dir", type=Path, required=True, help="The site folder.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        serve_forever(open_agent_vault(args.site_dir))
    except TesseraError as err:
        status, message = describe(err) or (1, str(err))
        print(f"error: {message}", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
