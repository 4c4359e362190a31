"""Admission parses a plan once per distinct text, and a cached plan admits nothing that a
freshly parsed one would refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.agent.admission import admit_plan, parsed_plan
from client_app.agent.site_agent import SiteAgent
from client_app.governance.studies import decide, receive_plan
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, override, plan_hash, plan_to_toml
from protos.tessera.v1 import agent_pb2
from tests.conftest import TEST_PASSPHRASE
from tests.federation import provision_sites, signed_task

BREAST = bundled_plan_path("breast_cancer")


def _request(text: bytes, digest: str) -> agent_pb2.TaskRequest:
    return agent_pb2.TaskRequest(kind=agent_pb2.TASK_HELLO, plan_toml=text, plan_hash=digest)


def test_the_same_plan_text_is_parsed_once_and_shared() -> None:
    plan = load_plan(BREAST)
    text = plan_to_toml(plan).encode()
    first = admit_plan(_request(text, plan_hash(plan)))
    again = admit_plan(_request(bytes(text), plan_hash(plan)))
    assert first is again and first == plan
    assert parsed_plan(text) == (plan, plan_hash(plan))


def test_a_cached_plan_still_refuses_a_hash_it_does_not_match() -> None:
    plan = load_plan(BREAST)
    text = plan_to_toml(plan).encode()
    admit_plan(_request(text, plan_hash(plan)))
    other = plan_hash(override(plan, target_epsilon=4.0))
    with pytest.raises(TesseraError) as err:
        admit_plan(_request(text, other))
    assert err.value.code is ErrorCode.FOREIGN_STUDY


@pytest.mark.parametrize("text", [b"\xff\xfe not utf-8", b"name = 'half a plan'"])
def test_a_bad_plan_is_refused_every_time(text: bytes) -> None:
    for _ in range(2):
        with pytest.raises(TesseraError) as err:
            admit_plan(_request(text, "0" * 64))
        assert err.value.code is ErrorCode.PLAN_INVALID


def test_an_agent_refuses_again_a_task_of_a_plan_revoked_after_it_was_cached(
        tmp_path: Path) -> None:
    fed = provision_sites(tmp_path, passphrase=TEST_PASSPHRASE)
    site = fed.sites["s"]
    agent = SiteAgent(fed.vaults["s"])
    plan = load_plan(BREAST)
    receive_plan(site, plan_to_toml(plan))
    decide(site, plan_hash(plan), "approved", actor="op")
    first = agent.handle(signed_task(fed.coordinator_key, agent_pb2.TASK_HELLO, plan))
    assert first.error_code != "not_approved"
    decide(site, plan_hash(plan), "revoked", actor="op")
    second = agent.handle(signed_task(fed.coordinator_key, agent_pb2.TASK_HELLO, plan,
                                      run_id="r2"))
    assert not second.ok and second.error_code == "not_approved"
