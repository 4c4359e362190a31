"""The state of one study run on the coordinator: who takes part, which contributions each
step produced, and how each site's signed task is built and exchanged.

Sites decrypt nothing the coordinator aggregated: each task carries the signed
contributions of the steps it builds on (the round-0 statistics, the previous round's
weights, a round's evaluation counts). A site that already verified a set in this run gets it
by reference (its digests); :attr:`StudyRun.delivered` remembers who verified what. With
attested sums (:mod:`server.attestation`) a set's attested form stands in for its
contributions in the tasks that accept it (:data:`ATTESTED_TASKS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.serverapp import Grid

from common.errors import ErrorCode, TesseraError
from common.eval_counts import require_fixed_groups, vector_length
from common.eval_partition import evaluation_bins
from common.plan import StudyPlan
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.collect import Refusal
from server.envelopes import Expectation, ReplayGuard, by_reference
from server.he_context import EvaluationContext
from server.run_record import RunRecorder
from server.tasks import Reply, ReplyCheck, build_message, read_replies, sign_task

#: Refusal codes after which a site takes no further part in training this run.
TERMINAL_REFUSALS = frozenset({ErrorCode.BUDGET_EXCEEDED.value, ErrorCode.NOT_APPROVED.value,
                               ErrorCode.KEY_MISSING.value, ErrorCode.NOT_FOUND.value})


class StudyAbortedError(TesseraError):
    """Too few sites remain to go on with the study."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.PROCESS_FAILED, message)


SetKey = tuple[int, int]  # (envelope kind, round)

