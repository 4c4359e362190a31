"""Property: whatever studies and releases come, checked then recorded through the store,
the epsilon an independent accountant (dp-accounting's PLD, finer grid, no Tessera code:
scripts/recompute_epsilon.py) computes at the site's delta never crosses the ceiling, and the
ledger never reports less than it."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client_app.store.site_store import LedgerKey, SiteStore
from common.errors import ErrorCode, TesseraError
from privacy.accounting import noise_for_target, plan_sampling
from privacy.mechanisms import DpStep, GaussianRelease, Mechanism

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "recompute_epsilon.py"
#: The independent accountant's grid: ten times finer than the ledger's.
FINE = 1e-4


def _independent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recompute_epsilon", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECOMPUTE = _independent()

plans = st.lists(st.fixed_dictionaries({
    "target": st.floats(0.3, 5.0),
    "delta_share": st.floats(0.01, 1.0),  # the plan's delta as a share of the site's
    "n_train": st.integers(40, 400),
    "batch": st.sampled_from([8, 16, 32, 64]),
    "epochs": st.integers(1, 2),
    "rounds": st.integers(1, 4),
    # Gaussian releases (statistics, counts) slipped in after some rounds: (round, sigma, count)
    "releases": st.lists(st.tuples(st.integers(0, 4), st.floats(0.8, 30.0),
                                   st.integers(1, 4)), max_size=2),
}), min_size=1, max_size=3)


def _check_then_record(store: SiteStore, mechanism: Mechanism, *, kind: str, study: int,
                       round_: int) -> bool:
    """The agent's way: ask first, record if allowed; True if recorded."""
    check = store.check_release("icu", [mechanism])
    release = {"mechanism": mechanism, "kind": kind, "plan_hash": f"{study:064x}",
               "study": f"study-{study}", "run_id": "run", "round": round_,
               "dataset_id": "icu", "dataset_version": "v1"}
    if not check.allowed:
        assert check.projected > check.ceiling
        with pytest.raises(TesseraError) as info:  # recording anyway is refused, atomically
            store.record_release(**release)
        assert info.value.code is ErrorCode.BUDGET_EXCEEDED
        event(f"{kind} refused")
        return False
    store.record_release(**release)
    return True


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(studies=plans, ceiling=st.floats(0.5, 6.0),
       site_delta=st.sampled_from([1e-6, 1e-5, 1e-4, 1e-3]))
def test_the_ceiling_is_never_crossed_as_an_independent_accountant_measures_it(
        studies: list[dict], ceiling: float, site_delta: float) -> None:
    with tempfile.TemporaryDirectory() as folder, \
            SiteStore(f"sqlite:///{folder}/site.db", ledger_key=LedgerKey(b"k" * 32)) as store:
        store.set_ceiling(ceiling, actor="ops", confirm_raise=True)
        store.set_delta(site_delta, actor="ops")
        for number, plan in enumerate(studies):
            rate, steps = plan_sampling(n_train=plan["n_train"], batch_size=plan["batch"],
                                        epochs=plan["epochs"])
            noise = noise_for_target(target_epsilon=plan["target"],
                                     delta=site_delta * plan["delta_share"],
                                     sample_rate=rate, steps=steps * plan["rounds"])
            for round_ in range(1, plan["rounds"] + 1):
                if not _check_then_record(store, DpStep(noise, rate, steps), kind="dp_sgd",
                                          study=number, round_=round_):
                    break  # the site refuses the rest of this study
                for _, sigma, count in (r for r in plan["releases"] if r[0] == round_):
                    _check_then_record(store, GaussianRelease(sigma, count),
                                       kind="statistics", study=number, round_=round_)
        entries = [e.to_json() for e in store.ledger()]
        reported = store.projected_epsilon("icu", [])
        assert store.verify_ledger().ok
    independent = RECOMPUTE.epsilon(entries, site_delta, FINE)
    assert independent <= ceiling
    assert reported >= independent
    assert all(e["delta"] == site_delta for e in entries)
