"""Test helper: a real registered model, from a real (in-process) federated study.

:func:`registered_study` builds a two-site local federation, runs one round of the bundled
breast-cancer study through the real strategy and site agents (in one process, a few
seconds) and returns the coordinator folder whose registry holds version 1.
:func:`register_variant` adds a later version of the same study whose weights are a
transformation of version 1's (a drifting or broken candidate for release tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.models import build_model, model_to_vector
from common.plan import ModelSpec, StudyPlan, bundled_plan_path, load_plan, override
from server.coordinator import run_study
from server.registry import ModelRegistry, ModelVersion
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASSPHRASE = "registered-model passphrase"
STUDY = "breast_cancer"


@dataclass(frozen=True)
class RegisteredStudy:
    """A work folder whose coordinator registered ``STUDY`` v1."""

    workdir: Path
    coordinator_dir: Path
    kit: Path
    plan: StudyPlan
    sites: tuple[Path, ...]
    model: ModelVersion

    @property
    def features(self) -> list[str]:
        return list(self.plan.dataset.features)


def registered_study(root: Path) -> RegisteredStudy:
    """Run one round of the bundled study on two sites and return the registry's folder."""
    # No KPI gates: the federated metrics are DP estimates from noisy counts, and these tests
    # need a promotable model, not a gate's verdict (tests/server/test_kpi.py has those).
    raw = override(load_plan(bundled_plan_path(STUDY)), rounds=1).model_dump()
    raw["kpis"] = None
    plan = StudyPlan.model_validate(raw)
    fed = local_federation.build(root / "work", plan, sites=2, ceilings={},
                                 passphrase=PASSPHRASE)
    agents = [SiteAgent(unlock_vault(site, PASSPHRASE)) for site in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="1", expected_sites=2, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    coordinator = fed.coordinator_dir
    with ModelRegistry.open(coordinator) as registry:
        model = registry.get(STUDY, 1)
    assert model.promotable is True, model.promotion_reasons
    return RegisteredStudy(workdir=fed.workdir, coordinator_dir=coordinator,
                           kit=coordinator / "kit", plan=plan,
                           sites=tuple(Path(s.root) for s in fed.sites), model=model)


def register_variant(study: RegisteredStudy, change: Callable[[np.ndarray], np.ndarray], *,
                     promotable: bool = True) -> ModelVersion:
    """Register the next version: version 1's document with ``change`` applied to its weights."""
    with ModelRegistry.open(study.coordinator_dir) as registry:
        base = registry.get(STUDY, 1)
        doc = json.loads(registry.load_bytes(base))
        doc["values"] = change(np.asarray(doc["values"], dtype=np.float64)).tolist()
        return registry.register(
            study=STUDY, plan_hash=base.plan_hash, rounds=base.rounds,
            model_bytes=json.dumps(doc).encode("utf-8"), metrics=base.metrics,
            epsilon_per_site=base.epsilon_per_site, lineage=base.lineage,
            promotable=promotable,
            promotion_reasons=() if promotable else ("min_auc: 0.5 < 0.95",))


def raw_rows(study: RegisteredStudy, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` rows of raw feature values around the federation-wide mean and std."""
    with ModelRegistry.open(study.coordinator_dir) as registry:
        doc = json.loads(registry.load_bytes(study.model))
    rng = np.random.default_rng(seed)
    return rng.normal(np.asarray(doc["mean"]), np.asarray(doc["std"]),
                      size=(n, len(doc["features"])))


def fixed_model_doc(kind: str = "logreg", *, seed: int = 0, study: str = "fixed",
                    features: int = 30) -> dict[str, Any]:
    """A deterministic model document (random weights spread so scores cover both classes).

    A model trained under DP differs from run to run; tests whose outcome depends on the exact
    weights (int8 quantisation error near the 0.5 threshold) use this one.
    """
    spec = ModelSpec(kind="logreg") if kind == "logreg" else ModelSpec(kind="mlp", hidden=64,
                                                                        groups=8)
    model = build_model(spec, n_features=features, seed=seed)
    values, layout = model_to_vector(model)
    values = np.random.default_rng(seed).normal(0.0, 0.3, values.size)
    rng = np.random.default_rng(seed + 1)
    return {
        "format": "tessera-model/1", "study": study, "plan_hash": "b" * 64,
        "model": spec.model_dump(mode="json"),
        "features": [f"f{i:02d}" for i in range(features)], "label": "y",
        "layout": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "length": s.length} for s in layout],
        "values": values.tolist(), "mean": rng.normal(10, 5, features).tolist(),
        "std": rng.uniform(0.5, 3.0, features).tolist(),
    }
