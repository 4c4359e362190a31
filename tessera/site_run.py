"""``tessera site run``: a hospital's two long-lived processes, the site agent and SuperNode.

TLS and SuperNode authentication are on by default, from the site's imported kit (the
federation CA and the site's node-authentication key). ``--insecure`` exists only for
development and says so loudly on every start. Both processes are stopped together, also on
Ctrl-C or when either one fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console

from client_app.kit import load_site_identity
from client_app.site_dir import SiteDir, open_site_dir
from client_app.vault import unlock_vault
from privacy.passphrase import PASSPHRASE_ENV_VAR, passphrase_from_environment
from tessera.processes import ProcessGroup, flower_env, free_port

INSECURE_WARNING = ("WARNING: --insecure: no TLS and no node authentication. Updates and "
                    "the node's identity are unprotected; use only for development.")


def supernode_command(site: SiteDir, superlink: str, *, insecure: bool) -> list[str]:
    """The flower-supernode command line for this site."""
    binary = str(Path(sys.executable).parent / "flower-supernode")
    args = [binary, "--superlink", superlink, "--port", str(free_port()),
            "--node-config", f"agent-address='unix:{site.socket_path.resolve()}'"]
    if insecure:
        return [*args, "--insecure"]
    kit = load_site_identity(site.root)
    return [*args, "--root-certificates", str(kit.ca_certificate),
            "--auth-supernode-private-key", str(kit.node_auth_key)]


def default_superlink(site: SiteDir) -> str:
    """The SuperLink address the site's signed manifest names."""
    manifest = load_site_identity(site.root).manifest
    entry = manifest.site(site.name)
    host = entry.superlink_address or manifest.superlink_address
    return f"{host}:{manifest.superlink_port}"


def run_site(site_dir: Path, *, superlink: str | None, insecure: bool,
             console: Console) -> None:
    """Start the agent and the SuperNode; return when either stops or on Ctrl-C."""
    site = open_site_dir(site_dir)
    if insecure:
        console.print(f"[bold red]{INSECURE_WARNING}[/]")
    passphrase = passphrase_from_environment()
    unlock_vault(site, passphrase)  # fail early, before any process starts
    address = superlink or default_superlink(site)
    command = supernode_command(site, address, insecure=insecure)
    env = flower_env(site.root / "flwr-home")
    with ProcessGroup(site.root / "logs", env) as procs:
        # Only the agent, which owns data and keys, receives the passphrase.
        procs.start("agent", [sys.executable, "-m", "tessera.cli", "site", "agent",
                              "--site-dir", str(site.root)],
                    env={PASSPHRASE_ENV_VAR: passphrase})
        procs.wait_until(site.socket_path.exists, what="the site agent", timeout=120,
                         watch=["agent"])
        procs.start("supernode", command)
        console.print(f"site {site.name}: agent and SuperNode running, SuperLink {address}"
                      f" ({'insecure' if insecure else 'TLS, node authentication'})")
        while True:
            procs.check_alive()
            time.sleep(1.0)


__all__ = ["INSECURE_WARNING", "run_site"]
