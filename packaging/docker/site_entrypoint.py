"""Entry point of the site image: the site agent and the SuperNode under two accounts.

Runs as root only to set up, exactly as ``tessera site install-service --create-users`` does
(the accounts, the site folder given to the site account and opened to the node group for
traversal only, the SuperNode's own folder with its copies of the CA certificate and the
node-authentication key). Then it starts the agent as the site account, the passphrase read
from the secret file and handed over on a pipe, and the SuperNode as the node account, with
the command lines of ``client_app/node/commands.py``. Both stop together.

Environment: ``TESSERA_SITE_DIR`` (default ``/srv/tessera/site``, an initialised site folder
with its kit), ``TESSERA_PASSPHRASE_FILE`` (default ``/run/secrets/site-passphrase``),
``TESSERA_SUPERLINK`` (default: the signed manifest's), ``TESSERA_SITE_USER``,
``TESSERA_NODE_USER``, ``TESSERA_NODE_HOME`` (default ``/var/lib/tessera-node/site``),
``TESSERA_SUPERNODE_PORT``.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

from supervise import Children

from client_app.node.accounts import create_accounts, prepare_folders
from client_app.node.commands import agent_command, default_superlink, supernode_command
from client_app.node.passphrase_fd import PASSPHRASE_FD_OPTION, passphrase_handoff
from client_app.node.services import (
    DEFAULT_NODE_USER,
    DEFAULT_SITE_USER,
    DEFAULT_SUPERNODE_PORT,
    ServiceLayout,
)
from client_app.store.folder import open_site_dir
from common.errors import TesseraError


def _layout() -> ServiceLayout:
    site = open_site_dir(Path(os.environ.get("TESSERA_SITE_DIR", "/srv/tessera/site")))
    return ServiceLayout(
        site=site,
        superlink=os.environ.get("TESSERA_SUPERLINK") or default_superlink(site),
        node_home=Path(os.environ.get("TESSERA_NODE_HOME", "/var/lib/tessera-node/site")),
        credential=Path(os.environ.get("TESSERA_PASSPHRASE_FILE",
                                       "/run/secrets/site-passphrase")),
        site_user=os.environ.get("TESSERA_SITE_USER", DEFAULT_SITE_USER),
        node_user=os.environ.get("TESSERA_NODE_USER", DEFAULT_NODE_USER),
        supernode_port=int(os.environ.get("TESSERA_SUPERNODE_PORT", DEFAULT_SUPERNODE_PORT)))


def main() -> int:
    try:
        layout = _layout()
        create_accounts(layout)
        prepare_folders(layout)
        passphrase = layout.credential.read_text(encoding="utf-8").removesuffix("\n")
    except (TesseraError, OSError) as err:
        print(f"error: {getattr(err, 'message', err)}", file=sys.stderr)
        return 2
    site, node = pwd.getpwnam(layout.site_user), pwd.getpwnam(layout.node_user)
    node_group = grp.getgrnam(layout.node_user).gr_gid
    bin_dir = str(Path(sys.executable).parent)
    children = Children()
    with passphrase_handoff(passphrase) as fd:
        children.start(
            "agent", [*agent_command(layout.site, socket_group=layout.node_user),
                      PASSPHRASE_FD_OPTION, str(fd)],
            user=site.pw_uid, group=site.pw_gid, extra_groups=[node_group], umask=0o077,
            pass_fds=(fd,), cwd=layout.site.root,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": site.pw_dir})
    del passphrase
    children.wait_for(layout.site.socket_path, watch="agent", timeout=180)
    children.start(
        "supernode", supernode_command(layout.site, layout.superlink, insecure=False,
                                       port=layout.supernode_port,
                                       kit_files=(layout.node_ca, layout.node_key)),
        user=node.pw_uid, group=node.pw_gid, extra_groups=[], umask=0o077,
        cwd=layout.node_home,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(layout.node_home),
             "FLWR_HOME": str(layout.node_flower_home), "FLWR_TELEMETRY_ENABLED": "0",
             "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"})
    return children.run()


if __name__ == "__main__":
    sys.exit(main())
