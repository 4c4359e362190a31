"""The one builder of a site's process command lines: the site agent, the SuperNode and the
node (agent + SuperNode) that ``tessera site node start`` detaches.

Processes start through importable entry points (``python -m client_app.node.<module>``), never
by re-entering the ``tessera`` command line, so the import contracts see every dependency.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from client_app.node.passphrase_fd import PASSPHRASE_FD_OPTION
from common.processes import free_port

if TYPE_CHECKING:  # the site store's database layer: not needed to build a command line
    from client_app.store.folder import SiteDir

#: Entry-point modules (``python -m``) of the site's processes.
AGENT_MODULE = "client_app.node.agent_process"
NODE_MODULE = "client_app.node.run"
#: How every entry point is told its site folder (always an absolute path).
SITE_DIR_OPTION = "--site-dir"


def python_module(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def venv_binary(name: str) -> str:
    """A console script installed beside this interpreter (``flower-supernode``, ``flwr``)."""
    return str(Path(sys.executable).parent / name)


def agent_command(site: SiteDir, *, socket_group: str | None = None) -> list[str]:
    """The site agent of ``site`` (start it with its passphrase on a pipe:
    :func:`client_app.node.passphrase_fd.start_with_passphrase`); ``socket_group`` also lets
    that group use its socket (a SuperNode under another account)."""
    group = [] if socket_group is None else ["--socket-group", socket_group]
    return python_module(AGENT_MODULE, "--site-dir", str(site.root), *group)


def node_command(site: SiteDir, superlink: str, *, insecure: bool,
                 passphrase_fd: int | None = None) -> list[str]:
    """The whole node (agent + SuperNode) of ``site``, as ``tessera site run`` runs it;
    ``passphrase_fd`` names the inherited pipe that carries the site passphrase."""
    args = [SITE_DIR_OPTION, str(Path(site.root).absolute()), "--superlink", superlink]
    if insecure:
        args.append("--insecure")
    if passphrase_fd is not None:
        args += [PASSPHRASE_FD_OPTION, str(passphrase_fd)]
    return python_module(NODE_MODULE, *args)


def supernode_command(site: SiteDir, superlink: str, *, insecure: bool,
                      port: int | None = None,
                      kit_files: tuple[Path, Path] | None = None) -> list[str]:
    """The ``flower-supernode`` of ``site``: TLS and node authentication from the site's kit
    unless ``insecure``; its ClientApp shim reaches the agent on the site's socket.
    ``kit_files`` (CA certificate, node-authentication key) names the SuperNode's own copies
    when it runs under an account that cannot read the site's kit."""
    args = [venv_binary("flower-supernode"), "--superlink", superlink,
            "--port", str(port or free_port()),
            "--node-config", f"agent-address='unix:{site.socket_path.resolve()}'"]
    if insecure:
        return [*args, "--insecure"]
    if kit_files is None:
        from client_app.custody.kit import load_site_identity

        kit = load_site_identity(site.root)
        kit_files = (kit.ca_certificate, kit.node_auth_key)
    return [*args, "--root-certificates", str(kit_files[0]),
            "--auth-supernode-private-key", str(kit_files[1])]


def default_superlink(site: SiteDir) -> str:
    """The SuperLink address the site's signed manifest names."""
    from client_app.custody.kit import load_site_identity

    manifest = load_site_identity(site.root).manifest
    entry = manifest.site(site.name)
    host = entry.superlink_address or manifest.superlink_address
    return f"{host}:{manifest.superlink_port}"
