"""The local federation as the launcher builds it: each demo site accounts at the plan's
delta, splits its rows with its own secret, and the launcher (which plays every site) can
reproduce each split for the benchmark reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_app.custody.site_secrets import split_secret
from client_app.custody.vault import SIMULATION_ONLY_SCRYPT_N, unlock_vault
from client_app.governance.studies import received_plans
from client_app.learning.site_data import load_split
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from privacy.at_rest import ScryptParams
from tessera import local_federation
from tessera.baseline import centralised_baseline, pooled_splits

PASS = "local federation passphrase"
PLAN = override(load_plan(bundled_plan_path("breast_cancer")), rounds=1, he_enabled=False)


def test_each_site_splits_as_the_launcher_says_and_accounts_at_the_plans_delta(
        tmp_path: Path) -> None:
    fed = local_federation.build(tmp_path / "w", PLAN, sites=3, ceilings={}, passphrase=PASS)
    held_out: list[set[str]] = []
    for index, site in enumerate(fed.sites):
        vault = unlock_vault(site, PASS)
        assert split_secret(vault) == local_federation.demo_split_secret(site.name)
        split = load_split(vault, PLAN)
        _, test_rows = fed.site_split(index)
        # The site's held-out rows (less its demo opt-outs, all from its training rows).
        assert {str(p) for p in split.test.patient_ids} == {
            str(p) for p in fed.data.patient_ids[test_rows]}
        held_out.append(set(split.test.patient_ids))
        with SiteStore.open(site) as store:
            assert store.site_delta(PLAN.dataset.name).value == PLAN.privacy.delta
            assert not store.allows_non_private()
    assert all(a.isdisjoint(b) for a in held_out for b in held_out if a is not b)
    train, test = pooled_splits(fed)
    assert train.n_rows + test.n_rows == len(fed.data.y)
    assert sorted(test.patient_ids) == sorted(p for s in held_out for p in s)
    baseline = centralised_baseline(fed)
    assert baseline["test_examples"] == test.n_rows and baseline["auc"] > 0.9


def test_a_demo_of_a_non_private_plan_has_its_sites_allow_them(tmp_path: Path) -> None:
    raw = PLAN.model_dump()
    raw["privacy"]["dp"] = False
    fed = local_federation.build(tmp_path / "w", StudyPlan.model_validate(raw), sites=2,
                                 ceilings={}, passphrase=PASS)
    with SiteStore.open(fed.sites[0]) as store:
        assert store.allows_non_private()
        assert [e.details["allowed"] for e in store.events(kind="non_private_changed")] == [True]


def test_a_plan_with_a_looser_delta_than_the_demo_sites_accept_is_refused(
        tmp_path: Path) -> None:
    raw = PLAN.model_dump()
    raw["privacy"]["delta"] = 0.01
    with pytest.raises(TesseraError, match=r"privacy\.delta") as info:
        local_federation.build(tmp_path / "w", StudyPlan.model_validate(raw), sites=2,
                               ceilings={}, passphrase=PASS)
    assert info.value.code is ErrorCode.CONFIG_INVALID


def _kdf_n(site_root: Path) -> int:
    return int(json.loads((site_root / "keys" / "keystore.json").read_text())["kdf"]["n"])


@pytest.mark.parametrize("simulation_only", [False, True])
def test_only_a_simulation_builds_cheap_keystores_and_hands_back_unlocked_vaults(
        tmp_path: Path, simulation_only: bool) -> None:
    fed = local_federation.build(tmp_path / "w", PLAN, sites=2, ceilings={}, passphrase=PASS,
                                 simulation_only=simulation_only)
    expected = SIMULATION_ONLY_SCRYPT_N if simulation_only else ScryptParams().n
    for site, vault in zip(fed.sites, fed.vaults, strict=True):
        assert _kdf_n(site.root) == expected
        assert unlock_vault(site, PASS).key == vault.key and vault.site == site
        [received] = received_plans(site)
        assert (received.plan_hash, received.status) == (fed.plan_hash, "approved")
