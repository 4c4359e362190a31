"""Candidate training schedules for ``scripts/tune_schedule.py``: changes to a bundled plan,
by dotted field (``training.local_epochs``), each a name on the command line.

Keys under ``replay.`` are diagnosis switches of :func:`tune_schedule.replay` (exact round-0
statistics or row counts), which no plan can ask for: they say where a gap comes from and are
never adopted. docs/utility.md records what every candidate measured.
"""

from __future__ import annotations

from typing import Any

#: Candidate schedules: changes to the bundled plan, by dotted field.
CANDIDATES: dict[str, dict[str, Any]] = {
    "bundled": {},
    "epochs2": {"training.local_epochs": 2},
    # The breast-cancer schedule before the second pass (docs/utility.md).
    "epochs2_lr0.5": {"training.local_epochs": 2, "training.learning_rate": 0.5},
    "lr0.25": {"training.learning_rate": 0.25},
    "lr0.15": {"training.learning_rate": 0.15},
    "epochs4_lr0.25": {"training.local_epochs": 4, "training.learning_rate": 0.25},
    "epochs8_lr0.25": {"training.local_epochs": 8, "training.learning_rate": 0.25},
    "epochs8_lr0.15": {"training.local_epochs": 8, "training.learning_rate": 0.15},
    "epochs8_lr0.5": {"training.local_epochs": 8, "training.learning_rate": 0.5},
    "epochs12": {"training.local_epochs": 12},
    "epochs16": {"training.local_epochs": 16},
    "split": {"statistics.noise_multiplier": 6.0, "statistics.count_noise_multiplier": 16.0},
    "epochs8_split": {"training.local_epochs": 8, "statistics.noise_multiplier": 6.0,
                      "statistics.count_noise_multiplier": 16.0},
    "lr1": {"training.learning_rate": 1.0},
    "lr2": {"training.learning_rate": 2.0},
    "epochs4": {"training.local_epochs": 4},
    "epochs8": {"training.local_epochs": 8},
    "clip2": {"privacy.max_grad_norm": 2.0},
    "clip4": {"privacy.max_grad_norm": 4.0},
    "batch64": {"training.batch_size": 64},
    "epochs4_lr1": {"training.local_epochs": 4, "training.learning_rate": 1.0},
    "epochs4_lr2": {"training.local_epochs": 4, "training.learning_rate": 2.0},
    "epochs8_lr1": {"training.local_epochs": 8, "training.learning_rate": 1.0},
    "epochs4_clip2": {"training.local_epochs": 4, "privacy.max_grad_norm": 2.0},
    "epochs4_clip2_lr1": {"training.local_epochs": 4, "privacy.max_grad_norm": 2.0,
                          "training.learning_rate": 1.0},
    "epochs8_batch64_lr2": {"training.local_epochs": 8, "training.batch_size": 64,
                            "training.learning_rate": 2.0},
    "epochs8_clip2_lr1": {"training.local_epochs": 8, "privacy.max_grad_norm": 2.0,
                          "training.learning_rate": 1.0},
    "rounds5_epochs4_lr1": {"training.rounds": 5, "training.local_epochs": 4,
                            "training.learning_rate": 1.0},
    # Per-example clip with the learning rate scaled down alike: the same step and noise
    # for an example the clip truncates, fewer truncated.
    "clip2_lr0.25": {"privacy.max_grad_norm": 2.0, "training.learning_rate": 0.25},
    "clip3_lr0.17": {"privacy.max_grad_norm": 3.0, "training.learning_rate": 1 / 6},
    "clip5_lr0.1": {"privacy.max_grad_norm": 5.0, "training.learning_rate": 0.1},
    "clip3": {"privacy.max_grad_norm": 3.0},
    "clip5": {"privacy.max_grad_norm": 5.0},
    "clip10_lr0.05": {"privacy.max_grad_norm": 10.0, "training.learning_rate": 0.05},
    "clip10": {"privacy.max_grad_norm": 10.0},
    "clip0.5_lr1": {"privacy.max_grad_norm": 0.5, "training.learning_rate": 1.0},
    "lr0.75": {"training.learning_rate": 0.75},
    "epochs3": {"training.local_epochs": 3},
    "epochs3_lr0.75": {"training.local_epochs": 3, "training.learning_rate": 0.75},
    "batch16": {"training.batch_size": 16},
    "batch16_lr0.25": {"training.batch_size": 16, "training.learning_rate": 0.25},
    "batch48_lr0.75": {"training.batch_size": 48, "training.learning_rate": 0.75},
    "batch64_lr1": {"training.batch_size": 64, "training.learning_rate": 1.0},
    "rounds6_epochs1": {"training.rounds": 6, "training.local_epochs": 1},
    "rounds2_epochs3": {"training.rounds": 2, "training.local_epochs": 3},
    "rounds6_epochs1_lr1": {"training.rounds": 6, "training.local_epochs": 1,
                            "training.learning_rate": 1.0},
    # The statistics release's share of the budget, and its row clip.
    "stats2": {"statistics.noise_multiplier": 2.0},
    "stats3": {"statistics.noise_multiplier": 3.0},
    "stats_clip3": {"statistics.clip": 3.0},
    "stats_clip4": {"statistics.clip": 4.0},
    "counts4": {"statistics.count_noise_multiplier": 4.0},
    "stats2_lr1": {"statistics.noise_multiplier": 2.0, "training.learning_rate": 1.0},
    "stats_clip3_lr1": {"statistics.clip": 3.0, "training.learning_rate": 1.0},
    # Diagnosis only (no plan can ask for these): no DP at all; DP-SGD as planned with the
    # exact round-0 statistics and row counts, the exact statistics alone, the counts alone.
    "no_dp": {"privacy.dp": False},
    "exact_statistics_counts": {"replay.exact_statistics": True, "replay.exact_counts": True},
    "exact_statistics": {"replay.exact_statistics": True},
    "exact_counts": {"replay.exact_counts": True},
}
