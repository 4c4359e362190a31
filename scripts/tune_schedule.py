"""Fix a study's training schedule on synthetic cohorts, never on any site's rows.

Usage::

    python scripts/tune_schedule.py --study breast_cancer --out FILE [--epsilon 3]
                                    [--tasks 4] [--first-task 0] [--candidates NAME,...]

For every candidate schedule (a few ``[training]`` / ``[privacy]`` settings over the bundled
plan) and every synthetic task of :mod:`synthetic_cohort` (``--tasks`` seeded tasks at each
separation of :data:`synthetic_cohort.SEPARATIONS`), it draws three sites' training rows (the
bundled dataset's public size split three ways, less the plan's held-out fraction) and a large
synthetic test set, replays the schedule (:func:`replay`) at ``--epsilon`` and records the gap
between a centralised, non-private scikit-learn logistic regression on the pooled synthetic
training rows and the replayed model, both scored on the synthetic test set. The summary per
candidate is the mean gap over tasks (and its worst task), with the seconds of DP-SGD the
schedule costs, which is what the suite pays for every study it runs. Every candidate after
the first is also compared with the first task by task (``improvement``: how much smaller its
gap is, with ``improvement_se``, the standard error of that mean); the noise streams of a
replay are keyed by the task, so the pairs differ by the schedule, not by luck.

The candidates are :data:`schedule_candidates.CANDIDATES`; the ``replay.*`` switches of the
diagnosis-only ones go to :func:`replay`, not to the plan. Each summary also carries the share
of site updates the update clip truncated (``updates_truncated``), how far the shared mean
lies from the pooled training rows' (``mean_error``, root mean square over features in units
of the shared scale) and the pooled rows' standard deviation over that scale
(``std_over_scale``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.plan import StudyPlan

sys.path.insert(0, str(Path(__file__).resolve().parent))  # generator and candidates, beside it
from schedule_candidates import CANDIDATES
from synthetic_cohort import SEPARATIONS, draw_task, sample

#: Public sizes of the bundled datasets (scikit-learn's documentation).
PUBLIC_ROWS = {"breast_cancer": 569, "diabetes": 442}
SITES = 3
TEST_ROWS = 20_000

def with_changes(plan: StudyPlan, changes: dict[str, Any]) -> StudyPlan:
    """``plan`` with dotted-field changes, validated (``replay.*`` keys are not the plan's)."""
    raw = plan.model_dump()
    for dotted, value in changes.items():
        if dotted.startswith("replay."):
            continue
        section, field = dotted.split(".")
        raw[section] = {**(raw.get(section) or {}), field: value}
    return type(plan).model_validate(raw)


def _stream(*parts: object) -> bytes:
    """A 256-bit key for one noise stream of a replay: candidates compared on the same task
    see the same noise."""
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()


def replay(plan: StudyPlan, sites: list[tuple[np.ndarray, np.ndarray]],
           *, key: int, exact_statistics: bool = False,
           exact_counts: bool = False) -> tuple[Any, np.ndarray, np.ndarray, float, float]:
    """The plan's run on these sites' training rows: the final model, the shared mean and
    scale, the seconds of local training and the share of site updates the update clip
    truncated. ``exact_statistics`` and ``exact_counts``
    (diagnosis only, no plan can ask for them) replace the noisy round-0 statistics or the
    noisy released row counts with the exact ones, DP-SGD unchanged."""
    import torch

    from client_app.agent.training import clip_update
    from client_app.learning.statistics import (
        declared_ranges,
        standardisation_of,
        statistics_clip,
        statistics_release,
    )
    from client_app.learning.training import train_local
    from common.datasets import TableData
    from common.models import build_model, model_to_vector, vector_to_model
    from privacy.accounting import noise_for_target, plan_sampling
    from privacy.dp_evaluation import noisy_cells
    from privacy.dp_statistics import noisy_statistics, row_vectors
    from privacy.release_plan import planned_releases

    torch.manual_seed(key)
    dp = plan.privacy.dp
    tables = [TableData(patient_ids=np.array([f"S{i}" for i in range(len(y))]), X=X,
                        y=y.astype(np.int64), features=tuple(plan.dataset.features),
                        label=plan.dataset.label)
              for X, y in sites]
    policy, ranges = plan.statistics_policy, declared_ranges(plan)
    if dp and ranges is not None:  # the sites' releases, with noise keyed for the replay
        released = [len(t.y) if exact_counts else
                    max(1, int(noisy_cells(np.array([len(t.y)]),
                                           noise_multiplier=policy.count_noise_multiplier,
                                           key=_stream(key, "counts", site))[0]))
                    for site, t in enumerate(tables)]
        sums = sum(row_vectors(t.X, ranges, clip=statistics_clip(plan)).sum(axis=0)
                   if exact_statistics else
                   noisy_statistics(t.X, ranges, clip=statistics_clip(plan),
                                    noise_multiplier=policy.noise_multiplier,
                                    key=_stream(key, "statistics", site))
                   for site, t in enumerate(tables))
    else:
        released = [len(t.y) for t in tables]
        sums = sum(statistics_release(plan, t) for t in tables)
    rows = sum(len(t.y) for t in tables) if exact_statistics else sum(released)
    mean, scale = standardisation_of(plan, np.asarray(sums), float(rows))
    model = build_model(plan.model, n_features=len(plan.dataset.features), seed=plan.seed)
    weights, layout = model_to_vector(model)
    seconds, clipped, updates = 0.0, 0, 0
    for round_ in range(plan.training.rounds):
        total = np.zeros_like(weights)
        for site, (table, n) in enumerate(zip(tables, released, strict=True)):
            sample_rate, steps = plan_sampling(n_train=n, batch_size=plan.training.batch_size,
                                               epochs=plan.training.local_epochs)
            noise = noise_for_target(
                target_epsilon=plan.privacy.target_epsilon, delta=plan.privacy.delta,
                sample_rate=sample_rate, steps=steps * plan.training.rounds,
                extra=planned_releases(plan)) if dp else 0.0
            local = build_model(plan.model, n_features=len(plan.dataset.features),
                                seed=plan.seed)
            vector_to_model(local, weights, layout)
            outcome = train_local(
                local, (table.X - mean) / scale, table.y.astype(np.float64),
                epochs=plan.training.local_epochs,
                batch_size=plan.training.batch_size, learning_rate=plan.training.learning_rate,
                dp=dp, noise_multiplier=noise, max_grad_norm=plan.privacy.max_grad_norm,
                seed=key, released_rows=n,
                noise_key=_stream(key, "dp-sgd", round_, site) if dp else None)
            seconds += outcome.seconds
            raw = model_to_vector(local)[0] - weights
            clipped += int(np.linalg.norm(raw) > plan.privacy.update_clip)
            updates += 1
            update = clip_update(raw, bound=plan.privacy.update_clip)
            total += (weights + update) * n
        weights = total / sum(released)
    vector_to_model(model, weights, layout)
    return model, mean, scale, seconds, clipped / updates


def evaluate(plan: StudyPlan, *, task_seed: int, separation: float, key: int,
             options: dict[str, bool] | None = None) -> dict[str, float]:
    """One replay on one synthetic task (``options``: :func:`replay`'s diagnosis switches):
    the gap to the centralised baseline, how far the shared mean is from the pooled rows'
    (root mean square over features, in units of the shared scale) and how the pooled rows'
    standard deviation compares with the shared scale (mean over features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from common.models import predict_scores

    task = draw_task(plan, seed=task_seed, separation=separation)
    per_site = round(PUBLIC_ROWS[plan.dataset.name] / SITES * (1 - plan.dataset.test_fraction))
    sites = [sample(task, per_site, seed=1000 * task_seed + s) for s in range(SITES)]
    X_test, y_test = sample(task, TEST_ROWS, seed=10**6 + task_seed)
    model, mean, scale, seconds, truncated = replay(plan, sites, key=key, **(options or {}))
    auc = float(roc_auc_score(y_test, predict_scores(model, (X_test - mean) / scale)))
    X_train = np.concatenate([X for X, _ in sites])
    y_train = np.concatenate([y for _, y in sites])
    scaler = StandardScaler().fit(X_train)
    baseline = LogisticRegression(max_iter=5000).fit(scaler.transform(X_train), y_train)
    base = float(roc_auc_score(y_test, baseline.predict_proba(scaler.transform(X_test))[:, 1]))
    return {"auc": auc, "baseline_auc": base, "gap": base - auc, "train_seconds": seconds,
            "updates_truncated": truncated,
            "mean_error": float(np.sqrt(np.mean(((X_train.mean(axis=0) - mean) / scale) ** 2))),
            "std_over_scale": float(np.mean(X_train.std(axis=0) / scale))}


def paired(reference: list[float], gaps: list[float]) -> dict[str, float]:
    """How much smaller a candidate's gaps are than the first candidate's on the same tasks
    (same noise streams): the mean difference and its standard error. Empty for the first."""
    if not reference:
        return {}
    diff = np.asarray(reference) - np.asarray(gaps)
    return {"improvement": float(diff.mean()),
            "improvement_se": float(diff.std(ddof=1) / np.sqrt(diff.size))}


def main(argv: list[str] | None = None) -> int:
    from common.plan import bundled_plan_path, load_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--first-task", type=int, default=0,
                        help="seed of the first task (a confirmation pass takes fresh ones)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    args = parser.parse_args(argv)
    bundled = load_plan(bundled_plan_path(args.study))
    summary: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for name in args.candidates.split(","):
        plan = with_changes(bundled, {**CANDIDATES[name],
                                      "privacy.target_epsilon": args.epsilon})
        started = time.perf_counter()
        options = {k.removeprefix("replay."): bool(v) for k, v in CANDIDATES[name].items()
                   if k.startswith("replay.")}
        rows = [{"candidate": name, "task": t, "separation": s,
                 **evaluate(plan, task_seed=t, separation=s, key=t, options=options)}
                for s in SEPARATIONS
                for t in range(args.first_task, args.first_task + args.tasks)]
        reference = [r["gap"] for r in runs if r["candidate"] == runs[0]["candidate"]] if runs \
            else []
        runs.extend(rows)
        summary[name] = {
            "changes": CANDIDATES[name],
            "gap": statistics.fmean(r["gap"] for r in rows),
            "gap_max": max(r["gap"] for r in rows),
            **{f"gap_{s:g}": statistics.fmean(r["gap"] for r in rows if r["separation"] == s)
               for s in SEPARATIONS},
            **{field: statistics.fmean(r[field] for r in rows)
               for field in ("train_seconds", "updates_truncated", "mean_error",
                            "std_over_scale")},
            "seconds": time.perf_counter() - started,
            **paired(reference, [r["gap"] for r in rows]),
        }
        print(name, json.dumps({k: v for k, v in summary[name].items() if k != "changes"}),
              file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"study": args.study, "epsilon": args.epsilon,
                                    "summary": summary, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
