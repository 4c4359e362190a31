"""Encrypted evaluation counts: summed as ciphertexts, opened by one site, equal to plaintext."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from client_app.agent.envelopes import counts_to_proto
from client_app.agent.site_agent import SiteAgent
from client_app.custody.ckks_keys import load_secret_context
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.learning.site_data import load_split, standardise
from client_app.learning.statistics import standardisation_of
from common.eval_counts import count_held_out, fixed_groups, merge_small_cells
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import (
    StudyPlan,
    bundled_plan_path,
    load_plan,
    override,
    plan_hash,
    statistics_length,
)
from privacy.ckks import decrypt_vector
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from server.federated_eval import sum_counts
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASS = "evaluation counts passphrase"
#: Metrics that come from whole-number counts only: they must agree exactly.
COUNT_METRICS = ("n", "accuracy", "precision", "recall", "f1", "specificity", "auc",
                 "average_precision", "ece", "fairness", "roc", "calibration")


def _plan(*, he: bool, categories: list[str] | None) -> StudyPlan:
    raw = override(load_plan(bundled_plan_path("diabetes")), rounds=1, he_enabled=he).model_dump()
    raw["privacy"]["dp"] = False  # DP-SGD's noise search is slow and beside the point here
    columns = {k: v for k, v in (raw["dataset"].get("columns") or {}).items() if k != "sex"}
    if categories is not None:
        columns["sex"] = {"type": "category", "categories": categories}
    raw["dataset"]["columns"] = columns or None
    return StudyPlan.model_validate(raw)


@dataclass
class Study:
    fed: local_federation.LocalFederation
    result: dict
    vaults: dict[str, SiteVault]
    exchanges: list[tuple[str, agent_pb2.TaskRequest, agent_pb2.TaskReply]] = field(
        default_factory=list)


def _run(root: Path, plan: StudyPlan) -> Study:
    fed = local_federation.build(root, plan, sites=3, ceilings={}, passphrase=PASS)
    vaults = {s.name: unlock_vault(s, PASS) for s in fed.sites}
    exchanges: list = []

    def capture(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        copy = agent_pb2.TaskRequest()
        copy.CopyFrom(request)
        exchanges.append((site, copy, agent_pb2.TaskReply.FromString(data)))
        return data

    grid = InProcessGrid([SiteAgent(v) for v in vaults.values()], reply_hook=capture)
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="ev",
                       expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    return Study(fed, result, vaults, exchanges)


@pytest.fixture(scope="module")
def he_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return _run(tmp_path_factory.mktemp("he") / "w", _plan(he=True, categories=["1", "2"]))


def _full_sets(study: Study) -> dict[tuple[int, int], agent_pb2.ContributionSet]:
    """Every contribution set forwarded in full during the run, by (kind, round)."""
    sets = {}
    for _, req, _ in study.exchanges:
        for cset in (req.model, req.stats, req.counts):
            if cset.envelopes:
                sets[(int(cset.kind), int(cset.round))] = cset
    return sets


def _mean(cset: agent_pb2.ContributionSet, secret: bytes | None, length: int) -> np.ndarray:
    total = np.zeros(length)
    for env in cset.envelopes:
        total += (decrypt_vector(secret, list(env.ciphertexts), length=length)
                  if env.encrypted else np.asarray(env.values))
    return total / sum(e.example_count for e in cset.envelopes)


def own_counts(vault: SiteVault, plan: StudyPlan, study: Study, round_: int):
    """What the site's predictions of the round's global model give, counted in plaintext."""
    secret = load_secret_context(vault, plan_hash(plan)) if plan.he.enabled else None
    sets = _full_sets(study)
    split = load_split(vault, plan)
    stats = sets[(agent_pb2.ENVELOPE_STATS, 0)]
    rows = sum(e.example_count for e in stats.envelopes)
    sums = _mean(stats, secret, statistics_length(plan)) * rows
    mean, std = standardisation_of(plan, sums,
                                   float(sum(e.example_count for e in stats.envelopes)))
    X = standardise(split.test.X, mean, std)
    model = build_model(plan.model, n_features=X.shape[1], seed=plan.seed)
    _, layout = model_to_vector(model)
    weights = _mean(sets[(agent_pb2.ENVELOPE_WEIGHTS, round_)], secret,
                    layout[-1].offset + layout[-1].length)
    vector_to_model(model, weights, layout)
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return count_held_out(scores, split.test.y, split.test.groups, groups=fixed_groups(plan))


def test_encrypted_counts_give_the_metrics_of_the_sites_plaintext_counts(he_study) -> None:
    plan = he_study.fed.plan
    evaluated = sorted(site for site, req, _ in he_study.exchanges
                       if req.kind == agent_pb2.TASK_EVALUATE)
    assert evaluated == ["site-1", "site-2", "site-3"]
    plain = [own_counts(he_study.vaults[site], plan, he_study, 1) for site in evaluated]
    summed = plain[0]
    for other in plain[1:]:
        summed = type(summed)(bins=summed.bins, n=summed.n + other.n,
                              log_loss_sum=summed.log_loss_sum + other.log_loss_sum,
                              brier_sum=summed.brier_sum + other.brier_sum,
                              histograms={g: (summed.histograms[g][0] + other.histograms[g][0],
                                              summed.histograms[g][1] + other.histograms[g][1])
                                          for g in summed.histograms})
    # The opening site merges cells smaller than its minimum (10) before it shares them.
    expected = sum_counts([counts_to_proto(merge_small_cells(summed, min_cell=10))])
    final = he_study.result["final"]
    for key in COUNT_METRICS:
        assert final[key] == expected[key], key
    # Real-valued sums are noise-flooded before they leave the site: close, not equal.
    for key in ("brier", "log_loss"):
        assert abs(final[key] - expected[key]) <= 1e-3

    opened = [reply.counts for _, req, reply in he_study.exchanges
              if req.kind == agent_pb2.TASK_OPEN_COUNTS]
    assert len(opened) == 1
    by_group = {h.group: h for h in opened[0].histograms}
    merged = merge_small_cells(summed, min_cell=10)
    for group in merged.histograms:
        assert list(by_group[group].pos) == list(merged.histograms[group][0])
        assert list(by_group[group].neg) == list(merged.histograms[group][1])
    for hist in opened[0].histograms:  # no shared cell below the minimum
        assert all(p + q == 0 or p + q >= 10 for p, q in zip(hist.pos, hist.neg, strict=True))


def test_coordinator_never_receives_one_sites_plaintext_counts_with_he(he_study) -> None:
    for site, request, reply in he_study.exchanges:
        if request.kind == agent_pb2.TASK_OPEN_COUNTS:
            assert site == he_study.fed.custodian
            assert len(request.counts.envelopes) == 3
            assert all(e.encrypted for e in request.counts.envelopes)
            continue
        assert not reply.HasField("counts"), (site, request.kind)
        if request.kind == agent_pb2.TASK_EVALUATE:
            assert reply.envelope.kind == agent_pb2.ENVELOPE_EVAL and reply.envelope.encrypted
            assert not reply.envelope.values
    assert he_study.result["final"]["per_site"] is None


def test_plaintext_counts_keep_a_per_site_breakdown(tmp_path: Path) -> None:
    study = _run(tmp_path / "w", _plan(he=False, categories=None))
    final = study.result["final"]
    per_site = final["per_site"]
    assert sorted(per_site) == ["site-1", "site-2", "site-3"]
    assert sum(m["n"] for m in per_site.values()) == final["n"]
    for site, metrics in per_site.items():
        own = own_counts(study.vaults[site], study.fed.plan, study, 1)
        alone = sum_counts([counts_to_proto(merge_small_cells(own, min_cell=10))])
        assert metrics == {k: alone[k] for k in ("auc", "accuracy", "f1", "brier", "ece", "n")}


def test_encrypted_study_with_uncategorised_sensitive_column_is_refused(tmp_path: Path) -> None:
    plan = _plan(he=True, categories=None)
    fed = local_federation.build(tmp_path / "w", plan, sites=3, ceilings={}, passphrase=PASS)
    grid = InProcessGrid([SiteAgent(unlock_vault(s, PASS)) for s in fed.sites])
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="r",
                       expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "plan_invalid"
    assert "categories" in result["error"]["message"]
    assert grid.sent == []
