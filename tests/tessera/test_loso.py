"""Leave-one-site-out: each site scores a model trained by the others, on its own held-out rows."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from typer.testing import CliRunner

from client_app.agent.envelopes import counts_to_proto
from client_app.agent.site_agent import SiteAgent
from client_app.custody.ckks_keys import load_secret_context
from client_app.custody.vault import SiteVault, unlock_vault
from client_app.governance.sharing import SHARE_OWN_COUNTS
from client_app.learning.site_data import load_split, standardise
from client_app.learning.statistics import standardisation_of
from client_app.store.site_store import SiteStore
from common.eval_counts import count_held_out, fixed_groups, merge_small_cells
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import StudyPlan, bundled_plan_path, load_plan, override, statistics_length
from privacy.ckks import decrypt_vector
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from server.federated_eval import headline, sum_counts
from server.registry import ModelRegistry
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASS = "leave one site out passphrase"


def _plan(*, dp: bool = False, min_sites: int = 2) -> StudyPlan:
    raw = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1,
                   min_sites=min_sites, loso=True).model_dump()
    raw["privacy"]["dp"] = dp
    return StudyPlan.model_validate(raw)


def _run(root: Path, plan: StudyPlan, *, sites: int, tls: bool = False, prepare=None,
         ceilings=None):
    fed = local_federation.build(root, plan, sites=sites, ceilings=ceilings or {},
                                 passphrase=PASS, tls=tls)
    if prepare is not None:
        prepare(fed)
    vaults = {s.name: unlock_vault(s, PASS) for s in fed.sites}
    asked: list[tuple[str, agent_pb2.TaskRequest]] = []

    def capture(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        copy = agent_pb2.TaskRequest()
        copy.CopyFrom(request)
        asked.append((site, copy))
        return data

    grid = InProcessGrid([SiteAgent(v) for v in vaults.values()], reply_hook=capture)
    result = run_study(grid, workdir=fed.workdir, plan_path=fed.plan_path, run_id="m",
                       expected_sites=sites, custodian=fed.custodian, loso=True)
    assert result["status"] == "completed", result.get("error")
    return fed, vaults, asked, result


def _mean(cset: agent_pb2.ContributionSet, secret: bytes, length: int) -> np.ndarray:
    total = sum(decrypt_vector(secret, list(e.ciphertexts), length=length)
                for e in cset.envelopes)
    return total / sum(e.example_count for e in cset.envelopes)


def _scores(vault: SiteVault, plan: StudyPlan, asked, run_id: str):
    """The held-out site's predictions of the final model of a leave-one-site-out run."""
    sets = {}
    for _, req in asked:
        if req.run_id == run_id:
            for cset in (req.model, req.stats):
                if cset.envelopes:
                    sets[(int(cset.kind), int(cset.round))] = cset
    request = next(req for _, req in asked if req.run_id == run_id)
    secret = load_secret_context(vault, request.plan_hash)
    split = load_split(vault, plan)
    stats = sets[(agent_pb2.ENVELOPE_STATS, 0)]
    n_stats = sum(e.example_count for e in stats.envelopes)
    mean, std = standardisation_of(plan, _mean(stats, secret, statistics_length(plan)) * n_stats,
                                   float(n_stats))
    X = standardise(split.test.X, mean, std)
    model = build_model(plan.model, n_features=X.shape[1], seed=plan.seed)
    _, layout = model_to_vector(model)
    final = sets[(agent_pb2.ENVELOPE_WEIGHTS, plan.training.rounds)]
    vector_to_model(model, _mean(final, secret, layout[-1].offset + layout[-1].length), layout)
    return np.clip(predict_scores(model, X), 0.0, 1.0), split.test.y, split.test.groups


