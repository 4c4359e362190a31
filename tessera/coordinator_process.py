"""Entry point of a running coordinator: ``python -m tessera.coordinator_process``.

Started detached by ``tessera coordinator start`` (:mod:`tessera.coordinator_control`). It
refuses to run without the coordinator kit's signing key and signed manifest, starts
``flower-superlink`` (TLS and SuperNode authentication from the kit unless ``--insecure``),
writes the Flower CLI's connection, registers every node key of the manifest, serves the
coordinator's audit log to the auditor (mutual TLS) and then watches the SuperLink until
SIGTERM, when it stops everything it started. Its phase ("starting", "running", "failed")
and addresses go to ``run/coordinator.json`` as they change.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import TesseraError, describe
from common.files import atomic_write_bytes
from common.processes import ProcessGroup, flower_env
from common.workdir import CoordinatorDir
from privacy.manifest import CA_CERT_FILE
from tessera.coordinator_ops import (
    coordinator_manifest,
    register_nodes,
    superlink_command,
    write_flwr_config,
)

STATE_FILE = "coordinator.json"
_LOOPBACK = {"0.0.0.0", "::", "127.0.0.1", "localhost", ""}  # noqa: S104 (names, not binds)


def state_path(coordinator: CoordinatorDir) -> Path:
    """Where the running coordinator writes its phase and addresses."""
    return coordinator.process_dir / STATE_FILE


def cli_address(host: str, port: int) -> str:
    """The address the coordinator's own tools dial (loopback when bound to every interface)."""
    return f"127.0.0.1:{port}" if host in _LOOPBACK else f"{host}:{port}"


def reachable(address: str) -> bool:
    """Whether something accepts TCP connections at ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


class _State:
    def __init__(self, path: Path, **fixed: Any) -> None:
        self.path = path
        self.fixed = {"pid": os.getpid(), "started_at": datetime.now(UTC).isoformat(), **fixed}

    def write(self, phase: str, **extra: Any) -> None:
        doc = {**self.fixed, "phase": phase, **extra}
        atomic_write_bytes(self.path, json.dumps(doc, sort_keys=True).encode("utf-8"))


def serve(coordinator: CoordinatorDir, *, host: str, port: int, audit_address: str | None,
          tls: bool) -> None:
    """Run the coordinator's SuperLink and audit service until SIGTERM or a failure."""
    from tessera.audit_service import serve_audit

    coordinator.process_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    address = cli_address(host, port)
    state = _State(state_path(coordinator), superlink=address, host=host, port=port, tls=tls,
                   audit_address=audit_address)
    state.write("starting")
    audit = None
    try:
        manifest = coordinator_manifest(coordinator)
        kit = coordinator.kit_dir.absolute()
        env = flower_env(coordinator.flower_home)
        write_flwr_config(coordinator.flower_home, address,
                          ca=kit / CA_CERT_FILE if tls else None)
        with ProcessGroup(coordinator.logs_dir, env) as procs:
            procs.start("superlink", superlink_command(coordinator, host=host, port=port,
                                                       tls=tls), cwd=coordinator.root)
            procs.wait_until(lambda: reachable(address), what="the SuperLink", timeout=120,
                             watch=["superlink"])
            sites = register_nodes(procs, coordinator, manifest) if tls else []
            if audit_address:
                audit = serve_audit({"coordinator": coordinator.audit_log.absolute()},
                                    address=audit_address, kit_dir=kit)
            state.write("running", federation=manifest.name, registered=sites,
                        sites=list(manifest.site_names))
            print(f"coordinator running: SuperLink {address}", flush=True)
            while True:
                procs.check_alive("superlink")
                time.sleep(1.0)
    except TesseraError as err:
        state.write("failed", error=err.message)
        raise
    except KeyboardInterrupt:
        state.write("stopped")
    finally:
        if audit is not None:
            audit.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    """Run the coordinator of ``--coordinator-dir`` until stopped; the exit status."""
    parser = argparse.ArgumentParser(prog="tessera.coordinator_process",
                                     description="Run a coordinator's SuperLink until stopped.")
    parser.add_argument("--coordinator-dir", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit-address", default=None)
    parser.add_argument("--insecure", action="store_true")
    args = parser.parse_args(argv)
    try:
        serve(CoordinatorDir(args.coordinator_dir), host=args.host, port=args.port,
              audit_address=args.audit_address, tls=not args.insecure)
    except TesseraError as err:
        status, message = describe(err) or (1, str(err))
        print(f"error: {message}", file=sys.stderr, flush=True)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["STATE_FILE", "cli_address", "main", "reachable", "serve", "state_path"]
