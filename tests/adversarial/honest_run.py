"""An honest encrypted study on in-process sites, kept for the attacks that follow it.

The attacks reuse what a malicious coordinator really holds after a run: every task it sent,
every signed contribution the sites returned, its own signing key, and the sites' approval
of the plan. Each attack then talks to fresh agents over the same site folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from client_app.agent.site_agent import SiteAgent
from client_app.custody.identity import signing_key
from client_app.custody.vault import SiteVault, unlock_vault
from common.plan import StudyPlan, bundled_plan_path, load_plan, override
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.coordinator import run_study
from server.tasks import sign_task
from tessera import local_federation
from tessera.inprocess import InProcessGrid

PASS = "adversarial run passphrase"
RUN = "honest"


@dataclass
class HonestRun:
    """What a coordinator holds after an honest two-round study of three sites."""

    fed: local_federation.LocalFederation
    vaults: dict[str, SiteVault]
    result: dict
    coordinator: SigningKey
    exchanges: list[tuple[str, agent_pb2.TaskRequest, agent_pb2.TaskReply]] = field(
        default_factory=list
    )

    @property
    def plan(self) -> StudyPlan:
        return self.fed.plan

    def agent(self, site: str) -> SiteAgent:
        """A fresh agent (empty caches) over the site's folder."""
        return SiteAgent(self.vaults[site])

    def site_key(self, site: str) -> SigningKey:
        key = signing_key(self.vaults[site])
        assert key is not None
        return key

    def full_set(self, kind: int, round_: int) -> agent_pb2.ContributionSet:
        """A contribution set as the coordinator forwarded it in full during the run."""
        for _, req, _ in self.exchanges:
            for cset in (req.model, req.stats, req.counts, req.attest):
                if cset.kind == kind and cset.round == round_ and cset.envelopes:
                    copy = agent_pb2.ContributionSet()
                    copy.CopyFrom(cset)
                    return copy
        raise AssertionError(f"no set of kind {kind} round {round_} was forwarded")

    def contribution(self, site: str, kind: int, round_: int) -> agent_pb2.UpdateEnvelope:
        """One site's signed contribution (as the coordinator received it)."""
        for env in self.full_set(kind, round_).envelopes:
            if env.site == site:
                copy = agent_pb2.UpdateEnvelope()
                copy.CopyFrom(env)
                return copy
        raise AssertionError(f"no contribution of {site}")

    def task(
        self,
        kind: int,
        round_: int,
        *,
        run_id: str = RUN,
        model: agent_pb2.ContributionSet | None = None,
        stats: agent_pb2.ContributionSet | None = None,
        counts: agent_pb2.ContributionSet | None = None,
        attest: agent_pb2.ContributionSet | None = None,
    ) -> agent_pb2.TaskRequest:
        """A task validly signed with the coordinator's key, carrying whatever it chooses."""
        req = agent_pb2.TaskRequest(
            kind=kind,
            plan_hash=self.fed.plan_hash,  # type: ignore
            plan_toml=self.fed.plan_path.read_bytes(),
            round=round_,
            run_id=run_id,
        )
        for name, cset in (("model", model), ("stats", stats), ("counts", counts),
                           ("attest", attest)):
            if cset is not None:
                getattr(req, name).CopyFrom(cset)
        return sign_task(req, self.coordinator)


def honest_run(root: Path, *, rounds: int = 2, dp: bool = True,
               attesters: int = 0) -> HonestRun:
    """Run an honest HE study (3 sites, ``rounds`` rounds, sums attested by ``attesters``
    sites when not 0) and keep every exchange."""
    raw = override(load_plan(bundled_plan_path("breast_cancer")), rounds=rounds,
                   attesters=attesters or None).model_dump()
    raw["privacy"]["dp"] = dp
    raw["evaluation"]["every_round"] = True  # every kind of task in every round
    plan = StudyPlan.model_validate(raw)
    fed = local_federation.build(root, plan, sites=3, ceilings={}, passphrase=PASS)
    vaults = {s.name: unlock_vault(s, PASS) for s in fed.sites}
    key = SigningKey(
        bytes.fromhex((fed.coordinator_kit / "signing.key").read_text(encoding="ascii").strip())
    )
    run = HonestRun(fed, vaults, {}, key)

    def capture(site: str, request: agent_pb2.TaskRequest, data: bytes) -> bytes:
        copy = agent_pb2.TaskRequest()
        copy.CopyFrom(request)
        run.exchanges.append((site, copy, agent_pb2.TaskReply.FromString(data)))
        return data

    grid = InProcessGrid([SiteAgent(v) for v in vaults.values()], reply_hook=capture)
    run.result = run_study(
        grid,
        workdir=fed.workdir,
        plan_path=fed.plan_path,
        run_id=RUN,
        expected_sites=3,
        custodian=fed.custodian,
    )
    assert run.result["status"] == "completed", run.result.get("error")
    return run


@dataclass
class FreshRun:
    """Genuine contributions of a second run the coordinator asked the sites for (it may:
    each training round is a signed task the plan allows, paid from the sites' budgets),
    with no release, opening or evaluation of the final round done yet."""

    run_id: str
    sets: dict[tuple[int, int], agent_pb2.ContributionSet]


def fresh_run(run: HonestRun, run_id: str, *, train_rounds: int | None = None) -> FreshRun:
    """Stats, ``train_rounds`` training rounds (all by default) and, when every round was
    trained, the final round's evaluation counts of a new run."""
    from server.envelopes import contribution_set

    agents = {site: run.agent(site) for site in run.vaults}
    sets: dict[tuple[int, int], agent_pb2.ContributionSet] = {}

    def step(kind: int, round_: int, out_kind: int, **inputs: agent_pb2.ContributionSet) -> None:
        envs = []
        for agent in agents.values():
            reply = agent.handle(run.task(kind, round_, run_id=run_id, **inputs))
            assert reply.ok, reply.reason
            envs.append(reply.envelope)
        sets[(out_kind, round_)] = contribution_set(out_kind, round_, envs)

    S, W, E = agent_pb2.ENVELOPE_STATS, agent_pb2.ENVELOPE_WEIGHTS, agent_pb2.ENVELOPE_EVAL
    step(agent_pb2.TASK_STATS, 0, S)
    rounds = run.plan.training.rounds
    trained = rounds if train_rounds is None else train_rounds
    for r in range(1, trained + 1):
        inputs = {"stats": sets[(S, 0)]}
        if r > 1:
            inputs["model"] = sets[(W, r - 1)]
        step(agent_pb2.TASK_TRAIN, r, W, **inputs)
    if trained == rounds:
        step(agent_pb2.TASK_EVALUATE, rounds, E, stats=sets[(S, 0)], model=sets[(W, rounds)])
    return FreshRun(run_id, sets)


def copy_set(cset: agent_pb2.ContributionSet) -> agent_pb2.ContributionSet:
    out = agent_pb2.ContributionSet()
    out.CopyFrom(cset)
    return out
