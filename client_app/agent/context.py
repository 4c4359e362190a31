"""What one task runs with: the admitted request and plan, the site's store, vault and
identity, and the verified inputs it may use (sums of signed contributions, never an
aggregate the coordinator claims)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from torch import nn

from client_app.agent.contributions import Expected, SumVerifier, VerifiedSum
from client_app.custody.ckks_keys import ckks_params, load_secret_context
from client_app.custody.vault import SiteVault
from client_app.learning.site_data import SiteSplit, load_split
from client_app.learning.statistics import standardisation_of
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups, vector_layout
from common.eval_partition import evaluation_bins
from common.layout import TensorSlot
from common.models import build_model, model_to_vector, vector_to_model
from common.plan import StudyPlan, statistics_length
from privacy.ckks import CkksParams
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2


@dataclass(frozen=True)
class AgentIdentity:
    """Who the agent is and whom it trusts, from the site's kit and signed manifest."""

    site: str
    signing_key: SigningKey = field(repr=False)
    #: The coordinator's Ed25519 public key: every task must carry its signature.
    coordinator_key: str
    #: Every site of the federation: name -> Ed25519 public key.
    site_keys: dict[str, str]


def stats_layout(plan: StudyPlan) -> tuple[TensorSlot, ...]:
    """Layout of a statistics contribution: per-feature sums, then sums of squares (of the
    rows normalised with the declared ranges: client_app/learning/statistics.py)."""
    length = statistics_length(plan)
    return (TensorSlot(name="feature_sums", shape=(length,), offset=0, length=length),)


def model_layout(plan: StudyPlan) -> tuple[TensorSlot, ...]:
    """Layout of a weights contribution: the plan's model, flattened."""
    return tuple(model_to_vector(initial_model(plan))[1])


def initial_model(plan: StudyPlan) -> nn.Module:
    """The study's seeded initial model: every site builds it itself, from the public seed."""
    return build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)


def counts_layout(plan: StudyPlan, groups: tuple[str, ...]) -> tuple[TensorSlot, ...]:
    """Layout of an evaluation-counts contribution (the plan's score bins)."""
    return tuple(vector_layout(groups, bins=evaluation_bins(plan)))


