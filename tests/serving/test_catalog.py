"""What a service serves: promotable models only (unless allowed), a pinned version, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from server.registry import ModelRegistry
from serving.catalog import Catalog
from serving.releases import ReleaseStore, Thresholds
from tests.registered import fixed_model_doc


def _doc() -> dict[str, object]:
    return fixed_model_doc(study="demo")


def _register(root: Path, *, promotable: bool) -> None:
    with ModelRegistry.open(root) as registry:
        registry.register(study="demo", plan_hash="b" * 64, rounds=1,
                          model_bytes=json.dumps(_doc()).encode(), metrics={},
                          epsilon_per_site={}, lineage={}, promotable=promotable,
                          promotion_reasons=() if promotable else ("min_auc: 0.6 < 0.9",))


def test_unpromotable_models_are_served_only_when_allowed(tmp_path: Path) -> None:
    _register(tmp_path, promotable=False)
    with pytest.raises(TesseraError) as info:
        Catalog(tmp_path)
    assert info.value.code == ErrorCode.PERMISSION_DENIED
    assert "--allow-unpromotable" in info.value.message
    catalog = Catalog(tmp_path, allow_unpromotable=True)
    try:
        assert [(m.study, m.version) for m in catalog.served()] == [("demo", 1)]
    finally:
        catalog.close()


def test_newest_promotable_version_is_served_and_its_export_recorded(tmp_path: Path) -> None:
    _register(tmp_path, promotable=True)
    _register(tmp_path, promotable=False)
    catalog = Catalog(tmp_path)
    try:
        (served,) = catalog.served()
        assert served.version == 1
        with ModelRegistry.open(tmp_path) as registry:
            (export,) = registry.exports("demo", 1)
        assert export.sha256 == served.onnx_sha256 and export.parity["passed"] is True
    finally:
        catalog.close()


def test_a_pinned_version_wins_over_the_release_state(tmp_path: Path) -> None:
    for _ in range(3):
        _register(tmp_path, promotable=True)
    with ReleaseStore(tmp_path) as store:
        store.start("demo", stable=2, candidate=3, mode="canary", percent=50.0,
                    thresholds=Thresholds(), actor="coordinator")
    pinned = Catalog(tmp_path, study="demo", version=1)
    following = Catalog(tmp_path)
    try:
        assert [m.version for m in pinned.served()] == [1]
        assert [m.version for m in following.served()] == [2, 3]
    finally:
        pinned.close()
        following.close()
    with pytest.raises(TesseraError):
        Catalog(tmp_path, version=1)  # --version needs --study
