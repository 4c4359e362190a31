"""The site agent: the one process that touches a hospital's data, keys and privacy ledger.

Every Flower message reaches the agent as a :class:`TaskRequest` (through the ClientApp shim
and the gRPC service, or directly for the in-process agent used by tests and simulation).
The agent admits only studies whose plan hash the site approved, trains with DP-SGD inside the
site's privacy ceiling, records each run in the ledger and answers with encrypted envelopes.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import numpy as np

from client_app.agent.envelopes import (
    counts_to_proto,
    layout_to_proto,
    mean_of,
    open_counts,
    seal_counts,
    seal_vector,
)
from client_app.custody.ckks_keys import ckks_params, load_secret_context
from client_app.custody.identity import sign_envelope, sign_reply, signing_key
from client_app.custody.vault import SiteVault
from client_app.governance.audit_trail import sync_quietly
from client_app.governance.sharing import refuse_unless_shared
from client_app.governance.studies import receive_plan
from client_app.learning.importance import importance_reply
from client_app.learning.local_eval import keep_final_model
from client_app.learning.site_data import (
    SiteSplit,
    feature_sums,
    load_split,
    standardise,
    standardiser,
)
from client_app.learning.training import train_local
from client_app.store.agent_state import record_agent_state
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.eval_counts import HeldOutCounts, count_held_out, fixed_groups, require_fixed_groups
from common.layout import TensorSlot
from common.metrics import DEFAULT_BINS
from common.models import build_model, model_to_vector, predict_scores, vector_to_model
from common.plan import StudyPlan, parse_plan, plan_hash
from privacy.accounting import DpStep, epsilon_for_history, noise_for_target, plan_sampling
from privacy.ckks import check_headroom
from protos.tessera.v1 import agent_pb2

log = logging.getLogger(__name__)

#: Largest federation the headroom check provisions for.
MAX_CONTRIBUTORS = 1000
#: Site setting: "no" refuses to share this site's own evaluation counts (leave-one-site-out).


def _training_seed() -> int:
    """A secret seed for local training: DP noise must not be reproducible by anyone else.

    The model's initial weights come from the public study seed; the sampling and the noise
    of DP-SGD never do, or whoever knows the plan could regenerate and subtract the noise.
    """
    return secrets.randbits(62)


def clip_update(update: np.ndarray, *, bound: float) -> np.ndarray:
    """Scale an update down to L2 norm ``bound`` if it is longer."""
    norm = float(np.linalg.norm(update))
    return update if norm <= bound else update * (bound / norm)


class SiteAgent:
    """Serve one site's study tasks. Thread-safe: tasks run one at a time."""

    def __init__(self, vault: SiteVault) -> None:
        self.vault = vault
        self.site = vault.site
        self._signing_key = signing_key(vault)
        sync_quietly(vault)
        self._lock = threading.Lock()
        self._trained: set[tuple[str, str, int]] = set()

    # -- boundary ---------------------------------------------------------------------
    def handle(self, request: agent_pb2.TaskRequest) -> agent_pb2.TaskReply:
        """Answer one task; failures become a reply with a code and a reason."""
        with self._lock:
            try:
                reply = self._dispatch(request)
            except TesseraError as err:
                log.info("task %s refused: %s", request.kind, err.code.value)
                reply = agent_pb2.TaskReply(ok=False, error_code=err.code.value, reason=err.message)
            except Exception:  # the boundary: never leak internals to the coordinator
                log.exception("task %s failed", request.kind)
                reply = agent_pb2.TaskReply(
                    ok=False, error_code=ErrorCode.INTERNAL.value, reason="internal error at site"
                )
            record_agent_state(self.site, kind=request.kind, plan_toml=request.plan_toml,
                               plan_hash=request.plan_hash, round_=int(request.round),
                               ok=reply.ok, error_code=reply.error_code, reason=reply.reason)
        reply.site = self.site.name
        if self._signing_key is not None:
            sign_reply(reply, request, self._signing_key)
            sync_quietly(self.vault)
        return reply

    def _dispatch(self, request: agent_pb2.TaskRequest) -> agent_pb2.TaskReply:
        handlers = {
            "hello": self._hello,
            "stats": self._stats,
            "train": self._train,
            "evaluate": self._evaluate,
            "open_counts": self._open_counts,
            "evaluate_own": self._evaluate_own,
            "release": self._release,
            "importance": self._importance,
        }
        handler = handlers.get(request.kind)
        if handler is None:
            raise TesseraError(ErrorCode.BAD_ENVELOPE, f"unknown task kind '{request.kind}'")
        with SiteStore.open(self.site) as store:
            plan = self._admit(request, store)
            return handler(request, plan, store)

    def _admit(self, request: agent_pb2.TaskRequest, store: SiteStore) -> StudyPlan:
        plan = parse_plan(request.plan_toml.decode("utf-8"))
        digest = plan_hash(plan)
        if digest != request.plan_hash:
            raise TesseraError(
                ErrorCode.FOREIGN_STUDY, "the study plan sent does not match its plan hash"
            )
        # Every plan the coordinator sends lands in the operator's inbox (pending until
        # approved), so an unapproved study can be reviewed rather than silently refused.
        receive_plan(self.site, request.plan_toml.decode("utf-8"), source="coordinator")
        if not store.is_approved(digest):
            store.record_event(
                "study_refused", plan_hash=digest, details={"reason": "not approved"}
            )
            raise TesseraError(
                ErrorCode.NOT_APPROVED,
                f"study {digest[:12]} is not approved at site '{self.site.name}'",
            )
        return plan

    def _key(self, plan: StudyPlan, digest: str) -> bytes | None:
        return load_secret_context(self.vault, digest) if plan.he.enabled else None

    # -- tasks ------------------------------------------------------------------------
    def _hello(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        split = load_split(self.vault, plan)
        store.record_event("study_received", plan_hash=request.plan_hash, details={})
        return agent_pb2.TaskReply(
            ok=True, dataset_version=split.dataset_version,
            metrics={"examples_train": len(split.train.y), "examples_test": len(split.test.y)},
        )

    def _stats(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        split = load_split(self.vault, plan)
        sums = feature_sums(split.train)
        secret = self._key(plan, request.plan_hash)
        if secret is not None:
            check_headroom(ckks_params(plan), max_abs=float(np.abs(sums).max()),
                           contributors=MAX_CONTRIBUTORS)
        slot = TensorSlot(name="feature_sums", shape=(sums.size,), offset=0, length=sums.size)
        env = seal_vector(
            kind="stats", plan_hash=request.plan_hash, round_=0, site=self.site.name,
            example_count=len(split.train.y), values=sums, layout=[slot], secret_context=secret,
        )
        if self._signing_key is not None:
            sign_envelope(env, self._signing_key)
        return agent_pb2.TaskReply(ok=True, envelope=env)

    def _standardised(self, request, plan: StudyPlan, secret: bytes | None, split: SiteSplit):
        if not request.HasField("stats"):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "task carries no federation statistics")
        sums = mean_of(request.stats, secret_context=secret) * request.stats.example_count
        return standardiser(sums, float(request.stats.example_count))

    def _global_model(self, request, plan: StudyPlan, secret: bytes | None, n_features: int):
        if not request.HasField("global"):
            raise TesseraError(ErrorCode.BAD_ENVELOPE, "task carries no global model")
        env = getattr(request, "global")
        model = build_model(plan.model, n_features=n_features, seed=plan.seed)
        _, layout = model_to_vector(model)
        weights = mean_of(env, secret_context=secret if env.encrypted else None)
        vector_to_model(model, weights, layout)
        return model, weights, layout

    def _train(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        started = time.perf_counter()
        digest, round_ = request.plan_hash, int(request.round)
        if not 1 <= round_ <= plan.training.rounds:
            raise TesseraError(ErrorCode.WRONG_ROUND, f"round {round_} is outside the plan")
        if (request.run_id, digest, round_) in self._trained:
            raise TesseraError(ErrorCode.DUPLICATE, f"round {round_} was already trained")
        split = load_split(self.vault, plan)
        secret = self._key(plan, digest)
        mean, std = self._standardised(request, plan, secret, split)
        X = standardise(split.train.X, mean, std)
        model, start, layout = self._global_model(request, plan, secret, X.shape[1])
        n_train = len(split.train.y)
        sample_rate, steps = plan_sampling(
            n_train=n_train, batch_size=plan.training.batch_size,
            epochs=plan.training.local_epochs,
        )
        noise = 0.0
        if plan.privacy.dp:
            noise = noise_for_target(
                target_epsilon=plan.privacy.target_epsilon, delta=plan.privacy.delta,
                sample_rate=sample_rate, steps=steps * plan.training.rounds,
            )
            self._check_budget(store, plan, split, DpStep(noise, sample_rate, steps), round_)
        outcome = train_local(
            model, X, split.train.y.astype(np.float64),
            epochs=plan.training.local_epochs, batch_size=plan.training.batch_size,
            learning_rate=plan.training.learning_rate, dp=plan.privacy.dp,
            noise_multiplier=noise, max_grad_norm=plan.privacy.max_grad_norm,
            seed=_training_seed(),
        )
        self._trained.add((request.run_id, digest, round_))
        # The training loss is computed from raw data without noise: it stays at the site.
        log.info("round %d trained: %d steps", round_, outcome.steps)
        metrics: dict[str, float] = {"steps": float(outcome.steps)}
        if plan.privacy.dp:
            entry = store.record_training(
                plan_hash=digest, study=plan.name, round=round_,
                dataset_id=split.dataset_id, dataset_version=split.dataset_version,
                noise_multiplier=noise, sample_rate=sample_rate, steps=outcome.steps,
                delta=plan.privacy.delta,
            )
            study_steps = [
                DpStep(e.noise_multiplier, e.sample_rate, e.steps)
                for e in store.ledger(dataset_id=split.dataset_id)
                if e.plan_hash == digest
            ]
            metrics.update(
                epsilon=entry.epsilon, epsilon_cumulative=entry.epsilon_cumulative,
                epsilon_study=epsilon_for_history(study_steps, delta=plan.privacy.delta),
                noise_multiplier=noise, sample_rate=sample_rate,
            )
        trained, _ = model_to_vector(model)
        update = clip_update(trained - start, bound=plan.privacy.update_clip)
        weighted = (start + update) * n_train
        if secret is not None:
            check_headroom(ckks_params(plan), max_abs=float(np.abs(weighted).max()),
                           contributors=MAX_CONTRIBUTORS)
        env = seal_vector(
            kind="weights", plan_hash=digest, round_=round_, site=self.site.name,
            example_count=n_train, values=weighted, layout=layout, secret_context=secret,
        )
        if self._signing_key is not None:
            sign_envelope(env, self._signing_key)
        store.record_event("update_sent", plan_hash=digest,
                           details={"round": round_, "digest": env.digest})
        metrics["seconds"] = time.perf_counter() - started
        return agent_pb2.TaskReply(ok=True, envelope=env, metrics=metrics)

    def _check_budget(self, store, plan, split: SiteSplit, step: DpStep, round_: int) -> None:
        projected = store.projected_epsilon(split.dataset_id, [step], delta=plan.privacy.delta)
        ceiling = store.ceiling()
        if projected > ceiling:
            reason = (
                f"round {round_} would raise cumulative epsilon for dataset "
                f"'{split.dataset_id}' to {projected:.3f}, above this site's ceiling "
                f"{ceiling:.3f}"
            )
            store.record_event("budget_refusal", plan_hash=plan_hash(plan),
                               details={"round": round_, "projected": projected,
                                        "ceiling": ceiling})
            raise TesseraError(ErrorCode.BUDGET_EXCEEDED, reason)

    def _held_out_counts(self, request, plan: StudyPlan, store: SiteStore, secret: bytes | None,
                         *, groups: tuple[str, ...] | None, keep: bool) -> HeldOutCounts:
        split = load_split(self.vault, plan)
        mean, std = self._standardised(request, plan, secret, split)
        X = standardise(split.test.X, mean, std)
        model, _, _ = self._global_model(request, plan, secret, X.shape[1])
        if keep:  # the study's own global model, not a leave-one-site-out one
            keep_final_model(self.vault, plan, store, plan_hash=request.plan_hash,
                             round_=int(request.round), model=model, mean=mean, std=std)
        scores = np.clip(predict_scores(model, X), 0.0, 1.0)
        return count_held_out(scores, split.test.y, split.test.groups, groups=groups,
                              bins=DEFAULT_BINS)

    def _evaluate(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        """Counts of the global model on the held-out split: encrypted when HE is on."""
        secret = self._key(plan, request.plan_hash)
        if secret is None:
            counts = self._held_out_counts(request, plan, store, None, groups=fixed_groups(plan),
                                           keep=True)
            return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(counts))
        groups = require_fixed_groups(plan)
        counts = self._held_out_counts(request, plan, store, secret, groups=groups, keep=True)
        env = seal_counts(counts, groups, plan_hash=request.plan_hash, round_=int(request.round),
                          site=self.site.name, secret_context=secret, params=ckks_params(plan),
                          contributors=MAX_CONTRIBUTORS)
        if self._signing_key is not None:
            sign_envelope(env, self._signing_key)
        return agent_pb2.TaskReply(ok=True, envelope=env)

    def _open_counts(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        """Decrypt the sum of the sites' encrypted counts: true aggregates only."""
        secret = self._key(plan, request.plan_hash)
        if secret is None:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               "evaluation counts are not encrypted in this study")
        split = load_split(self.vault, plan)
        summed = request.eval_sum
        _check_aggregate(summed, plan, request.plan_hash, kind="eval", round_=int(request.round),
                         own_examples=len(split.test.y), action="opening counts")
        counts = open_counts(summed, require_fixed_groups(plan), secret_context=secret,
                             bins=DEFAULT_BINS)
        store.record_event("counts_opened", plan_hash=request.plan_hash, details={
            "round": int(request.round), "contributors": int(summed.contributors)})
        return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(counts))

    def _evaluate_own(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        """This site's own plaintext counts for a final model trained by the other sites
        (leave-one-site-out); the operator can refuse (client_app/sharing.py)."""
        refuse_unless_shared(store, "own_counts",
                             "this site does not share its own evaluation counts")
        final = getattr(request, "global")
        secret = self._key(plan, request.plan_hash)
        _check_aggregate(final, plan, request.plan_hash, kind="weights",
                         round_=plan.training.rounds, own_examples=0, action="evaluation")
        _check_aggregate(request.stats, plan, request.plan_hash, kind="stats", round_=0,
                         own_examples=0, action="evaluation")
        if secret is not None and not final.encrypted:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               "evaluation refused: the model is not an encrypted aggregate")
        counts = self._held_out_counts(request, plan, store, secret, groups=fixed_groups(plan),
                                       keep=False)
        store.record_event("own_counts_shared", plan_hash=request.plan_hash,
                           details={"run_id": request.run_id, "rows": counts.n})
        return agent_pb2.TaskReply(ok=True, counts=counts_to_proto(counts))

    def _importance(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        """Permutation importance of the final aggregate on the held-out split (importance.py);
        the operator can refuse (client_app/sharing.py)."""
        refuse_unless_shared(store, "importance",
                             "this site does not share its feature importance")
        split = load_split(self.vault, plan)
        final, secret = getattr(request, "global"), self._key(plan, request.plan_hash)
        for env, kind, round_ in ((final, "weights", plan.training.rounds),
                                  (request.stats, "stats", 0)):
            _check_aggregate(env, plan, request.plan_hash, kind=kind, round_=round_,
                             own_examples=len(split.train.y), action="importance")
        if secret is not None and not final.encrypted:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               "importance refused: the model is not an encrypted aggregate")
        mean, std = self._standardised(request, plan, secret, split)
        model, _, _ = self._global_model(request, plan, secret, split.test.X.shape[1])
        reply = importance_reply(model, standardise(split.test.X, mean, std), split.test.y,
                                 split.test.features, seed=plan.seed)
        store.record_event("importance_shared", plan_hash=request.plan_hash,
                           details={"run_id": request.run_id, "rows": len(split.test.y)})
        return reply

    def _release(self, request, plan: StudyPlan, store: SiteStore) -> agent_pb2.TaskReply:
        if int(request.round) != plan.training.rounds:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               "only the final aggregate of a study may be released")
        split = load_split(self.vault, plan)
        secret = self._key(plan, request.plan_hash)
        # Release only true aggregates: never one site's update or statistics in plaintext.
        final = getattr(request, "global")
        _check_aggregate(final, plan, request.plan_hash, kind="weights",
                         round_=plan.training.rounds, own_examples=len(split.train.y))
        _check_aggregate(request.stats, plan, request.plan_hash, kind="stats", round_=0,
                         own_examples=len(split.train.y))
        mean, std = self._standardised(request, plan, secret, split)
        _, weights, layout = self._global_model(request, plan, secret, split.train.X.shape[1])
        released = agent_pb2.ReleasedModel(values=weights.tolist(), mean=mean.tolist(),
                                           std=std.tolist(), features=list(split.train.features))
        released.layout.extend(layout_to_proto(layout))
        store.record_event("model_released", plan_hash=request.plan_hash,
                           details={"round": int(request.round)})
        return agent_pb2.TaskReply(ok=True, model=released)


def _check_aggregate(env: agent_pb2.UpdateEnvelope, plan: StudyPlan, digest: str, *, kind: str,
                     round_: int, own_examples: int, action: str = "release") -> None:
    """Refuse to release anything but an aggregate of at least the plan's minimum sites."""
    problems = []
    if env.study != digest or env.kind != kind or env.round != round_ or env.site:
        problems.append("not this study's final aggregate")
    if env.contributors < plan.federation.min_sites:
        problems.append(f"sums {env.contributors} site(s), the plan needs "
                        f"{plan.federation.min_sites}")
    if plan.federation.min_sites > 1 and env.example_count <= own_examples:
        problems.append("covers no examples beyond this site's own")
    if problems:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"{action} refused: the {kind} envelope " + "; ".join(problems))
