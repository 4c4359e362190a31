"""The Tessera ServerApp: Flower's entry point on the coordinator; it only wires config.

The run config names the coordinator folder (``coordinator-dir``; ``workdir`` is the older
form, a work folder whose ``coordinator/`` it means) and the plan file; ``resume-run`` names
the run this Flower run resumes (from its checkpoint, under its run id); ``task = "drift"``
asks the sites for their drift histograms instead of running the study
(:mod:`server.drift_collect`). Replies are pulled promptly (:class:`server.polling.PromptGrid`),
not on Flower's 3 s tick.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from common.workdir import WorkDir
from server.coordinator import run_study
from server.polling import PromptGrid

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the study named in the run config."""
    cfg = context.run_config
    folder = str(cfg.get("coordinator-dir", "") or "")
    where = {"coordinator_dir": Path(folder)} if folder else \
        {"workdir": Path(str(cfg["workdir"]))}
    if str(cfg.get("task", "") or "") == "drift":
        from server.drift_collect import collect_for_run

        collect_for_run(grid, coordinator_dir=Path(folder) if folder else
                        WorkDir(Path(str(cfg["workdir"]))).coordinator.root,
                        plan_path=Path(str(cfg["plan"])), run_id=str(context.run_id),
                        expected_sites=int(cfg.get("expected-sites", 1)),
                        timeout=float(cfg.get("round-timeout", 300.0)))
        return
    resumes = str(cfg.get("resume-run", "") or "")
    run_study(
        PromptGrid(grid),
        **where,
        plan_path=Path(str(cfg["plan"])),
        run_id=resumes or str(context.run_id),
        resumed_by=str(context.run_id) if resumes else "",
        expected_sites=int(cfg.get("expected-sites", 1)),
        custodian=str(cfg.get("custodian", "")),
        timeout=float(cfg.get("round-timeout", 1800.0)),
        loso=bool(cfg.get("loso", False)),
    )
