"""The state of one study run on the coordinator: who takes part, what each round expects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups, vector_length
from common.metrics import DEFAULT_BINS
from common.plan import StudyPlan
from protos.tessera.v1 import agent_pb2
from server.envelopes import Expectation, ReplayGuard
from server.he_context import EvaluationContext
from server.run_record import RunRecorder

#: Refusal codes after which a site takes no further part in training this run.
TERMINAL_REFUSALS = {"budget_exceeded", "not_approved", "key_missing", "not_found"}


class StudyAbortedError(TesseraError):
    """Too few sites remain to go on with the study."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PROCESS_FAILED, message)


@dataclass
class StudyRun:
    """Everything the strategy needs about the run it serves."""

    plan: StudyPlan
    plan_toml: bytes
    plan_hash: str
    run_id: str
    recorder: RunRecorder
    evaluation: EvaluationContext | None
    model_length: int
    trainers: dict[int, str] = field(default_factory=dict)
    evaluators: dict[int, str] = field(default_factory=dict)
    stats: agent_pb2.UpdateEnvelope | None = None
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    site_epsilon: dict[str, float] = field(default_factory=dict)
    site_examples: dict[str, int] = field(default_factory=dict)
    dataset_versions: dict[str, str] = field(default_factory=dict)
    #: Each site's Ed25519 public key from the signed manifest; None when unprovisioned.
    signing_keys: dict[str, str] | None = None
    #: The site asked first to release the model and to open summed evaluation counts.
    custodian: str = ""
    #: Seconds to wait for the sites' replies to one request.
    timeout: float = 1800.0
    #: Whether every round ends with federated evaluation (leave-one-site-out runs do not).
    evaluate_rounds: bool = True

    def request(
        self, kind: str, round_: int, global_env: agent_pb2.UpdateEnvelope | None = None
    ) -> agent_pb2.TaskRequest:
        """A task request for this run."""
        req = agent_pb2.TaskRequest(
            kind=kind, plan_hash=self.plan_hash, plan_toml=self.plan_toml, round=round_,
            run_id=self.run_id,
        )
        if global_env is not None:
            getattr(req, "global").CopyFrom(global_env)
        if self.stats is not None:
            req.stats.CopyFrom(self.stats)
        return req

    def expectation(self, kind: str, round_: int, length: int) -> Expectation:
        """What envelopes of this kind and round must look like."""
        he = self.plan.he
        return Expectation(
            plan_hash=self.plan_hash, round=round_, kind=kind, length=length,
            encrypted=he.enabled,
            fingerprint=self.evaluation.fingerprint if self.evaluation else "",
            slots=he.poly_modulus_degree // 2, poly_modulus_degree=he.poly_modulus_degree,
            primes=len(he.coeff_mod_bit_sizes),
        )

    def eval_expectation(self, round_: int) -> Expectation:
        """What a site's encrypted evaluation counts must look like (the plan's fixed layout)."""
        length = vector_length(require_fixed_groups(self.plan), bins=DEFAULT_BINS)
        return self.expectation("eval", round_, length)

    def require_quorum(self, count: int, what: str) -> None:
        """Abort the study if fewer than the plan's minimum sites remain."""
        need = self.plan.federation.min_sites
        if count < need:
            raise StudyAbortedError(f"{what}: only {count} site(s) left, the plan needs {need}")

    @property
    def evaluation_context(self) -> bytes | None:
        """Add-only CKKS context bytes, when HE is on."""
        return self.evaluation.context if self.evaluation else None


def chunks_needed(length: int, slots: int) -> int:
    """Ciphertexts needed for a vector."""
    return math.ceil(length / slots)
