"""The study inbox: received plans, summaries, diffs between versions, decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.agent.site_agent import SiteAgent
from client_app.governance.studies import (
    decide,
    file_plan,
    plan_diff,
    receive_plan,
    received_plan,
    received_plans,
    summarise,
)
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml
from protos.tessera.v1 import agent_pb2
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites, signed_task

BREAST = bundled_plan_path("breast_cancer")


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "h1", name="h1")


def _received_events(site: SiteDir) -> list[str | None]:
    with SiteStore.open(site) as store:
        return [e.plan_hash for e in store.events(kind="study_plan_received")]


def test_received_plan_is_pending_and_listed_once_per_hash(site: SiteDir) -> None:
    text = BREAST.read_text(encoding="utf-8")
    first = receive_plan(site, text)
    again = receive_plan(site, plan_to_toml(load_plan(BREAST)), source="coordinator")
    digest = plan_hash(load_plan(BREAST))
    assert first.plan_hash == again.plan_hash == digest
    assert first.status == "pending" and first.source == "file" and again.source == "file"
    assert first.plan_toml == text  # the text as received, comments included
    assert [p.plan_hash for p in received_plans(site)] == [digest]
    assert _received_events(site) == [digest]


def test_received_plans_are_newest_first_with_their_decision(site: SiteDir) -> None:
    base = load_plan(BREAST)
    other = load_plan(bundled_plan_path("diabetes"))
    a = receive_plan(site, plan_to_toml(base))
    b = receive_plan(site, plan_to_toml(other), source="coordinator")
    decide(site, a.plan_hash, "approved", actor="dr ops")
    plans = received_plans(site)
    assert [(p.plan_hash, p.status, p.source) for p in plans] == [
        (b.plan_hash, "pending", "coordinator"), (a.plan_hash, "approved", "file")]
    decide(site, a.plan_hash, "revoked", actor="dr ops", note="protocol changed")
    assert received_plan(site, a.plan_hash.upper()).status == "revoked"
    decide(site, b.plan_hash, "rejected", actor="dr ops")
    assert received_plan(site, b.plan_hash).status == "rejected"


def test_summary_names_model_fields_privacy_and_release(site: SiteDir) -> None:
    plan = load_plan(BREAST)
    summary = summarise(plan)
    assert summary.plan_hash == plan_hash(plan)
    assert summary.features == tuple(plan.dataset.features) and summary.label == "benign"
    assert (summary.rounds, summary.local_epochs) == (3, 3)
    assert (summary.dp, summary.target_epsilon, summary.delta) == (True, 3.0, 1e-5)
    assert summary.he_enabled and summary.min_sites == 2
    assert summary.kpis == {"min_auc": 0.9, "max_ece": 0.2}
    assert "at least 2 site(s)" in summary.release_policy
    lines = dict(summary.lines())
    assert lines["model"].startswith("logreg")
    assert "target epsilon 3 at delta 1e-05" in lines["privacy"]
    assert lines["features"].startswith("30: mean_radius, mean_texture")
    assert lines["KPI gates"] == "max_ece 0.2, min_auc 0.9"
    no_dp = summarise(override(plan, he_enabled=False))
    assert "plaintext" in dict(no_dp.lines())["encryption"]


def test_summary_shows_the_budget_split_of_every_release() -> None:
    summary = summarise(load_plan(BREAST))
    split = [value for label, value in summary.lines() if label == "budget split"]
    assert [line.split(" (")[0].split(":")[0] for line in split[:-1]] == [
        "row counts", "statistics", "evaluation", "feature importance"]
    assert split[-1].startswith("together epsilon ")
    assert split[-1].endswith("the whole run spends epsilon 3 at delta 1e-05")
    doc = summary.to_json()["budget_split"]
    assert isinstance(doc, dict) and doc["evaluated_rounds"] == 1
    assert doc["statistics_epsilon"] < doc["releases_epsilon"] < doc["target_epsilon"]


def test_diff_lists_changed_fields_against_the_previous_version(site: SiteDir) -> None:
    v1 = load_plan(BREAST)
    v2 = override(v1, target_epsilon=5.0)
    receive_plan(site, plan_to_toml(v1))
    receive_plan(site, plan_to_toml(load_plan(bundled_plan_path("diabetes"))))
    receive_plan(site, plan_to_toml(v2))
    diff = plan_diff(site, plan_hash(v2))
    assert diff.previous_hash == plan_hash(v1)
    assert [(c.path, c.old, c.new) for c in diff.changes] == [
        ("privacy.target_epsilon", "3.0", "5.0")]
    assert "-target_epsilon = 3.0" in diff.unified
    assert "+target_epsilon = 5.0" in diff.unified
    first = plan_diff(site, plan_hash(v1))
    assert first.previous_hash is None and first.changes == () and first.unified == ""


def test_diff_shows_added_and_removed_fields(site: SiteDir) -> None:
    v1 = load_plan(BREAST)
    raw = v1.model_dump(mode="json", exclude_none=True)
    raw["dataset"]["sensitive"] = "mean_area"
    raw["he"]["coeff_mod_bit_sizes"] = [60, 29, 20]
    del raw["kpis"]["max_ece"]
    v2 = type(v1).model_validate(raw)
    receive_plan(site, plan_to_toml(v1))
    receive_plan(site, plan_to_toml(v2))
    changes = {c.path: (c.old, c.new) for c in plan_diff(site, plan_hash(v2)).changes}
    assert changes["dataset.sensitive"] == ("(absent)", "mean_area")
    assert changes["kpis.max_ece"] == ("0.2", "(absent)")
    assert changes["he.coeff_mod_bit_sizes"] == ("[60, 27, 20]", "[60, 29, 20]")
    assert set(changes) == {"dataset.sensitive", "kpis.max_ece", "he.coeff_mod_bit_sizes"}


def test_invalid_plan_is_refused_and_nothing_is_stored(site: SiteDir) -> None:
    text = BREAST.read_text(encoding="utf-8").replace("rounds = 3", "rounds = \"3\"")
    with pytest.raises(TesseraError) as caught:
        receive_plan(site, text)
    assert caught.value.code is ErrorCode.PLAN_INVALID
    assert "training.rounds" in caught.value.message
    with pytest.raises(TesseraError) as bad_toml:
        receive_plan(site, "[study\nname=")
    assert bad_toml.value.code is ErrorCode.PLAN_INVALID
    with pytest.raises(TesseraError) as bad_source:
        receive_plan(site, BREAST.read_text(encoding="utf-8"), source="email")
    assert bad_source.value.code is ErrorCode.CONFIG_INVALID
    assert received_plans(site) == []
    assert _received_events(site) == []


def test_unknown_or_malformed_hashes_are_refused(site: SiteDir) -> None:
    with pytest.raises(TesseraError) as unknown:
        received_plan(site, "ab" * 32)
    assert unknown.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(TesseraError) as unknown_diff:
        plan_diff(site, "ab" * 32)
    assert unknown_diff.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(TesseraError) as short:
        decide(site, "abc", "approved", actor="ops")
    assert short.value.code is ErrorCode.PLAN_INVALID


def test_decide_checks_actor_and_decision(site: SiteDir) -> None:
    digest = plan_hash(load_plan(BREAST))
    with pytest.raises(TesseraError) as no_actor:
        decide(site, digest, "approved", actor=" ")
    assert no_actor.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError) as bad:
        decide(site, digest, "maybe", actor="ops")  # type: ignore[arg-type]
    assert bad.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(TesseraError) as unknown:
        decide(site, digest, "approved", actor="ops")
    assert unknown.value.code is ErrorCode.NOT_FOUND  # never received here
    with pytest.raises(TesseraError) as never:
        decide(site, digest, "revoked", actor="ops")
    assert never.value.code is ErrorCode.NOT_FOUND  # never approved here
    with SiteStore.open(site) as store:
        assert store.approvals() == []
    receive_plan(site, BREAST.read_text(encoding="utf-8"), source="file")
    decide(site, digest.upper(), "approved", actor="ops", note="reviewed")
    with SiteStore.open(site) as store:
        assert store.is_approved(digest)
        assert store.approvals()[0].note == "reviewed"


def test_agent_keeps_a_coordinator_plan_pending_and_still_refuses_it(tmp_path: Path) -> None:
    fed = provision_sites(tmp_path, passphrase=TEST_PASSPHRASE)
    site = fed.sites["s"]
    agent = SiteAgent(fed.vaults["s"])
    plan = override(load_plan(BREAST), target_epsilon=4.0)
    for _ in range(2):
        reply = agent.handle(signed_task(fed.coordinator_key, agent_pb2.TASK_HELLO, plan))
        assert not reply.ok and reply.error_code == "not_approved"
    [stored] = received_plans(site)
    assert (stored.plan_hash, stored.status, stored.source) == (
        plan_hash(plan), "pending", "coordinator")
    assert _received_events(site) == [plan_hash(plan)]


def test_agent_does_not_store_a_plan_that_mismatches_its_hash(tmp_path: Path) -> None:
    fed = provision_sites(tmp_path, passphrase=TEST_PASSPHRASE)
    agent = SiteAgent(fed.vaults["s"])
    request = signed_task(fed.coordinator_key, agent_pb2.TASK_HELLO, load_plan(BREAST),
                          plan_toml=BREAST.read_bytes(), digest="0" * 64)
    reply = agent.handle(request)
    assert reply.error_code == "foreign_study"
    assert received_plans(fed.sites["s"]) == []


def test_summary_lists_the_data_dictionary() -> None:
    raw = load_plan(BREAST).model_dump(mode="json", exclude_none=True)
    raw["dataset"]["columns"] = {
        "mean_radius": {"type": "number", "unit": "mm", "min": 0.0, "max": 50.0,
                        "description": "mean nucleus radius"},
        "benign": {"type": "binary"},
    }
    plan = type(load_plan(BREAST)).model_validate(raw)
    summary = summarise(plan)
    assert summary.columns == {"mean_radius": "number, mm, 0 to 50: mean nucleus radius",
                               "benign": "binary"}
    assert ("column mean_radius", "number, mm, 0 to 50: mean nucleus radius") in summary.lines()


def test_file_plan_keeps_a_parsed_plan_once_without_a_summary(site: SiteDir) -> None:
    text = BREAST.read_text(encoding="utf-8")
    plan = load_plan(BREAST)
    digest = plan_hash(plan)
    with SiteStore.open(site) as store:
        assert file_plan(store, plan, text, digest=digest, source="coordinator") is True
        assert file_plan(store, plan, text, digest=digest, source="coordinator") is False
        with pytest.raises(TesseraError) as err:
            file_plan(store, plan, text, digest=digest, source="mail")
        assert err.value.code is ErrorCode.CONFIG_INVALID
    [stored] = received_plans(site)
    assert (stored.plan_hash, stored.source, stored.plan_toml) == (digest, "coordinator", text)
    assert _received_events(site) == [digest]
    assert receive_plan(site, text).source == "coordinator"  # the inbox keeps the first
