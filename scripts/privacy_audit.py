"""Empirical privacy audit of Tessera's DP-SGD in one training run, written as JSON.

Usage::

    python scripts/privacy_audit.py [--epsilons 1 2 4 8] [--canaries 5000] [--repeats 1]
                                    [--confidence 0.95] [--study breast_cancer] [--sites 3]
                                    [--out bench-out/privacy_audit.json]

For each claimed epsilon it runs DP-SGD exactly as a site does: the study plan's model,
batch size, learning rate, clipping and delta on the demo's first-site training split, all
planned rounds in one call of :func:`client_app.learning.training.train_local` (the same
Opacus clipping, the same ChaCha20 noise under a fresh secret key, the same Poisson
sampler), with the noise multiplier from :func:`privacy.accounting.noise_for_target`. The
claimed epsilon is the ledger's figure for that run.

White-box gradient canaries (Steinke, Nasr & Jagielski 2023): the model gets an audit
head, ``m`` extra weights fed with zeros, so data never moves them; canary ``i`` is the
gradient ``+-max_grad_norm`` on weight ``i``. Each canary is included with probability 1/2;
an included canary joins each step's batch independently at the plan's sample rate, like
any example, through ``train_local``'s ``extra_gradients`` hook (added after clipping,
before the noise). The auditor scores canary ``i`` by the inner product of its gradient
with the model change (initial minus final weights), guesses the highest scores "in" and
the lowest "out", and :func:`privacy.one_run_audit.audit_scores` turns the correct guesses
into an epsilon lower bound at the confidence level. A lower bound above the claim would
mean the noise, the sampling or the accountant is broken.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from client_app.learning.training import train_local
from common.datasets import load_bundled, partition_indices, select, stratified_split
from common.models import build_model
from common.plan import StudyPlan, bundled_plan_path, load_plan
from privacy.accounting import DpStep, epsilon_for_history, noise_for_target, plan_sampling
from privacy.one_run_audit import audit_scores

Json = dict[str, Any]


class AuditedModel(torch.nn.Module):
    """The study's model plus an audit head of ``canaries`` weights that data never reaches."""

    def __init__(self, base: torch.nn.Module, *, canaries: int) -> None:
        super().__init__()
        self.base = base
        self.canary = torch.nn.Linear(canaries, 1, bias=False)
        torch.nn.init.zeros_(self.canary.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero inputs: every example's gradient on the audit head is exactly zero.
        return self.base(x) + self.canary(x.new_zeros(x.shape[0], self.canary.in_features))[:, 0]


def site_training_data(plan: StudyPlan, *, sites: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo's first site's training split, standardised on itself."""
    data = select(load_bundled(plan.dataset.name), plan.dataset)
    parts = partition_indices(data.y, sites, seed=plan.seed, scheme=plan.dataset.partition,
                              alpha=plan.dataset.alpha)
    site = data.take(np.asarray(parts[0], dtype=np.int64))
    train_rows, _ = stratified_split(site.y, test_fraction=plan.dataset.test_fraction,
                                     seed=plan.seed)
    train = site.take(train_rows)
    std = train.X.std(axis=0)
    std[std < 1e-9] = 1.0
    return (train.X - train.X.mean(axis=0)) / std, train.y.astype(np.float64)


def audit_once(plan: StudyPlan, X: np.ndarray, y: np.ndarray, *, target_epsilon: float,
               canaries: int, confidence: float, rng: np.random.Generator) -> Json:
    """One training run with canaries; the claimed epsilon and the empirical lower bound."""
    t, privacy = plan.training, plan.privacy
    epochs = t.local_epochs * t.rounds
    sample_rate, steps = plan_sampling(n_train=len(y), batch_size=t.batch_size, epochs=epochs)
    noise = noise_for_target(target_epsilon=target_epsilon, delta=privacy.delta,
                             sample_rate=sample_rate, steps=steps)
    claimed = epsilon_for_history([DpStep(noise, sample_rate, steps)], delta=privacy.delta)

    model = AuditedModel(build_model(plan.model, n_features=X.shape[1], seed=plan.seed),
                         canaries=canaries)
    start = model.canary.weight.detach().clone()[0].double().numpy()
    included = rng.random(canaries) < 0.5
    signs = np.where(rng.random(canaries) < 0.5, -1.0, 1.0)
    canary_grad = torch.from_numpy(signs * privacy.max_grad_norm).float()
    zeros = [torch.zeros_like(p) for p in model.base.parameters()]

    def canary_gradients(step: int) -> list[torch.Tensor]:
        # Included canaries are sampled into this step's batch like any example.
        sampled = torch.from_numpy(included & (rng.random(canaries) < sample_rate))
        return [*zeros, (canary_grad * sampled)[None, :]]

    started = time.perf_counter()
    outcome = train_local(model, X, y, epochs=epochs, batch_size=t.batch_size,
                          learning_rate=t.learning_rate, dp=True, noise_multiplier=noise,
                          max_grad_norm=privacy.max_grad_norm,
                          seed=int(rng.integers(2**62)), extra_gradients=canary_gradients)
    change = start - model.canary.weight.detach()[0].double().numpy()
    scores = signs * privacy.max_grad_norm * change  # <canary gradient, initial - final>
    bound = audit_scores(scores, included, delta=privacy.delta, confidence=confidence)
    return {
        "claimed_epsilon": round(claimed, 6),
        "target_epsilon": target_epsilon,
        "delta": privacy.delta,
        "epsilon_lower_bound": round(bound.epsilon_lower_bound, 6),
        "confidence": confidence,
        "canaries": canaries,
        "canaries_included": int(included.sum()),
        "guesses": bound.guesses,
        "guessed_in": bound.guessed_in,
        "guessed_out": bound.guessed_out,
        "correct": bound.correct,
        "strategies": bound.strategies,
        "noise_multiplier": round(noise, 6),
        "sample_rate": sample_rate,
        "steps": outcome.steps,
        "train_rows": len(y),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _load(study: str) -> StudyPlan:
    path = Path(study) if study.endswith(".toml") else bundled_plan_path(study)
    return load_plan(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit for every claimed epsilon, write JSON, print a table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--canaries", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1,
                        help="independent training runs per epsilon (each its own audit)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--study", default="breast_cancer",
                        help="bundled study name or a plan file (.toml)")
    parser.add_argument("--sites", type=int, default=3, help="sites the demo splits data into")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the canaries' inclusion and sampling (default: fresh)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/privacy_audit.json"))
    args = parser.parse_args(argv)
    if args.canaries < 10 or args.repeats < 1 or args.sites < 1:
        parser.error("--canaries must be at least 10, --repeats and --sites at least 1")
    if not 0 < args.confidence < 1 or any(not 0 < e < 100 for e in args.epsilons):
        parser.error("--confidence must be in (0, 1) and every epsilon in (0, 100)")
    plan = _load(args.study)
    if not plan.privacy.dp:
        parser.error(f"study {plan.name!r} does not use DP-SGD")
    X, y = site_training_data(plan, sites=args.sites)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    runs = []
    for epsilon in args.epsilons:
        for repeat in range(args.repeats):
            run = audit_once(plan, X, y, target_epsilon=epsilon, canaries=args.canaries,
                             confidence=args.confidence, rng=rng)
            runs.append({"repeat": repeat, **run})
            print(f"epsilon {run['claimed_epsilon']:.3f}: lower bound "
                  f"{run['epsilon_lower_bound']:.3f} ({run['correct']}/{run['guesses']} "
                  f"correct, {run['seconds']:.1f} s)", flush=True)
    doc: Json = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "study": plan.name,
        "method": "one-run audit, white-box gradient canaries (Steinke, Nasr & Jagielski 2023)",
        "runs": runs,
        "exceeded": [r for r in runs if r["epsilon_lower_bound"] > r["claimed_epsilon"]],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"written to {args.out}")
    return 1 if doc["exceeded"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
