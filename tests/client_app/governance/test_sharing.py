"""What a site shares beyond encrypted sums: own evaluation counts and feature importance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.agent.site_agent import SiteAgent
from client_app.governance.sharing import SHARE_IMPORTANCE, set_sharing, shares, sharing
from client_app.store.folder import SiteDir, init_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, plan_hash
from protos.tessera.v1 import agent_pb2
from tessera.cli import app
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites, signed_task

runner = CliRunner()


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    return init_site_dir(tmp_path / "site", name="h1")


def test_everything_is_shared_until_the_operator_says_no(site: SiteDir) -> None:
    with SiteStore.open(site) as store:
        assert sharing(store).to_json() == {"own_counts": True, "importance": True}
        assert set_sharing(store, "importance", False, actor="Dana") is True
        assert set_sharing(store, "importance", False, actor="Dana") is False  # unchanged
        assert not shares(store, "importance") and shares(store, "own_counts")
        assert store.setting(SHARE_IMPORTANCE) == "no"
        events = store.events(kind="sharing_changed")
    assert [e.details for e in events] == [{"what": "importance", "allowed": False,
                                           "actor": "Dana"}]


def test_unknown_choice_and_missing_actor_are_refused(site: SiteDir) -> None:
    with SiteStore.open(site) as store:
        with pytest.raises(TesseraError) as unknown:
            set_sharing(store, "raw_rows", True, actor="Dana")
        assert unknown.value.code is ErrorCode.CONFIG_INVALID
        with pytest.raises(TesseraError):
            set_sharing(store, "importance", False, actor="  ")
        assert store.events(kind="sharing_changed") == []


def test_agent_refuses_importance_when_the_site_does_not_share_it(tmp_path: Path) -> None:
    fed = provision_sites(tmp_path, passphrase=TEST_PASSPHRASE)
    agent = SiteAgent(fed.vaults["s"])
    plan = load_plan(bundled_plan_path("breast_cancer"))
    with SiteStore.open(fed.sites["s"]) as store:
        store.approve(plan_hash(plan), actor="Dana")
        set_sharing(store, "importance", False, actor="Dana")
    request = signed_task(fed.coordinator_key, agent_pb2.TASK_IMPORTANCE, plan,
                          round_=plan.training.rounds)
    reply = agent.handle(request)
    assert not reply.ok and reply.error_code == ErrorCode.PERMISSION_DENIED.value
    assert "does not share its feature importance" in reply.reason


def test_sharing_command_shows_and_changes_the_choices(site: SiteDir) -> None:
    base = ["site", "sharing", "--site-dir", str(site.root)]
    shown = runner.invoke(app, [*base, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == {"importance": True, "own_counts": True,
                                        "min_cell_count": 10}
    assert runner.invoke(app, [*base, "--own-counts", "no", "--actor", " "]).exit_code == 2
    assert runner.invoke(app, [*base, "--own-counts", "maybe", "--actor", "D"]).exit_code == 2
    changed = runner.invoke(app, [*base, "--own-counts", "no", "--actor", "Dana"])
    assert changed.exit_code == 0, changed.output
    assert "own evaluation counts (leave-one-site-out): not shared" in changed.output
    with SiteStore.open(site) as store:
        assert not shares(store, "own_counts") and shares(store, "importance")
