"""The bundled digits study (a GroupNorm CNN over 8x8 scans, DP-SGD, CKKS sums) runs end to
end through the real coordinator and site agents, within the sites' budgets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.plan import bundled_plan_path, load_plan, override
from server.coordinator import run_study
from tessera import local_federation
from tessera.baseline import released_model_check
from tessera.inprocess import InProcessGrid

PASSPHRASE = "digits study passphrase"


@pytest.mark.slow
def test_digits_study_trains_an_encrypted_dp_cnn(tmp_path: Path) -> None:
    logging.getLogger("flwr").setLevel(logging.WARNING)
    plan = override(load_plan(bundled_plan_path("digits")), rounds=2)
    fed = local_federation.build(tmp_path / "work", plan, sites=3, ceilings={},
                                 passphrase=PASSPHRASE)
    agents = [SiteAgent(unlock_vault(site, PASSPHRASE)) for site in fed.sites]
    result = run_study(InProcessGrid(agents), workdir=fed.workdir, plan_path=fed.plan_path,
                       run_id="1", expected_sites=3, custodian=fed.custodian)
    assert result["status"] == "completed", result.get("error")
    check = released_model_check(fed, result)
    assert check is not None
    assert check["accuracy"] > 0.65  # odd vs even is balanced; measured 0.80-0.83
    for site in result["sites"]:
        assert 0 < site["epsilon_spent"] <= plan.privacy.target_epsilon
    # 37,793 parameters in 19 seeded ciphertexts of N = 4096, [60, 27, 20] (about 45 KB
    # each) per site in the training round; measured 967 KB per site.
    first = result["rounds"][0]["bytes_up"]
    assert sorted(first) == ["site-1", "site-2", "site-3"]
    assert all(800_000 < size < 1_100_000 for size in first.values())
