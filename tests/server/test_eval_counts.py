"""Encrypted evaluation counts: summed as ciphertexts, opened by one site, equal to plaintext."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from client_app.agent.envelopes import counts_to_proto, mean_of
from client_app.agent.site_agent import SiteAgent
from client_app.custody.ckks_keys import load_secret_context
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.learning.site_data import load_split, standardise, standardiser
from common.eval_counts import count_held_out, fixed_groups
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from server.strategy import sum_counts
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


def own_counts(vault: SiteVault, plan: StudyPlan, request: agent_pb2.TaskRequest):
    """What the site's predictions of the request's global model give, counted in plaintext."""
    secret = load_secret_context(vault, request.plan_hash) if plan.he.enabled else None
    split = load_split(vault, plan)
    sums = mean_of(request.stats, secret_context=secret) * request.stats.example_count
    mean, std = standardiser(sums, float(request.stats.example_count))
    X = standardise(split.test.X, mean, std)
    model = build_model(plan.model, n_features=X.shape[1], seed=plan.seed)
    _, layout = model_to_vector(model)
    vector_to_model(model, mean_of(getattr(request, "global"), secret_context=secret), layout)
    scores = np.clip(predict_scores(model, X), 0.0, 1.0)
    return count_held_out(scores, split.test.y, split.test.groups, groups=fixed_groups(plan))


def test_encrypted_counts_give_the_metrics_of_the_sites_plaintext_counts(he_study) -> None:
    plan = he_study.fed.plan
    evaluated = [(site, req) for site, req, _ in he_study.exchanges if req.kind == "evaluate"]
    assert sorted(site for site, _ in evaluated) == ["site-1", "site-2", "site-3"]
    plain = [own_counts(he_study.vaults[site], plan, req) for site, req in evaluated]
    expected = sum_counts([counts_to_proto(c) for c in plain])
    final = he_study.result["final"]
    for key in COUNT_METRICS:
        assert final[key] == expected[key], key
    assert final["fairness"]["groups"].keys() == {"1", "2"}
    for key in ("brier", "log_loss"):
        assert abs(final[key] - expected[key]) <= 1e-9 * expected[key]

    opened = [reply.counts for _, req, reply in he_study.exchanges if req.kind == "open_counts"]
    assert len(opened) == 1
    by_group = {h.group: h for h in opened[0].histograms}
    for group in ("", "1", "2"):
        assert list(by_group[group].pos) == list(sum(c.histograms[group][0] for c in plain))
        assert list(by_group[group].neg) == list(sum(c.histograms[group][1] for c in plain))


def test_coordinator_never_receives_one_sites_plaintext_counts_with_he(he_study) -> None:
    for site, request, reply in he_study.exchanges:
        if request.kind == "open_counts":
            assert site == he_study.fed.custodian
            assert request.eval_sum.contributors == 3 and request.eval_sum.site == ""
            assert request.eval_sum.encrypted
            continue
        assert not reply.HasField("counts"), (site, request.kind)
        if request.kind == "evaluate":
            assert reply.envelope.kind == "eval" and reply.envelope.encrypted
            assert not reply.envelope.values
    assert he_study.result["final"]["per_site"] is None


def test_open_counts_refuses_anything_but_a_true_aggregate(he_study) -> None:
    own = next(reply.envelope for site, req, reply in he_study.exchanges
               if req.kind == "evaluate" and site == "site-2")
    agent = SiteAgent(he_study.vaults["site-2"])

    def open_(env: agent_pb2.UpdateEnvelope) -> agent_pb2.TaskReply:
        req = agent_pb2.TaskRequest(kind="open_counts", plan_hash=he_study.fed.plan_hash,
                                    plan_toml=he_study.fed.plan_path.read_bytes(), round=1,
                                    run_id="ev")
        req.eval_sum.CopyFrom(env)
        return agent.handle(req)

    single = open_(own)
    assert not single.ok and single.error_code == "permission_denied"
    assert "opening counts refused" in single.reason
    assert not single.HasField("counts")

    forged = agent_pb2.UpdateEnvelope()
    forged.CopyFrom(own)
    forged.site, forged.contributors = "", 3  # one site's counts dressed up as a sum
    refused = open_(forged)
    assert not refused.ok and "beyond this site's own" in refused.reason


def test_plaintext_counts_keep_a_per_site_breakdown(tmp_path: Path) -> None:
    study = _run(tmp_path / "w", _plan(he=False, categories=None))
    final = study.result["final"]
    per_site = final["per_site"]
    assert sorted(per_site) == ["site-1", "site-2", "site-3"]
    assert sum(m["n"] for m in per_site.values()) == final["n"]
    evaluated = {site: req for site, req, _ in study.exchanges if req.kind == "evaluate"}
    for site, metrics in per_site.items():
        alone = sum_counts([counts_to_proto(
            own_counts(study.vaults[site], study.fed.plan, evaluated[site]))])
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