def _ece(scores: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    index = np.minimum((scores * bins).astype(int), bins - 1)
    gaps = [abs(y[index == b].mean() - scores[index == b].mean()) * (index == b).sum()
            for b in range(bins) if (index == b).any()]
    return float(sum(gaps) / len(y))


@pytest.mark.slow
def test_each_site_scores_a_model_the_other_sites_trained(tmp_path: Path) -> None:
    def site3_keeps_its_counts(fed) -> None:
        with SiteStore.open(fed.sites[2]) as store:
            store.put_setting(SHARE_OWN_COUNTS, "no")

    fed, vaults, asked, result = _run(tmp_path / "w", _plan(), sites=3, tls=True,
                                      prepare=site3_keeps_its_counts)
    loso = result["loso"]
    assert sorted(loso) == ["site-1", "site-2", "site-3"]
    assert result["loso_skipped"] is None
    for held_out in ("site-1", "site-2"):
        entry = loso[held_out]
        assert entry["run_id"] == f"m-loso-{held_out}"
        assert entry["training_sites"] == sorted({"site-1", "site-2", "site-3"} - {held_out})
        trained_at = {site for site, req in asked
                      if req.kind == agent_pb2.TASK_TRAIN and req.run_id == entry["run_id"]}
        assert trained_at == set(entry["training_sites"])
        own = [site for site, req in asked
               if req.kind == agent_pb2.TASK_EVALUATE_OWN and req.run_id == entry["run_id"]]
        assert own == [held_out]
        scores, y, groups = _scores(vaults[held_out], fed.plan, asked, entry["run_id"])
        assert entry["n"] == len(y)
        # What the site shares: its counts with cells under 10 rows merged.
        counts = count_held_out(scores, y, groups, groups=fixed_groups(fed.plan))
        shared = headline(sum_counts([counts_to_proto(merge_small_cells(counts, min_cell=10))]))
        for key, value in shared.items():  # the site sums ciphertexts before decrypting
            assert entry[key] == pytest.approx(value, abs=1e-6), key
        assert abs(entry["brier"] - brier_score_loss(y, scores)) < 1e-6
        assert abs(entry["auc"] - roc_auc_score(y, scores)) < 0.05  # merged score bins
        folder = fed.coordinator_dir / "runs" / "m" / "loso" / held_out
        assert json.loads((folder / "result.json").read_text())["status"] == "completed"

    refused = loso["site-3"]
    assert refused["error"]["code"] == "permission_denied"
    assert "does not share" in refused["error"]["message"]
    assert "auc" not in refused

    with ModelRegistry.open(fed.coordinator_dir) as registry:
        stored = registry.get(fed.plan.name, result["model"]["version"])
    assert stored.lineage["loso"] == loso


def test_leave_one_site_out_is_skipped_when_too_few_sites_would_train(tmp_path: Path) -> None:
    _, _, asked, result = _run(tmp_path / "w", _plan(), sites=2)
    assert result["loso"] == {}
    assert "needs at least 2" in result["loso_skipped"]
    assert not [req for _, req in asked if "loso" in req.run_id]


@pytest.mark.slow
def test_leave_one_site_out_training_spends_budget_within_the_ceiling(tmp_path: Path) -> None:
    """site-2's ceiling admits the main study but not a second training run."""
    fed, _, _, result = _run(tmp_path / "w", _plan(dp=True, min_sites=1), sites=2,
                             ceilings={"site-2": 3.5})
    main = {s["name"]: s["epsilon_spent"] for s in result["sites"]}
    without_1 = result["loso"]["site-1"]
    assert without_1["error"]["code"] == "process_failed"  # no site left to train
    without_2 = result["loso"]["site-2"]
    assert "error" not in without_2 and without_2["training_sites"] == ["site-1"]
    assert main["site-1"] + 0.5 < result["loso_epsilon"]["site-1"] < 2 * main["site-1"]
    # site-2 did not train again, but its own counts for the model site-1 trained without it
    # were one more release: its study epsilon grew, still within its ceiling
    assert main["site-2"] < result["loso_epsilon"]["site-2"] <= 3.5
    with SiteStore.open(fed.sites[0]) as store:
        # the main run (statistics, one round, its evaluation and importance), then the
        # leave-one-site-out run it trains alone (statistics and one round)
        # (the row counts are released once and reused by the second run)
        assert [(e.kind, e.run_id) for e in store.ledger()] == [
            ("row_counts", "m"), ("statistics", "m"), ("dp_sgd", "m"),
            ("evaluation_counts", "m"), ("importance", "m"), ("statistics", "m-loso-site-2"),
            ("dp_sgd", "m-loso-site-2")]
    with SiteStore.open(fed.sites[1]) as store:
        # site-2 could not afford to train without site-1, but its own counts for the model
        # site-1 trained without it are one more (noisy) release, in its ledger
        assert [(e.kind, e.run_id) for e in store.ledger()] == [
            ("row_counts", "m"), ("statistics", "m"), ("dp_sgd", "m"),
            ("evaluation_counts", "m"), ("importance", "m"), ("loso_counts", "m-loso-site-2")]
        assert [e.kind for e in store.events(kind="budget_refusal")] == ["budget_refusal"]
    assert without_2["n"] > 0 and without_2["dp_noise"]["cell_std"] > 0


def test_demo_loso_option_reaches_the_server_apps_run_config(tmp_path: Path,
                                                            monkeypatch) -> None:
    import server.server_app as server_app
    import tessera.demo as demo
    from tessera.cli import app

    seen: dict = {}
    real_app_folder = demo.coordinator_ops.app_folder

    def capture_app_folder(coordinator_dir, run_config):
        seen["config"] = dict(run_config)
        raise demo.TesseraError(demo.ErrorCode.CONFIG_INVALID, "stop before processes")

    monkeypatch.setattr(demo.coordinator_ops, "app_folder", capture_app_folder)
    result = CliRunner().invoke(app, ["demo", "--loso", "--insecure", "--rounds", "1",
                                      "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    assert seen["config"]["loso"] is True
    # ...and the plan the sites approved asks for it (a site refuses what the plan lacks).
    assert load_plan(Path(seen["config"]["plan"])).evaluation_policy.loso is True

    folder, run_toml = real_app_folder(tmp_path / "c", seen["config"])
    assert tomllib.loads(run_toml.read_text())["loso"] is True
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["tool"]["flwr"]["app"]["config"]["loso"] is False  # the default

    calls: dict = {}
    monkeypatch.setattr(server_app, "run_study", lambda grid, **kw: calls.update(kw))
    context = SimpleNamespace(run_id=7, run_config={**seen["config"], "loso": True})
    server_app.main(None, context)
    assert calls["loso"] is True
    context.run_config.pop("loso")
    server_app.main(None, context)
    assert calls["loso"] is False
