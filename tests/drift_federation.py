"""Test helper: a local federation whose approved plan declares ``[drift]``, and the shifts
a test applies to a site's data (a new dataset version registered at that site)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from client_app.datasets.validation import Policy
from client_app.datasets.versions import register_content
from common.datasets import csv_bytes, load_bundled
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from server.drift_collect import DriftCollection, collect_drift
from tessera import local_federation
from tessera.inprocess import InProcessGrid
from tessera.local_federation import LocalFederation

PASSPHRASE = "drift federation passphrase"
WATCHED = ["mean_texture", "mean_smoothness", "mean_symmetry", "worst_smoothness",
           "mean_radius", "worst_texture"]


@dataclass
class DriftFederation:
    """A built drift federation and its first collection (the training-time reference)."""

    fed: LocalFederation
    baseline: DriftCollection

    def collect(self) -> DriftCollection:
        """Collect the sites' drift answers again, through freshly unlocked agents."""
        agents = [SiteAgent(unlock_vault(s, PASSPHRASE)) for s in self.fed.sites]
        return collect_drift(InProcessGrid(agents), coordinator_dir=self.fed.coordinator_dir,
                             plan=self.fed.plan)


def drift_plan(*, drift: bool = True, he: bool = True, threshold: float = 0.3,
               scores: bool = False, features: list[str] | None = None) -> StudyPlan:
    """The bundled breast-cancer plan, one round, no KPI gates, with a ``[drift]`` section
    watching six features (or ``features``; noise 2: cheap enough for a target epsilon of
    10), and with ``scores`` the final model's score histogram too (score threshold 0.25)."""
    raw = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1,
                   target_epsilon=10.0, he_enabled=he).model_dump()
    raw["kpis"] = None
    if drift:
        raw["drift"] = {"psi_threshold": threshold, "noise_multiplier": 2.0,
                        "features": features or WATCHED}
        if scores:
            raw["drift"].update(scores=True, score_psi_threshold=0.25)
    return StudyPlan.model_validate(raw)


def build(root: Path, plan: StudyPlan, *, sites: int = 3) -> LocalFederation:
    """A local federation of ``sites`` with a ceiling of 40 each (room for drift answers)."""
    return local_federation.build(root, plan, sites=sites, passphrase=PASSPHRASE,
                                  ceilings={f"site-{i}": 40.0 for i in range(1, sites + 1)})


def register_shifted(fed: LocalFederation, index: int, *, towards_max: float,
                     features: list[str] | None = None) -> None:
    """Register a new version of site ``index``'s data with every watched feature (or each
    of ``features``) moved ``towards_max`` of the way to its declared maximum (0: the same
    values again)."""
    plan = fed.plan
    raw = load_bundled(plan.dataset.name)
    X = raw.X.copy()
    columns = plan.dataset.columns or {}
    watched = plan.drift.features if plan.drift and plan.drift.features else WATCHED
    for name in features or watched:
        j = raw.features.index(name)
        high = columns[name].max
        assert high is not None
        X[:, j] = X[:, j] + towards_max * (high - X[:, j])
    shifted = replace(raw, X=X)
    vault = unlock_vault(fed.sites[index], PASSPHRASE)
    content = csv_bytes(shifted, np.asarray(fed.partitions[index]))
    register_content(vault, content, source_name="new-admissions.csv", plan=plan,
                     policy=Policy(), actor="test-operator")
