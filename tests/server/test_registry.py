"""The model registry: migrations, versions per study, hashes and tamper detection."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from common.errors import ErrorCode, TesseraError
from common.sql import alembic_config, head_revision, make_engine
from common.workdir import WorkDir
from server.migrations import MIGRATIONS_DIR, CoordinatorTable
from server.registry import ModelRegistry, ModelVersion

PLAN = "d" * 64


def _register(registry: ModelRegistry, *, study: str = "sepsis", data: bytes = b"weights-1",
              metrics: dict[str, float] | None = None) -> ModelVersion:
    return registry.register(
        study=study, plan_hash=PLAN, rounds=5, model_bytes=data,
        metrics=metrics if metrics is not None else {"auc": 0.81},
        epsilon_per_site={"h1": 2.5, "h2": 3.0},
        lineage={"datasets": {"h1": "icu@v3"}, "card": "model card text"},
    )


@pytest.fixture
def registry(tmp_path: Path):
    with ModelRegistry.open(tmp_path / "coordinator") as opened:
        yield opened


def test_migrations_create_the_schema_and_stamp_the_head(tmp_path: Path) -> None:
    ModelRegistry.open(tmp_path / "coordinator").close()
    db = tmp_path / "coordinator" / "coordinator.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "coordinator" / "models").stat().st_mode) == 0o700
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"model_versions", "alembic_version"} <= tables
    assert version == [(head_revision(MIGRATIONS_DIR),)] == [("0005",)]


def test_migrations_describe_exactly_the_models(tmp_path: Path) -> None:
    ModelRegistry.open(tmp_path / "coordinator").close()
    engine = make_engine(f"sqlite:///{tmp_path / 'coordinator' / 'coordinator.db'}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), CoordinatorTable.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_versions_increment_per_study(registry: ModelRegistry) -> None:
    first = _register(registry, data=b"one")
    second = _register(registry, data=b"two")
    other = _register(registry, study="stroke", data=b"three")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert second.path == "models/sepsis-v2.json"
    assert second.sha256 == hashlib.sha256(b"two").hexdigest()
    assert registry.latest("sepsis") == second
    assert registry.get("sepsis", 1) == first
    assert registry.list() == [first, second, other]
    assert registry.list(study="stroke") == [other]


def test_registered_model_keeps_its_metadata_and_bytes(tmp_path: Path) -> None:
    with ModelRegistry.open(tmp_path / "coordinator") as registry:
        registered = _register(registry, data=b"\x00model\xff")
    model_file = tmp_path / "coordinator" / registered.path
    assert stat.S_IMODE(model_file.stat().st_mode) == 0o600
    with ModelRegistry.open(tmp_path / "coordinator") as reopened:
        again = reopened.get("sepsis", 1)
        assert again == registered
        assert reopened.load_bytes(again) == b"\x00model\xff"
    data = again.to_json()
    assert data["metrics"] == {"auc": 0.81}
    assert data["epsilon_per_site"] == {"h1": 2.5, "h2": 3.0}
    assert data["lineage"] == {"datasets": {"h1": "icu@v3"}, "card": "model card text"}
    assert isinstance(data["at"], str)


def test_tampered_model_file_is_detected(tmp_path: Path, registry: ModelRegistry) -> None:
    registered = _register(registry, data=b"honest weights")
    (tmp_path / "coordinator" / registered.path).write_bytes(b"tampered weights")
    with pytest.raises(TesseraError, match="does not match its registered sha256") as info:
        registry.load_bytes(registered)
    assert info.value.code is ErrorCode.DATA_INVALID


def test_missing_model_file_is_reported(tmp_path: Path, registry: ModelRegistry) -> None:
    registered = _register(registry)
    (tmp_path / "coordinator" / registered.path).unlink()
    with pytest.raises(TesseraError, match="missing") as info:
        registry.load_bytes(registered)
    assert info.value.code is ErrorCode.NOT_FOUND


def test_unknown_model_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(TesseraError) as info:
        registry.get("sepsis", 1)
    assert info.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(TesseraError, match="no model registered"):
        registry.latest("sepsis")


@pytest.mark.parametrize("study", ["../escape", "a/b", "", ".hidden"])
def test_study_names_that_are_not_file_names_are_refused(
    tmp_path: Path, registry: ModelRegistry, study: str
) -> None:
    with pytest.raises(TesseraError, match="study") as info:
        _register(registry, study=study)
    assert info.value.code is ErrorCode.PLAN_INVALID
    assert list((tmp_path / "coordinator" / "models").iterdir()) == []
    assert registry.list() == []


def test_non_finite_metrics_are_refused(registry: ModelRegistry) -> None:
    with pytest.raises(TesseraError, match="metrics") as info:
        _register(registry, metrics={"auc": float("nan")})
    assert info.value.code is ErrorCode.DATA_INVALID
    assert registry.list() == []


def test_two_registries_on_one_folder_share_versions(tmp_path: Path) -> None:
    with ModelRegistry.open(tmp_path / "c") as first, ModelRegistry.open(tmp_path / "c") as second:
        assert _register(first).version == 1
        assert _register(second).version == 2
        assert [mv.version for mv in first.list()] == [1, 2]


def test_a_model_that_misses_a_gate_is_registered_not_promotable_with_reasons(
        registry: ModelRegistry) -> None:
    passed = _register(registry)
    failed = registry.register(
        study="sepsis", plan_hash=PLAN, rounds=5, model_bytes=b"w2", metrics={"auc": 0.6},
        epsilon_per_site={}, lineage={}, promotable=False,
        promotion_reasons=["min_auc: auc 0.6000 is below the minimum 0.8"])
    assert (passed.promotable, passed.promotion_reasons) == (True, ())
    again = registry.get("sepsis", 2)
    assert again == failed
    assert again.promotable is False
    assert again.promotion_reasons == ("min_auc: auc 0.6000 is below the minimum 0.8",)
    assert again.to_json()["promotion_reasons"] == [
        "min_auc: auc 0.6000 is below the minimum 0.8"]


@pytest.mark.parametrize(("promotable", "reasons"), [(False, []), (True, ["a reason"]),
                                                      (False, [""])])
def test_a_verdict_and_its_reasons_must_agree(registry: ModelRegistry, promotable: bool,
                                              reasons: list[str]) -> None:
    with pytest.raises(TesseraError, match="promot") as info:
        registry.register(study="sepsis", plan_hash=PLAN, rounds=1, model_bytes=b"w",
                          metrics={}, epsilon_per_site={}, lineage={}, promotable=promotable,
                          promotion_reasons=reasons)
    assert info.value.code is ErrorCode.DATA_INVALID
    assert registry.list() == []


def _old_registry(root: Path, lineages: list[str]) -> None:
    """A registry folder as revision 0001 left it, with one model per lineage."""
    from alembic import command

    root.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{root / 'coordinator.db'}")
    try:
        with engine.begin() as connection:
            config = alembic_config(MIGRATIONS_DIR)
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            for version, lineage in enumerate(lineages, start=1):
                connection.exec_driver_sql(
                    "INSERT INTO model_versions (at, study, version, plan_hash, rounds, sha256,"
                    " path, metrics, epsilon, lineage) VALUES ('2025-01-01 00:00:00', 'old', "
                    f"{version}, 'p', 1, 's', 'models/old-v{version}.json', '{{}}', '{{}}', ?)",
                    (lineage,))
    finally:
        engine.dispose()


def test_an_old_registry_is_migrated_and_keeps_the_verdicts_its_lineage_recorded(
        tmp_path: Path) -> None:
    failed = '{"kpi_gates": {"promotable": false, "reasons": ["max_ece: too high"]}}'
    passed = '{"kpi_gates": {"promotable": true, "reasons": [], "checks": {}}}'
    _old_registry(tmp_path / "c", [failed, passed, '{"run_id": "r"}'])
    with ModelRegistry.open(tmp_path / "c") as registry:
        models = registry.list()
    assert [(m.promotable, m.promotion_reasons) for m in models] == [
        (False, ("max_ece: too high",)), (True, ()), (None, ())]
    assert models[0].lineage["kpi_gates"]["promotable"] is False


def test_the_registry_keeps_its_files_where_the_work_folder_layout_says(tmp_path: Path) -> None:
    coordinator = WorkDir(tmp_path).coordinator
    with ModelRegistry.open(coordinator.root) as registry:
        mv = _register(registry, data=b"{}")
    assert coordinator.db_path.is_file()
    assert coordinator.root / mv.path == coordinator.models_dir / "sepsis-v1.json"
    assert (coordinator.root / mv.path).read_bytes() == b"{}"
    assert stat.S_IMODE((coordinator.root / mv.path).stat().st_mode) == 0o600


def test_the_newest_drift_check_says_whether_retraining_is_recommended(
        registry: ModelRegistry) -> None:
    model, other = _register(registry, data=b"one"), _register(registry, data=b"two")
    assert not registry.retraining_recommended(model) and registry.drift_checks("sepsis", 1) == []
    crossed = registry.record_drift(model, worst_psi=0.6, threshold=0.25,
                                    details={"psi": {"age": 0.6}}, draft_plan="studies/x.toml")
    assert crossed.retraining_recommended and registry.retraining_recommended(model)
    assert not registry.retraining_recommended(other)
    registry.record_drift(model, worst_psi=0.1, threshold=0.25, details={})
    assert not registry.retraining_recommended(model)  # the newest check counts
    assert [c.draft_plan for c in registry.drift_checks("sepsis", 1)] == ["studies/x.toml", ""]
    with pytest.raises(TesseraError) as err:
        registry.record_drift(model, worst_psi=float("nan"), threshold=0.25, details={})
    assert err.value.code == ErrorCode.DATA_INVALID and "worst_psi" in err.value.message
