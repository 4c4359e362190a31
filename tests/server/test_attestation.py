"""The coordinator's attested sums: attesters that fail are replaced, too few leave the sets
forwarded in full, and a study completes either way (server/attestation.py)."""

from __future__ import annotations

import json
from pathlib import Path

from client_app.agent.site_agent import SiteAgent
from client_app.custody.vault import unlock_vault
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASS = "attestation test passphrase"


class NoAttesting(SiteAgent):
    """A site that refuses to attest (it answers every other task)."""

    def handle(self, request: agent_pb2.TaskRequest) -> agent_pb2.TaskReply:
        if request.kind == agent_pb2.TASK_ATTEST:
            request = agent_pb2.TaskRequest()  # an unsigned task: refused, signed reply
        return super().handle(request)


def _study(root: Path, *, attesters: int) -> tuple[dict, list[tuple[str, agent_pb2.TaskRequest]]]:
    plan: StudyPlan = override(load_plan(bundled_plan_path("breast_cancer")), rounds=2,
                               attesters=attesters)
    fed = local_federation.build(root, plan, sites=3, ceilings={}, passphrase=PASS)
    vaults = [unlock_vault(s, PASS) for s in fed.sites]
    agents = [SiteAgent(vaults[0]), SiteAgent(vaults[1]), NoAttesting(vaults[2])]
    seen: list[tuple[str, agent_pb2.TaskRequest]] = []

    def keep(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        seen.append((site, request))
        return data

    result = run_study(InProcessGrid(agents, reply_hook=keep), workdir=fed.workdir,
                       plan_path=fed.plan_path, run_id="r", expected_sites=3,
                       custodian=fed.custodian)
    events = [json.loads(line) for line in
              (fed.coordinator_dir / "runs" / "r" / "progress.jsonl").read_text().splitlines()]
    return {"result": result, "events": events}, seen


def test_a_failing_attester_is_replaced(tmp_path: Path) -> None:
    out, seen = _study(tmp_path / "w", attesters=2)
    assert out["result"]["status"] == "completed", out["result"].get("error")
    attested = [e for e in out["events"] if e["event"] == "sum_attested"]
    assert len(attested) == 3  # the statistics and both rounds' weights
    assert all(len(e["attesters"]) == 2 and "site-3" not in e["attesters"] for e in attested)
    assert any(e["failed"] == ["site-3"] for e in attested)  # asked, refused, replaced
    trains = [r for _, r in seen if r.kind == agent_pb2.TASK_TRAIN and r.round == 2]
    assert trains and all(r.model.sum_digest and not r.model.envelopes for r in trains)


def test_too_few_attesters_forward_every_contribution(tmp_path: Path) -> None:
    out, seen = _study(tmp_path / "w", attesters=3)
    assert out["result"]["status"] == "completed", out["result"].get("error")
    assert not [e for e in out["events"] if e["event"] == "sum_attested"]
    missing = [e for e in out["events"] if e["event"] == "sum_not_attested"]
    assert missing and all(e["failed"] == ["site-3"] for e in missing)
    trains = [r for _, r in seen if r.kind == agent_pb2.TASK_TRAIN and r.round == 2]
    assert trains and all(r.model.envelopes and not r.model.sum_digest for r in trains)
