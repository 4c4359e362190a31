"""Synthetic cohorts drawn from a study plan's public data dictionary: the public ground on
which the bundled plans' training schedules are fixed (``scripts/tune_schedule.py``).

Usage::

    python scripts/synthetic_cohort.py --study breast_cancer --out FILE [--task 0] [--rows 150]

writes a seeded synthetic CSV in the plan's schema (one site's rows; a sensitive column is
drawn uniformly from its categories). ``scripts/tune_schedule.py`` imports :func:`draw_task`
and :func:`sample`.

What the generator knows is only what the plan publishes: the features, each feature's type
and declared range (``[dataset.columns.<name>]``: the plan says the ranges reach about a tenth
of the observed span beyond the data), and that the label is binary. Nothing is read from
the bundled data or any site's rows. A *task* (seeded) draws:

- correlated features: a Gaussian factor model (``factors`` latent factors, loadings drawn
  at random) pushed through a per-feature shape (symmetric, or right-skewed like areas and
  counts), then placed inside the declared range: a centre within the middle of the range and
  a spread such that the data fill about eight tenths of it, clipped to the range; each
  feature measures the latent factors with its own noise (between a tenth and nine tenths of
  its variance is signal);
- a label from a logistic model on the latent factors and, for a drawn share of up to 0.7 of
  the logit, on a few features' own components (what only that measurement sees, the part
  that is slow to learn), scaled so the task's Bayes AUC is near ``separation`` (easy tasks
  near 0.98, hard ones near 0.78), with a prevalence drawn in [0.35, 0.65].
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.plan import StudyPlan, declared_feature_ranges

#: Bayes-AUC targets of the task family: an easy and a hard outcome.
SEPARATIONS = (0.98, 0.78)


@dataclass(frozen=True)
class Task:
    """One synthetic outcome over the plan's features (public parameters only)."""

    centre: np.ndarray
    spread: np.ndarray
    skewed: np.ndarray
    loadings: np.ndarray
    noise: np.ndarray
    direction: np.ndarray
    intercept: float
    low: np.ndarray
    high: np.ndarray
    integer: np.ndarray


def draw_task(plan: StudyPlan, *, seed: int, separation: float, factors: int = 3) -> Task:
    """A seeded synthetic task for ``plan``'s features with Bayes AUC near ``separation``."""
    ranges = declared_feature_ranges(plan)
    if ranges is None:
        raise SystemExit(f"{plan.name}: every feature needs a declared min and max")
    low, high = (np.asarray(r, dtype=np.float64) for r in ranges)
    rng = np.random.default_rng([seed, int(separation * 1000)])
    n = low.size
    # The declared range reaches a tenth of the observed span beyond the data on each side:
    # the data span about 1/1.2 of it; a Gaussian's +-2.5 sd covers that span.
    span = (high - low) / 1.2
    spread = span / 5.0 * rng.uniform(0.7, 1.3, n)
    centre = (low + high) / 2 + rng.uniform(-0.15, 0.15, n) * span
    skewed = rng.random(n) < 0.4
    # Each feature measures the latent factors with its own noise (a share of its variance
    # between 0.1 and 0.9 is signal).
    loadings = rng.normal(size=(n, factors))
    loadings /= np.linalg.norm(loadings, axis=1, keepdims=True)
    signal = rng.uniform(0.1, 0.9, (n, 1))
    columns = plan.dataset.columns or {}
    integer = np.array([columns[f].type == "integer" if f in columns else False
                        for f in plan.dataset.features])
    # The outcome depends on the latent state; its scale is set so the Bayes AUC (the true
    # probabilities as scores) is near the target, its intercept by a drawn prevalence.
    # The outcome depends on the latent state and, for a drawn share, on a few features' own
    # components (what only that measurement sees): the second part is what is slow to learn.
    own = rng.normal(size=n) * (rng.random(n) < 0.3)
    share = rng.uniform(0.0, 0.7)
    direction = np.concatenate([rng.normal(size=factors), own])
    direction[:factors] *= np.sqrt(1 - share) / np.linalg.norm(direction[:factors])
    direction[factors:] *= np.sqrt(share) / max(np.linalg.norm(direction[factors:]), 1e-12)
    prevalence = rng.uniform(0.35, 0.65)
    intercept = float(np.log(prevalence / (1 - prevalence)))
    probe = np.random.default_rng([seed, 7]).normal(size=(20_000, factors + n)) @ direction
    scales = np.geomspace(0.05, 20.0, 80)
    aucs = [_expected_auc(1 / (1 + np.exp(-(c * probe + intercept)))) for c in scales]
    scale = float(scales[int(np.argmin([abs(a - separation) for a in aucs]))])
    return Task(centre, spread, skewed, loadings * np.sqrt(signal), np.sqrt(1 - signal[:, 0]),
                direction * scale, intercept, low, high, integer)


def _expected_auc(p: np.ndarray) -> float:
    """The AUC of scores ``p`` against labels drawn with probability ``p`` (in expectation)."""
    p = np.sort(p)
    ranks = np.arange(1, p.size + 1)
    positives = p.sum()
    negatives = p.size - positives
    return float(((p * ranks).sum() - positives * (positives + 1) / 2) / (positives * negatives))


def sample(task: Task, rows: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` seeded rows of ``task``: features and 0/1 labels."""
    rng = np.random.default_rng([seed, 11])
    factors = task.loadings.shape[1]
    f = rng.normal(size=(rows, factors + task.noise.size))
    g = f[:, :factors] @ task.loadings.T + f[:, factors:] * task.noise
    # Right-skewed features: a log-normal shape, recentred and rescaled to unit spread.
    shaped = np.where(task.skewed, (np.exp(0.6 * g) - np.exp(0.18)) / 0.68, g)
    X = np.clip(task.centre + task.spread * shaped, task.low, task.high)
    X = np.where(task.integer, np.round(X), X)
    p = 1 / (1 + np.exp(-(f @ task.direction + task.intercept)))
    return X, (rng.random(rows) < p).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    from common.plan import bundled_plan_path, load_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--separation", type=float, default=SEPARATIONS[0])
    parser.add_argument("--rows", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    plan = load_plan(bundled_plan_path(args.study))
    X, y = sample(draw_task(plan, seed=args.task, separation=args.separation), args.rows,
                  seed=args.seed)
    sensitive = plan.dataset.sensitive
    column = (plan.dataset.columns or {}).get(sensitive or "")
    groups = [str(g) for g in (column.categories if column and column.categories else [0, 1])]
    drawn = np.random.default_rng([args.seed, 13]).choice(groups, size=len(y))
    header = ["patient_id", *plan.dataset.features, plan.dataset.label,
              *([sensitive] if sensitive else [])]
    lines = [",".join(header)]
    for index, (row, label) in enumerate(zip(X, y, strict=True)):
        lines.append(",".join([f"S{index:05d}", *(f"{v:.6g}" for v in row), str(int(label)),
                               *([str(drawn[index])] if sensitive else [])]))
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
