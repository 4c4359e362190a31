"""A site's two long-lived processes as systemd services under two OS accounts.

The **agent** runs as the site account, which owns the site folder (vault, keystore,
``site.db``, audit log, kit) and alone receives the site passphrase: a systemd credential
handed over on file descriptor 3, never in an environment or on a command line. The
**SuperNode**, which runs the ClientApp the coordinator ships, runs as the node account: it
owns only its own folder (Flower's home and copies of the two kit files Flower reads) and
reaches the agent through the agent's socket, group-owned by the node account's group with
mode 0660. The accounts and folders are prepared by :mod:`client_app.node.accounts`; the
layout is explained in docs/security.md ("Running the SuperNode as a separate OS user") and
rendered examples live in ``packaging/systemd/``.

Both command lines come from their one home, :mod:`client_app.node.commands`; this module
only wraps them in units (quoting them for systemd, which expands ``%`` specifiers and ``$``
variables of its own).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from client_app.node.commands import agent_command, supernode_command
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.workdir import FLOWER_HOME

if TYPE_CHECKING:  # the site store's database layer: not needed to write unit files
    from client_app.store.folder import SiteDir

DEFAULT_SITE_USER = "tessera-site"
DEFAULT_NODE_USER = "tessera-node"
#: The SuperNode's own port (Flower's default); each SuperNode on one host needs its own.
DEFAULT_SUPERNODE_PORT = 9094
#: The name of the systemd credential that carries the site passphrase.
CREDENTIAL_NAME = "site-passphrase"
#: The file descriptor the agent reads the passphrase from.
PASSPHRASE_FD = 3
NODE_CA_FILE = "ca.pem"
NODE_KEY_FILE = "node-auth.key"
#: Unit files are configuration, readable by every account (they hold no secret).
UNIT_MODE = 0o644

_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_CREDENTIALS = "\0credentials\0"  # stands for %d until the word is quoted


@dataclass(frozen=True)
class ServiceLayout:
    """Where a site's services run: accounts, the SuperNode's folder, the credential."""

    site: SiteDir
    superlink: str
    node_home: Path
    credential: Path
    site_user: str = DEFAULT_SITE_USER
    node_user: str = DEFAULT_NODE_USER
    supernode_port: int = DEFAULT_SUPERNODE_PORT
    #: The installed environment's bin folder (the Python and Flower commands the units run).
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)

    def __post_init__(self) -> None:
        for name, user in (("site user", self.site_user), ("node user", self.node_user)):
            if not _ACCOUNT.fullmatch(user):
                raise TesseraError(ErrorCode.CONFIG_INVALID,
                                   f"{name} {user!r}: not an account name (lower-case letters, "
                                   "digits, _ and -, at most 32, not starting with a digit)")
        if self.site_user == self.node_user:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "the site user and the node user must be two accounts")
        if not _HOST_PORT.fullmatch(self.superlink):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"superlink {self.superlink!r}: expected HOST:PORT")
        if isinstance(self.supernode_port, bool) or not 0 < self.supernode_port < 65536:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"supernode port {self.supernode_port}: expected 1 to 65535")
        for name, path in (("node home", self.node_home), ("credential", self.credential),
                           ("site folder", self.site.root), ("bin folder", self.bin_dir)):
            if not Path(path).is_absolute():
                raise TesseraError(ErrorCode.CONFIG_INVALID,
                                   f"{name} {path}: must be an absolute path")

    @property
    def agent_unit(self) -> str:
        """The agent's unit name."""
        return f"tessera-agent-{self.site.name}.service"

    @property
    def supernode_unit(self) -> str:
        """The SuperNode's unit name."""
        return f"tessera-supernode-{self.site.name}.service"

    @property
    def node_ca(self) -> Path:
        """The SuperNode's copy of the federation CA certificate."""
        return self.node_home / NODE_CA_FILE

    @property
    def node_key(self) -> Path:
        """The SuperNode's copy of the site's node-authentication key."""
        return self.node_home / NODE_KEY_FILE

    @property
    def node_flower_home(self) -> Path:
        """``FLWR_HOME`` of the SuperNode."""
        return self.node_home / FLOWER_HOME