#: Tasks whose decryption stays at the site: they accept a set's attested form.
ATTESTED_TASKS = frozenset({agent_pb2.TASK_TRAIN, agent_pb2.TASK_EVALUATE,
                            agent_pb2.TASK_IMPORTANCE, agent_pb2.TASK_EVALUATE_OWN})


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
    #: The coordinator's Ed25519 key: every task is signed with it.
    coordinator_key: SigningKey
    #: Each site's Ed25519 public key from the signed manifest.
    signing_keys: dict[str, str]
    trainers: dict[int, str] = field(default_factory=dict)
    evaluators: dict[int, str] = field(default_factory=dict)
    #: Accepted contributions of the steps still built on, by (envelope kind, round).
    sets: dict[SetKey, agent_pb2.ContributionSet] = field(default_factory=dict)
    #: Which sets each site has verified in this run (sent by reference afterwards).
    delivered: set[tuple[str, int, int]] = field(default_factory=set)
    #: Attested forms of sets ([federation] attesters), by (envelope kind, round).
    attested: dict[SetKey, agent_pb2.ContributionSet] = field(default_factory=dict)
    #: Which sets each site has opened from their attested form.
    delivered_attested: set[tuple[str, int, int]] = field(default_factory=set)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    site_epsilon: dict[str, float] = field(default_factory=dict)
    site_examples: dict[str, int] = field(default_factory=dict)
    dataset_versions: dict[str, str] = field(default_factory=dict)
    #: The site asked first to release the model and to open summed evaluation counts.
    custodian: str = ""
    #: Seconds to wait for the sites' replies to one request.
    timeout: float = 1800.0
    #: Whether every round ends with federated evaluation (leave-one-site-out runs do not).
    evaluate_rounds: bool = True
    #: Sites refused at admission (report form), kept for the checkpoint of a resumable run.
    admission_refused: list[dict[str, str]] = field(default_factory=list)

    def keep_sets_from(self, round_: int) -> None:
        """Forget the weights and evaluation-count sets of rounds before ``round_``: no later
        step builds on them (a round trains on the previous round's weights only), and a
        run that kept every round's ciphertexts grew by megabytes a round."""
        for key in [k for k in self.sets if k[0] != agent_pb2.ENVELOPE_STATS
                    and k[1] < round_]:
            del self.sets[key]
            self.attested.pop(key, None)

    # -- tasks -------------------------------------------------------------------------
    def request(self, site: str, kind: int, round_: int, *, model: int | None = None,
                stats: bool = False, counts: int | None = None,
                attest: SetKey | None = None) -> agent_pb2.TaskRequest:
        """A signed task for ``site``: with the weights set of round ``model``, the
        statistics set and/or the evaluation-counts set of round ``counts``; ``attest``
        (kind, round): every contribution of that set, for the site to attest."""
        req = agent_pb2.TaskRequest(kind=kind, plan_hash=self.plan_hash,  # type: ignore[arg-type]
                                    plan_toml=self.plan_toml, round=round_, run_id=self.run_id)
        if model is not None:
            req.model.CopyFrom(self._set_for(site, kind, agent_pb2.ENVELOPE_WEIGHTS, model))
        if stats:
            req.stats.CopyFrom(self._set_for(site, kind, agent_pb2.ENVELOPE_STATS, 0))
        if counts is not None:
            req.counts.CopyFrom(self._set_for(site, kind, agent_pb2.ENVELOPE_EVAL, counts))
        if attest is not None:
            req.attest.CopyFrom(self._full(*attest))
        return sign_task(req, self.coordinator_key)

    def _full(self, kind: int, round_: int) -> agent_pb2.ContributionSet:
        full = self.sets.get((kind, round_))
        if full is None:
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               f"no accepted contributions for round {round_} to forward")
        return full

    def _set_for(self, site: str, task: int, kind: int,
                 round_: int) -> agent_pb2.ContributionSet:
        """The set as ``site`` gets it for a ``task``: by reference when it verified it
        before (an attested sum counts only where the task accepts one), the attested form
        when there is one and the task accepts it, else every contribution."""
        full = self._full(kind, round_)
        key = (site, kind, round_)
        takes_attested = task in ATTESTED_TASKS
        if key in self.delivered or (takes_attested and key in self.delivered_attested):
            return by_reference(full)
        attested = self.attested.get((kind, round_))
        return attested if takes_attested and attested is not None else full

    def send(self, grid: Grid, requests: dict[int, agent_pb2.TaskRequest], *,
             names: dict[int, str] | None = None,
             timeout: float | None = None) -> tuple[list[Reply], dict[int, int]]:
        """Send one signed request per node; the authenticated replies and bytes sent (the
        replies that came within ``timeout``, by default the run's)."""
        messages: list[Message] = []
        sizes: dict[int, int] = {}
        for node, req in requests.items():
            message, size = build_message(req, node)
            messages.append(message)
            sizes[node] = size
        check = ReplyCheck(requests, self.signing_keys, names)
        wait = self.timeout if timeout is None else timeout
        replies = read_replies(grid.send_and_receive(messages, timeout=wait), check)
        for item in replies:
            if item.reply is not None and item.reply.ok:
                self.mark_delivered(requests[item.node_id], item.reply.site)
        return replies, sizes

    def mark_delivered(self, req: agent_pb2.TaskRequest, site: str) -> None:
        """Remember the sets a site verified by answering ``req`` well."""
        for cset in (req.model, req.stats, req.counts):
            if cset.envelopes:
                self.delivered.add((site, int(cset.kind), int(cset.round)))
            elif cset.sum_digest:
                self.delivered_attested.add((site, int(cset.kind), int(cset.round)))

    # -- expectations --------------------------------------------------------------------
    def expectation(self, kind: int, round_: int, length: int) -> Expectation:
        """What contributions of this kind and round must look like."""
        he = self.plan.he
        return Expectation(
            plan_hash=self.plan_hash, run_id=self.run_id, round=round_, kind=kind,
            length=length, encrypted=he.enabled,
            fingerprint=self.evaluation.fingerprint if self.evaluation else "",
            slots=he.poly_modulus_degree // 2, poly_modulus_degree=he.poly_modulus_degree,
            primes=len(he.coeff_mod_bit_sizes),
        )

    def note_epsilon(self, site: str, metrics: Mapping[str, float]) -> None:
        """Keep the study epsilon a site reported with a release (every release spends)."""
        if "epsilon_study" in metrics:
            self.site_epsilon[site] = float(metrics["epsilon_study"])

    def eval_expectation(self, round_: int) -> Expectation:
        """What a site's encrypted evaluation counts must look like (the plan's layout)."""
        length = vector_length(require_fixed_groups(self.plan),
                               bins=evaluation_bins(self.plan))
        return self.expectation(agent_pb2.ENVELOPE_EVAL, round_, length)

    def require_quorum(self, count: int, what: str, *,
                       left_out: Sequence[Refusal] = ()) -> None:
        """Abort the study if fewer than the plan's minimum sites remain; the message names
        each site left out of the step and why (``left_out``, as the report records them)."""
        need = self.plan.federation.min_sites
        if count < need:
            why = "; ".join(f"{r.site}: {r.code} ({r.reason})" for r in left_out)
            raise StudyAbortedError(f"{what}: only {count} site(s) left, the plan needs {need}"
                                    + (f"; left out: {why}" if why else ""))

    @property
    def evaluation_context(self) -> bytes | None:
        """Add-only CKKS context bytes, when HE is on."""
        return self.evaluation.context if self.evaluation else None
