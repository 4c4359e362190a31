"""Release state: sticky canary routing, promote, rollback, history, and the guard's verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from common.errors import ErrorCode, TesseraError
from server.registry import ModelRegistry
from serving.guard import ReleaseGuard
from serving.releases import Release, ReleaseStore, Thresholds


def _release(percent: float = 10.0, *, candidate: int | None = 2,
             thresholds: Thresholds | None = None) -> Release:
    return Release(study="s", stable=1, candidate=candidate, mode="canary", percent=percent,
                   generation=3, thresholds=thresholds or Thresholds(min_requests=20),
                   updated_at=datetime.now(UTC))


def test_canary_routing_is_sticky_per_key_and_takes_its_share() -> None:
    release = _release(10.0)
    keys = [f"patient-{i}" for i in range(5000)]
    first = [release.route(k) for k in keys]
    assert first == [release.route(k) for k in keys]
    share = first.count(2) / len(keys)
    assert 0.08 < share < 0.12
    assert {release.route(None) for _ in range(400)} == {1, 2}
    assert {_release(10.0, candidate=None).route(k) for k in keys[:50]} == {1}


@pytest.fixture
def store(tmp_path: Path):
    ModelRegistry.open(tmp_path / "c").close()
    with ReleaseStore(tmp_path / "c") as opened:
        yield opened


def test_start_promote_rollback_are_recorded_in_order(store: ReleaseStore) -> None:
    started = store.start("s", stable=1, candidate=2, mode="canary", percent=25.0,
                          thresholds=Thresholds(), actor="coordinator")
    assert (started.stable, started.candidate, started.percent) == (1, 2, 25.0)
    with pytest.raises(TesseraError) as info:
        store.start("s", stable=1, candidate=3, mode="canary", percent=5.0,
                    thresholds=Thresholds(), actor="coordinator")
    assert "already being released" in info.value.message
    promoted = store.promote("s", actor="coordinator")
    assert (promoted.stable, promoted.candidate) == (2, None)
    store.start("s", stable=2, candidate=3, mode="blue_green", percent=50.0,
                thresholds=Thresholds(), actor="coordinator")
    state = store.get("s")
    assert state is not None and state.percent == 0.0 and state.route("k") == 2
    rolled = store.rollback("s", actor="coordinator", reason="operator decision")
    assert rolled is not None and (rolled.stable, rolled.candidate) == (2, None)
    assert [e.action for e in store.events("s")] == [
        "model_release", "model_promoted", "model_release", "model_rolled_back"]
    assert rolled.generation == 4


def test_automatic_rollback_never_undoes_a_newer_state(store: ReleaseStore) -> None:
    old = store.start("s", stable=1, candidate=2, mode="canary", percent=10.0,
                      thresholds=Thresholds(), actor="coordinator")
    store.promote("s", actor="coordinator")
    store.start("s", stable=2, candidate=3, mode="canary", percent=10.0,
                thresholds=Thresholds(), actor="coordinator")
    assert store.rollback("s", actor="prediction-service", reason="x",
                          expected_generation=old.generation) is None
    state = store.get("s")
    assert state is not None and state.candidate == 3


def test_nothing_to_promote_and_bad_percent_are_refused(store: ReleaseStore) -> None:
    with pytest.raises(TesseraError) as info:
        store.promote("s", actor="coordinator")
    assert info.value.code == ErrorCode.NOT_FOUND
    for percent in (0.0, 100.0, float("nan")):
        with pytest.raises(TesseraError):
            store.start("s", stable=1, candidate=2, mode="canary", percent=percent,
                        thresholds=Thresholds(), actor="coordinator")
    with pytest.raises(TesseraError):
        Thresholds(max_error_rate=1.5)


def _feed(guard: ReleaseGuard, release: Release, version: int, n: int, *,
          scores: np.ndarray, errors: int = 0) -> None:
    for i in range(n):
        guard.observe(release, version, error=i < errors, scores=None if i < errors else scores)


def test_guard_rolls_back_on_error_rate_only_after_min_requests() -> None:
    release = _release(thresholds=Thresholds(max_error_rate=0.1, min_requests=20))
    guard = ReleaseGuard()
    _feed(guard, release, 2, 10, scores=np.array([0.3]), errors=5)
    assert guard.verdict(release) is None  # 10 requests < 20
    _feed(guard, release, 2, 10, scores=np.array([0.3]))
    verdict = guard.verdict(release)
    assert verdict is not None and verdict.measured["error_rate"] == pytest.approx(0.25)


def test_guard_rolls_back_on_score_shift_but_not_on_the_same_scores() -> None:
    rng = np.random.default_rng(0)
    release = _release()
    healthy, shifted = ReleaseGuard(), ReleaseGuard()
    for _ in range(40):
        healthy.observe(release, 1, error=False, scores=rng.beta(2, 5, 5))
        healthy.observe(release, 2, error=False, scores=rng.beta(2, 5, 5))
        shifted.observe(release, 1, error=False, scores=rng.beta(2, 5, 5))
        shifted.observe(release, 2, error=False, scores=rng.beta(5, 2, 5))
    assert healthy.verdict(release) is None
    verdict = shifted.verdict(release)
    assert verdict is not None and verdict.measured["score_psi"] > 1.0
    shifted.forget("s")
    assert shifted.verdict(release) is None