@dataclass
class TaskContext:
    """One admitted task."""

    request: agent_pb2.TaskRequest
    plan: StudyPlan
    plan_hash: str
    store: SiteStore
    vault: SiteVault
    identity: AgentIdentity
    sums: SumVerifier
    #: Who may contribute to this study's sums (looked up when a sum is first opened).
    find_signers: Callable[[], dict[str, str]]

    #: Seconds spent verifying, summing and decrypting contributions in this task.
    verify_seconds: float = 0.0

    @cached_property
    def signers(self) -> dict[str, str]:
        """Site name -> Ed25519 key of every site whose contributions this site accepts."""
        return self.find_signers()

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def round(self) -> int:
        return int(self.request.round)

    @property
    def site(self) -> str:
        return self.identity.site

    @property
    def params(self) -> CkksParams:
        return ckks_params(self.plan)

    @cached_property
    def secret(self) -> bytes | None:
        """The study's CKKS key at this site when the plan encrypts (KEY_MISSING if absent)."""
        return load_secret_context(self.vault, self.plan_hash) if self.plan.he.enabled else None

    @cached_property
    def split(self) -> SiteSplit:
        """This site's train and held-out rows for the study."""
        return load_split(self.vault, self.plan)

    def open_stats(self) -> VerifiedSum:
        """The verified round-0 statistics sum of this run."""
        return self._open(self.request.stats, self._expect_stats(), "federation statistics")

    def open_model(self, round_: int) -> VerifiedSum:
        """The verified sum of the weights contributions of ``round_`` in this run."""
        return self._open(self.request.model, self._expect_model(round_),
                          f"the model of round {round_}")

    def open_counts(self, groups: tuple[str, ...]) -> VerifiedSum:
        """The verified sum of the evaluation-counts contributions of this task's round."""
        return self._open(self.request.counts, self._expect_counts(groups), "evaluation counts")

    @property
    def full_only(self) -> bool:
        """Whether this task's decryption leaves the site (the release, opening counts): it
        then accepts only sums recomputed here from every contribution, never attested ones."""
        return self.request.kind in (agent_pb2.TASK_RELEASE, agent_pb2.TASK_OPEN_COUNTS)

    def verify_inputs(self) -> None:
        """Check every contribution set the task must carry, and that it carries no other,
        before anything is decrypted."""
        request, kind, round_ = self.request, self.request.kind, self.round
        wants_stats = kind not in (agent_pb2.TASK_HELLO, agent_pb2.TASK_STATS,
                                   agent_pb2.TASK_OPEN_COUNTS, agent_pb2.TASK_DRIFT,
                                   agent_pb2.TASK_ATTEST)
        model_round = {agent_pb2.TASK_TRAIN: round_ - 1}.get(kind, round_)
        wants_model = wants_stats and model_round >= 1
        wants_counts = kind == agent_pb2.TASK_OPEN_COUNTS
        wants_attest = kind == agent_pb2.TASK_ATTEST
        for name, wanted in (("stats", wants_stats), ("model", wants_model),
                             ("counts", wants_counts), ("attest", wants_attest)):
            if request.HasField(name) != wanted:
                state = "carries no" if wanted else "may not carry"
                raise TesseraError(ErrorCode.BAD_ENVELOPE,
                                   f"this task {state} {name} contributions")
        checks = []
        if wants_stats:
            checks.append((request.stats, self._expect_stats()))
        if wants_model:
            checks.append((request.model, self._expect_model(model_round)))
        if wants_counts:
            checks.append((request.counts, self._expect_counts(require_fixed_groups(self.plan))))
        started = time.perf_counter()
        for contributions, expect in checks:
            self.sums.verify(contributions, expect, plan=self.plan, signers=self.signers,
                             secret=self.secret, full_only=self.full_only)
        if wants_attest:  # an attester checks every contribution itself, never a reference
            if not request.attest.envelopes:
                raise TesseraError(ErrorCode.BAD_ENVELOPE,
                                   "an attest task must carry every contribution")
            self.sums.verify(request.attest, self.expect_attested(), plan=self.plan,
                             signers=self.signers, secret=self.secret, full_only=True)
        self.verify_seconds += time.perf_counter() - started

    def expect_attested(self) -> Expected:
        """What the set of an attest task must be: the statistics (round 0) or the weights of
        one of the plan's rounds, the task's round; anything else is OUT_OF_SCHEDULE."""
        cset, rounds = self.request.attest, self.plan.training.rounds
        if cset.round != self.round:
            raise TesseraError(ErrorCode.BAD_ENVELOPE,
                               "the set to attest is of another round than the task")
        if cset.kind == agent_pb2.ENVELOPE_STATS and self.round == 0:
            return self._expect_stats()
        if cset.kind == agent_pb2.ENVELOPE_WEIGHTS and 1 <= self.round <= rounds:
            return self._expect_model(self.round)
        raise TesseraError(ErrorCode.OUT_OF_SCHEDULE,
                           "only the statistics of round 0 and the weights of the plan's "
                           "rounds are attested")

    def _expect_stats(self) -> Expected:
        return Expected(kind=agent_pb2.ENVELOPE_STATS, round=0, run_id=self.run_id,
                        plan_hash=self.plan_hash, layout=stats_layout(self.plan))

    def _expect_model(self, round_: int) -> Expected:
        return Expected(kind=agent_pb2.ENVELOPE_WEIGHTS, round=round_, run_id=self.run_id,
                        plan_hash=self.plan_hash, layout=model_layout(self.plan))

    def _expect_counts(self, groups: tuple[str, ...]) -> Expected:
        return Expected(kind=agent_pb2.ENVELOPE_EVAL, round=self.round, run_id=self.run_id,
                        plan_hash=self.plan_hash, layout=counts_layout(self.plan, groups))

    def _open(self, contributions: agent_pb2.ContributionSet, expect: Expected,
              what: str) -> VerifiedSum:
        if not contributions.envelopes and not contributions.digests:
            raise TesseraError(ErrorCode.BAD_ENVELOPE, f"the task carries no {what}")
        started = time.perf_counter()
        opened = self.sums.open(contributions, expect, plan=self.plan, signers=self.signers,
                                secret=self.secret, full_only=self.full_only)
        self.verify_seconds += time.perf_counter() - started
        return opened

    def standardisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Federation-wide mean and standard deviation from the verified statistics."""
        stats = self.open_stats()
        return standardisation_of(self.plan, stats.values, float(stats.examples))

    def model_from(self, weights: np.ndarray) -> nn.Module:
        """The plan's model holding ``weights``."""
        model = initial_model(self.plan)
        vector_to_model(model, weights, list(model_layout(self.plan)))
        return model

    def global_model(self, round_: int) -> tuple[nn.Module, np.ndarray]:
        """The global model after ``round_`` (the seeded initial model for round 0)."""
        if round_ == 0:
            model = initial_model(self.plan)
            return model, model_to_vector(model)[0]
        weights = self.open_model(round_).mean
        self._check_step(round_, weights)
        return self.model_from(weights), weights

    def _check_step(self, round_: int, weights: np.ndarray) -> None:
        """Second line of defence: a round moves the model by at most the plan's update clip
        (each site clips its own update), checked when this site knows the previous model."""
        if round_ == 1:
            previous: np.ndarray | None = model_to_vector(initial_model(self.plan))[0]
        else:
            before = self.sums.cached(run_id=self.run_id, kind=agent_pb2.ENVELOPE_WEIGHTS,
                                      round_=round_ - 1)
            previous = None if before is None else before.mean
        if previous is None:
            return
        step = float(np.linalg.norm(weights - previous))
        if not np.isfinite(step) or step > self.plan.privacy.update_clip * (1 + 1e-6) + 1e-6:
            raise TesseraError(ErrorCode.BAD_CIPHERTEXT,
                               f"the model of round {round_} moved further than the plan's "
                               "update clip allows: not an honest aggregate")
