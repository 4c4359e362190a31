"""``tessera site models`` and ``site evaluate`` through the real CLI: the kept global models
and their scores on the site's held-out rows, withdrawn patients left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from client_app.custody.vault import unlock_vault
from client_app.learning.local_eval import keep_final_model
from client_app.store.site_store import SiteStore
from common.models import build_model
from common.plan import bundled_plan_path, load_plan, override, plan_hash
from tessera import local_federation
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.conftest import TEST_PASSPHRASE


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KIT_ENV_VAR, raising=False)
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)


def _tessera(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sites" / "h1"
    result = _tessera("site", "init", "--site-dir", root, "--name", "h1")
    assert result.exit_code == 0, result.output
    return root


def test_models_and_evaluate_without_a_stored_model(site_dir: Path) -> None:
    result = _tessera("site", "models", "--site-dir", site_dir, "--json")
    assert result.exit_code == 0 and json.loads(result.output) == []
    result = _tessera("site", "evaluate", "--site-dir", site_dir)
    assert result.exit_code == 4
    assert "error: no global model is stored at this site yet" in result.output


def test_models_lists_and_evaluate_scores_a_kept_model(tmp_path: Path) -> None:
    plan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1, he_enabled=False)
    fed = local_federation.build(tmp_path / "w", plan, sites=1, ceilings={},
                                 passphrase=TEST_PASSPHRASE)
    site = fed.sites[0]
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    with SiteStore.open(site) as store:
        keep_final_model(unlock_vault(site, TEST_PASSPHRASE), plan, store,
                         plan_hash=plan_hash(plan), round_=1, model=model,
                         mean=fed.data.X.mean(axis=0), std=fed.data.X.std(axis=0))
    name = f"breast_cancer-{plan_hash(plan)[:12]}"

    result = _tessera("site", "models", "--site-dir", site.root)
    assert result.exit_code == 0 and name in result.output
    result = _tessera("site", "evaluate", "--site-dir", site.root, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["model"] == name and doc["excluded_by_consent"] == 2  # the demo's opt-outs
    assert doc["tp"] + doc["fp"] + doc["tn"] + doc["fn"] == doc["n"] > 0
    assert 0.0 <= doc["auc"] <= 1.0 and len(doc["roc_fpr"]) == len(doc["roc_tpr"])
    result = _tessera("site", "evaluate", "--site-dir", site.root)
    assert result.exit_code == 0, result.output
    assert "AUC" in result.output and "2 row(s) left out for consent" in result.output
    result = _tessera("site", "evaluate", "--site-dir", site.root, "--model", "nope")
    assert result.exit_code == 4 and "error: no stored model named 'nope'" in result.output
    assert not np.isnan(doc["accuracy"])
