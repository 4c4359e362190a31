"""Entry point of the coordinator image: the SuperLink and the coordinator's audit service.

Starts ``flower-superlink`` with TLS, SuperNode authentication, its own database and runtime
dependency installation disabled (the ServerApp runs inside it, through Flower's SuperExec),
registers every site's node-authentication key from the coordinator kit, and serves the
coordinator's audit log read-only to the auditor (``tessera audit serve``, mutual TLS). Both
stop together. It runs as the image's unprivileged ``tessera`` account.

Environment: ``TESSERA_COORDINATOR_DIR`` (default ``/srv/tessera/coordinator``, holding the
coordinator kit in ``kit/`` as ``tessera federation init`` writes it), ``TESSERA_HOST``
(default ``0.0.0.0``), ``TESSERA_SUPERLINK_PORT`` (default 9092), ``TESSERA_AUDIT_PORT``
(default 9095; empty: no audit service).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from supervise import Children

from common.processes import flower_env, port_open
from common.workdir import CoordinatorDir

CONNECTION = "tessera"


def _superlink(layout: CoordinatorDir, host: str, port: int) -> list[str]:
    kit = layout.kit_dir
    return [str(Path(sys.executable).parent / "flower-superlink"), "--host", host,
            "--port", str(port), "--database", str(layout.superlink_db),
            "--disable-runtime-dependency-installation",
            "--ssl-ca-certfile", str(kit / "ca.pem"), "--ssl-certfile", str(kit / "superlink.pem"),
            "--ssl-keyfile", str(kit / "superlink.key"), "--enable-supernode-auth"]


def _register_nodes(layout: CoordinatorDir, port: int, env: dict[str, str]) -> None:
    """Register each site's node key (a key registered before is reported and skipped)."""
    home = layout.flower_home
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\nroot-certificates = "{layout.kit_dir / "ca.pem"}"\n',
        encoding="utf-8")
    for key in sorted((layout.kit_dir / "node-auth").glob("*.pub")):
        done = subprocess.run([str(Path(sys.executable).parent / "flwr"), "supernode",
                               "register", str(key), CONNECTION], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        outcome = "registered" if done.returncode == 0 else "not registered (already?)"
        print(f"node key {key.stem}: {outcome}", file=sys.stderr, flush=True)


def main() -> int:
    layout = CoordinatorDir(Path(os.environ.get("TESSERA_COORDINATOR_DIR",
                                                "/srv/tessera/coordinator")))
    if not (layout.kit_dir / "superlink.pem").is_file():
        print(f"error: no coordinator kit in {layout.kit_dir} (tessera federation init)",
              file=sys.stderr)
        return 2
    host = os.environ.get("TESSERA_HOST", "0.0.0.0")  # noqa: S104 (the container's network)
    port = int(os.environ.get("TESSERA_SUPERLINK_PORT", "9092"))
    audit_port = os.environ.get("TESSERA_AUDIT_PORT", "9095")
    env = flower_env(layout.flower_home)
    children = Children()
    children.start("superlink", _superlink(layout, host, port), env=env, cwd=layout.root)
    deadline = time.monotonic() + 120
    while not port_open(port):
        if children.procs["superlink"].poll() is not None or time.monotonic() > deadline:
            children.stop()
            print("error: the SuperLink did not start", file=sys.stderr)
            return 1
        time.sleep(0.2)
    _register_nodes(layout, port, env)
    if audit_port:
        children.start("audit", [sys.executable, "-m", "tessera.cli", "audit", "serve",
                                 "--log", f"coordinator={layout.audit_log}",
                                 "--address", f"{host}:{audit_port}",
                                 "--kit", str(layout.kit_dir)], env=env)
    return children.run()


if __name__ == "__main__":
    sys.exit(main())
