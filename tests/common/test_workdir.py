"""The work folder layout: every path of DESIGN.md section 5, each name defined once."""

from __future__ import annotations

from pathlib import Path

from common import workdir as layout
from common.workdir import CoordinatorDir, SiteDir, WorkDir, site_config, sqlite_url

ROOT = Path("/srv/work")
HASH = "ab" * 32


def _relative(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def test_workdir_holds_the_manifest_the_parties_the_report_and_the_logs() -> None:
    work = WorkDir(ROOT)
    assert _relative(work.manifest_path) == "federation.toml"
    assert _relative(work.coordinator.root) == "coordinator"
    assert _relative(work.sites_dir) == "sites"
    assert work.site("h1") == SiteDir(root=ROOT / "sites" / "h1", name="h1")
    assert _relative(work.site("h1").root) == WorkDir.site_folder("h1") == "sites/h1"
    assert _relative(work.auditor.root) == "auditor"
    assert _relative(work.report_path) == "report.json"
    assert _relative(work.logs_dir) == "logs"


def test_coordinator_folder_layout() -> None:
    coordinator = WorkDir(ROOT).coordinator
    paths = {
        "kit": coordinator.kit_dir, "he": coordinator.he_dir,
        "studies": coordinator.studies_dir,
        f"studies/{HASH[:16]}.toml": coordinator.plan_path(HASH),
        "runs": coordinator.runs_dir, "runs/r-1": coordinator.run("r-1").root,
        "runs/r-1/progress.jsonl": coordinator.run("r-1").progress_path,
        "runs/r-1/result.json": coordinator.run("r-1").result_path,
        "coordinator.db": coordinator.db_path, "models": coordinator.models_dir,
        "cards/sepsis-v2": coordinator.card_dir("sepsis", 2),
        "superlink.db": coordinator.superlink_db, "audit/coordinator.log": coordinator.audit_log,
        "app": coordinator.app_dir, "run-config.toml": coordinator.run_config_path,
        "flwr-home": coordinator.flower_home,
    }
    for expected, path in paths.items():
        assert _relative(path, coordinator.root) == expected
    assert coordinator.db_url == sqlite_url(coordinator.db_path) == \
        f"sqlite:///{ROOT}/coordinator/coordinator.db"
    assert coordinator.root / CoordinatorDir.model_file("sepsis", 3) == \
        coordinator.models_dir / "sepsis-v3.json"


def test_site_folder_layout() -> None:
    site = WorkDir(ROOT).site("h1")
    paths = {
        "site.toml": site.config_path, "site.db": site.db_path, "keys": site.keys_dir,
        "data": site.data_dir, "audit": site.audit_dir, "audit/site.log": site.audit_log,
        "models": site.models_dir, "kit": site.kit_dir, "run": site.run_dir,
        "logs": site.logs_dir, "agent.sock": site.socket_path, "outbox": site.outbox_dir,
        f"outbox/{HASH[:16]}": site.outbox_for(HASH), "flwr-home": site.flower_home,
    }
    for expected, path in paths.items():
        assert _relative(path, site.root) == expected
    assert site_config(site.root) == site.config_path
    assert site.db_url == f"sqlite:///{ROOT}/sites/h1/site.db"


def test_auditor_folder_layout() -> None:
    auditor = WorkDir(ROOT).auditor
    assert _relative(auditor.kit_dir, auditor.root) == "kit"
    assert _relative(auditor.pulled_log("site-1"), auditor.root) == "pulled/site-1.log"


def test_every_layout_name_is_defined_once() -> None:
    names = [value for key, value in vars(layout).items()
             if key.isupper() and isinstance(value, str)]
    assert len(names) > 20
    assert len(set(names)) == len(names)
