"""Consent through the site agent: a withdrawal before round k removes the patient from every
training and evaluation batch of rounds k and later; granting consent again brings it back."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import client_app.agent.context as context_module
import client_app.agent.evaluation as evaluation_module
import client_app.agent.training as training_module
from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.governance.consent import grant, history, withdraw
from client_app.store.site_store import SiteStore
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASS = "consent test passphrase"


def _contains(batch: np.ndarray, row: np.ndarray) -> bool:
    return bool(np.any(np.all(np.isclose(batch, row, rtol=0, atol=1e-9), axis=1)))


@pytest.mark.slow
def test_withdrawn_patient_leaves_every_batch_from_the_next_round_and_returns_on_grant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = override(load_plan(bundled_plan_path("breast_cancer")), rounds=3,
                   he_enabled=False).model_dump()
    # An evaluation batch in every round (noisier, so that three fit in the budget).
    raw["evaluation"].update(every_round=True, noise_multiplier=10.0)
    plan = StudyPlan.model_validate(raw)
    fed = local_federation.build(tmp_path / "w", plan, sites=2, ceilings={}, passphrase=PASS)
    site_one = fed.sites[0]
    vault = unlock_vault(site_one, PASS)
    already = {e.patient_id for e in history(vault)}  # the demo's own opt-outs

    # One patient of site-1's training rows and one of its held-out rows.
    train_rows, test_rows = fed.site_split(0)  # as site-1 splits its rows (keyed, per site)
    in_train = next(int(r) for r in train_rows if str(fed.data.patient_ids[r]) not in already)
    in_test = int(test_rows[0])
    patients = [str(fed.data.patient_ids[in_train]), str(fed.data.patient_ids[in_test])]

    captured: list[np.ndarray] = []
    stats: list[tuple[np.ndarray, np.ndarray]] = []
    real_train, real_predict = training_module.train_local, evaluation_module.predict_scores
    real_standardiser = context_module.standardisation_of

    def spy_train(model: Any, X: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        captured.append(np.array(X))
        return real_train(model, X, *args, **kwargs)

    def spy_predict(model: Any, X: np.ndarray) -> np.ndarray:
        captured.append(np.array(X))
        return real_predict(model, X)

    def spy_standardiser(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        result = real_standardiser(*args, **kwargs)
        stats.append(result)
        return result

    monkeypatch.setattr(training_module, "train_local", spy_train)
    monkeypatch.setattr(evaluation_module, "predict_scores", spy_predict)
    monkeypatch.setattr(context_module, "standardisation_of", spy_standardiser)

    batches: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    last_site = fed.sites[-1].name

    def hook(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        kind = {agent_pb2.TASK_TRAIN: "train", agent_pb2.TASK_EVALUATE: "evaluate"}.get(
            request.kind)
        if kind is not None:
            batches[(kind, int(request.round))].extend(captured)
        captured.clear()
        if kind == "evaluate" and site == last_site:
            if request.round == 1:  # between round 1 and round 2
                assert withdraw(vault, patients, actor="operator", note="letter") == 2
            elif request.round == 2:  # between round 2 and round 3
                assert grant(vault, patients, actor="operator") == 2
        return data

    agents = [SiteAgent(unlock_vault(s, PASS)) for s in fed.sites]
    result = run_study(InProcessGrid(agents, reply_hook=hook), workdir=fed.workdir,
                       plan_path=fed.plan_path, run_id="c", expected_sites=2,
                       custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")

    mean, std = stats[0]
    assert all(np.array_equal(m, mean) and np.array_equal(s, std) for m, s in stats)
    train_row = (fed.data.X[in_train] - mean) / std
    test_row = (fed.data.X[in_test] - mean) / std

    def seen(kind: str, round_: int, row: np.ndarray) -> bool:
        assert batches[(kind, round_)], f"no {kind} batch captured in round {round_}"
        return any(_contains(batch, row) for batch in batches[(kind, round_)])

    assert seen("train", 1, train_row) and seen("evaluate", 1, test_row)
    assert not seen("train", 2, train_row) and not seen("evaluate", 2, test_row)
    assert seen("train", 3, train_row) and seen("evaluate", 3, test_row)
    # The withdrawn patients' rows never moved to the other part of the split.
    assert not any(seen("train", r, test_row) for r in (1, 2, 3))
    assert not any(seen("evaluate", r, train_row) for r in (1, 2, 3))

    with SiteStore.open(site_one) as store:
        events = store.events()
    order = {(e.kind, e.details.get("round")): i for i, e in enumerate(events)}
    withdrawn = [i for i, e in enumerate(events) if e.kind == "consent_withdrawn"]
    granted = [i for i, e in enumerate(events) if e.kind == "consent_granted"]
    assert events[withdrawn[-1]].details["count"] == 2
    assert order[("update_sent", 1)] < withdrawn[-1] < order[("update_sent", 2)]
    assert order[("update_sent", 2)] < granted[-1] < order[("update_sent", 3)]
    actions = [(e.action, e.patient_id) for e in history(vault) if e.patient_id in patients]
    assert sorted(actions[:2]) == sorted(("grant", p) for p in patients)
    assert sorted(actions[2:]) == sorted(("withdraw", p) for p in patients)