def systemd_word(word: str) -> str:
    """One command-line word as systemd reads it back verbatim (specifiers and variables
    escaped, quoted when it holds anything but plain characters)."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if word and _PLAIN.fullmatch(word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _relocated(argv: list[str], bin_dir: Path) -> list[str]:
    """``argv`` with this interpreter's bin folder replaced by ``bin_dir``."""
    here = Path(sys.executable).parent
    first = Path(argv[0])
    if first.parent == here:
        return [str(bin_dir / first.name), *argv[1:]]
    return argv


def agent_exec(layout: ServiceLayout) -> str:
    """The agent's ``ExecStart=``: the passphrase credential on descriptor 3, read once."""
    argv = _relocated(agent_command(layout.site, socket_group=layout.node_user),
                      layout.bin_dir)
    script = (f"exec {shlex.join(argv)} --passphrase-fd {PASSPHRASE_FD} "
              f"{PASSPHRASE_FD}<{_CREDENTIALS}/{CREDENTIAL_NAME}")
    # %d: systemd's credentials folder of this service ($CREDENTIALS_DIRECTORY).
    return f"/bin/sh -c {systemd_word(script)}".replace(_CREDENTIALS, "%d")


def supernode_exec(layout: ServiceLayout) -> str:
    """The SuperNode's ``ExecStart=``: TLS and node authentication from its own copies."""
    argv = supernode_command(layout.site, layout.superlink, insecure=False,
                             port=layout.supernode_port,
                             kit_files=(layout.node_ca, layout.node_key))
    return " ".join(systemd_word(w) for w in _relocated(argv, layout.bin_dir))


def render_units(layout: ServiceLayout) -> dict[str, str]:
    """The two unit files, by file name."""
    loader = "LoadCredentialEncrypted" if layout.credential.suffix == ".cred" \
        else "LoadCredential"
    agent = f"""\
# The site agent of {layout.site.name}: owns data, keys, the privacy ledger and the
# passphrase. Written by `tessera site install-service`.
[Unit]
Description=Tessera site agent of {layout.site.name}
After=network-online.target

[Service]
Type=simple
User={layout.site_user}
Group={layout.site_user}
SupplementaryGroups={layout.node_user}
UMask=0077
{loader}={CREDENTIAL_NAME}:{layout.credential}
ExecStart={agent_exec(layout)}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ReadWritePaths={layout.site.root}

[Install]
WantedBy=multi-user.target
"""
    supernode = f"""\
# The SuperNode of {layout.site.name}: runs the study's ClientApp (coordinator-shipped code)
# as {layout.node_user}, which can reach the agent's socket and nothing else of the site.
# Written by `tessera site install-service`.
[Unit]
Description=Tessera SuperNode of {layout.site.name}
Requires={layout.agent_unit}
After={layout.agent_unit}

[Service]
Type=simple
User={layout.node_user}
Group={layout.node_user}
UMask=0077
Environment=HOME={layout.node_home}
Environment=FLWR_HOME={layout.node_flower_home}
Environment=FLWR_TELEMETRY_ENABLED=0
Environment=FLWR_DISABLE_UPDATE_CHECK=1
Environment=PATH={layout.bin_dir}:/usr/local/bin:/usr/bin:/bin
ExecStart={supernode_exec(layout)}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ReadWritePaths={layout.node_home}
InaccessiblePaths=-{layout.credential.parent}

[Install]
WantedBy=multi-user.target
"""
    return {layout.agent_unit: agent, layout.supernode_unit: supernode}


def write_units(layout: ServiceLayout, unit_dir: Path) -> tuple[Path, ...]:
    """Write both units into ``unit_dir`` (replacing older versions); their paths."""
    written = []
    for name, text in render_units(layout).items():
        path = Path(unit_dir) / name
        try:
            atomic_write_bytes(path, text.encode("utf-8"), mode=UNIT_MODE)
        except PermissionError:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"--unit-dir {unit_dir}: cannot write {name} (run as root, "
                               "or choose a folder you can write)") from None
        except IsADirectoryError:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--unit-dir {unit_dir}: {name} is a directory") from None
        written.append(path)
    return tuple(written)


__all__ = [
    "CREDENTIAL_NAME", "DEFAULT_NODE_USER", "DEFAULT_SITE_USER", "DEFAULT_SUPERNODE_PORT",
    "PASSPHRASE_FD", "ServiceLayout", "agent_exec", "render_units", "supernode_exec",
    "systemd_word", "write_units",
]
