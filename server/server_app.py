"""The Tessera ServerApp: Flower's entry point on the coordinator; it only wires config."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.coordinator import run_study

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the study named in the run config."""
    cfg = context.run_config
    run_study(
        grid,
        workdir=Path(str(cfg["workdir"])),
        plan_path=Path(str(cfg["plan"])),
        run_id=str(context.run_id),
        expected_sites=int(cfg.get("expected-sites", 1)),
        custodian=str(cfg.get("custodian", "")),
        timeout=float(cfg.get("round-timeout", 1800.0)),
        loso=bool(cfg.get("loso", False)),
    )
