"""Root's part of running a site under two OS accounts: the accounts and their folders.

:func:`create_accounts` makes the site account and the node account (each with its own group;
the site account also joins the node account's group, so that its agent may hand its socket
to that group). :func:`prepare_folders` gives the site folder to the site account and opens
it to the node group for traversal only (0710: the node account reaches ``agent.sock`` by its
name but cannot list the folder, and everything inside stays owner-only), and makes the
SuperNode's own folder: Flower's home and copies of the CA certificate and the
node-authentication key, the two kit files Flower reads. Both are idempotent and need root.
New accounts get a private home in ``/var/lib/<account>``. The units themselves are
:mod:`client_app.node.services`'.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from client_app.custody.kit import load_site_identity
from client_app.node.services import ServiceLayout
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes

SITE_FOLDER_MODE = 0o710
NODE_FOLDER_MODE = 0o700
#: Where a new site account's home goes (``/var/lib/<account>``).
HOME_ROOT = Path("/var/lib")


@dataclass(frozen=True)
class PreparedAccounts:
    """What :func:`create_accounts` did: the accounts it created (existing ones are kept)."""

    created: tuple[str, ...]


def require_root(what: str) -> None:
    """PERMISSION_DENIED unless this process runs as root."""
    if os.geteuid() != 0:
        raise TesseraError(ErrorCode.PERMISSION_DENIED, f"{what} needs root (run it with sudo)")


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True


def _group_exists(group: str) -> bool:
    try:
        grp.getgrnam(group)
    except KeyError:
        return False
    return True


def _run(argv: list[str]) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{argv[0]} is not installed: cannot create accounts here")
    done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TesseraError(ErrorCode.PROCESS_FAILED,
                           f"{argv[0]} {argv[-1]} failed: {done.stderr.strip()}")


def _useradd(account: str) -> None:
    """A system account with its own group, no login and a private home in HOME_ROOT."""
    home = HOME_ROOT / account
    shell = shutil.which("nologin") or "/bin/false"
    group = ["--gid", account] if _group_exists(account) else ["--user-group"]
    _run(["useradd", "--system", *group, "--home-dir", str(home), "--no-create-home",
          "--shell", shell, account])
    entry = pwd.getpwnam(account)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, NODE_FOLDER_MODE)


def create_accounts(layout: ServiceLayout) -> PreparedAccounts:
    """Create the site and node accounts that do not exist yet; the site account joins the
    node account's group (root only)."""
    require_root("--create-users")
    created = []
    for account in (layout.node_user, layout.site_user):
        if not _exists(account):
            _useradd(account)
            created.append(account)
    members = grp.getgrnam(layout.node_user).gr_mem
    if layout.site_user not in members:
        _run(["usermod", "--append", "--groups", layout.node_user, layout.site_user])
    return PreparedAccounts(created=tuple(created))


def untraversable_parents(folder: Path, *, gid: int) -> list[Path]:
    """The folders above ``folder`` that a member of group ``gid`` (not their owner) cannot
    pass through."""
    blocked = []
    for parent in Path(folder).parents:
        info = parent.stat()
        bit = stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            blocked.append(parent)
    return blocked


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(Path(folder) / name, uid, gid, follow_symlinks=False)


def prepare_folders(layout: ServiceLayout) -> None:
    """Give the site folder to the site account (the node group may only traverse it) and
    make the SuperNode's folder with its copies of the two kit files (root only)."""
    require_root("preparing the service folders")
    try:
        site = pwd.getpwnam(layout.site_user)
        node = pwd.getpwnam(layout.node_user)
    except KeyError as missing:
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"account {missing} does not exist: create it, or pass "
                           "--create-users") from None
    root = layout.site.root
    blocked = untraversable_parents(root, gid=node.pw_gid)
    if blocked:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{layout.node_user} cannot reach the agent's socket: "
                           f"{', '.join(map(str, blocked))} not traversable (chmod o+x)")
    kit = load_site_identity(root)
    _chown_tree(root, site.pw_uid, site.pw_gid)
    os.chown(root, site.pw_uid, node.pw_gid)
    os.chmod(root, SITE_FOLDER_MODE)
    for folder in (layout.node_home, layout.node_flower_home):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, node.pw_uid, node.pw_gid)
        os.chmod(folder, NODE_FOLDER_MODE)
    for source, target, mode in ((kit.ca_certificate, layout.node_ca, 0o644),
                                 (kit.node_auth_key, layout.node_key, 0o600)):
        atomic_write_bytes(target, source.read_bytes(), mode=mode)
        os.chown(target, node.pw_uid, node.pw_gid)


__all__ = ["PreparedAccounts", "create_accounts", "prepare_folders", "require_root",
           "untraversable_parents"]
