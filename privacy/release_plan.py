"""The releases one run of a study plan makes at a site besides DP-SGD, and the budget split.

A plan with DP declares the noise of every release it makes (``[statistics]`` and
``[evaluation]``); each is a Gaussian mechanism (:mod:`privacy.mechanisms`):

- the site's row counts (training and held-out rows), once per dataset version and split,
  reused by later runs (counted here in every run, so a run that reuses them spends a little
  less than its target);
- the round-0 federation statistics, once per run (:mod:`privacy.dp_statistics`);
- the score histograms of the evaluation counts, once per evaluated round: every round with
  ``every_round``, else the final round only (:mod:`privacy.dp_evaluation`);
- the feature importance of the final model, once, when the plan asks for it;
- with ``[drift]``, one drift release (per-feature histograms of a dataset version, and
  with ``scores`` the final model's score histogram, :mod:`privacy.dp_drift`): a site
  answers once per dataset version and consented rows and repeats that answer otherwise; one
  is counted in the run, and later versions (or rows after a consent change) spend beyond
  it, checked against the site's ceiling when they are asked for.

:func:`planned_releases` lists them; a site calibrates its DP-SGD noise so that these and
all planned rounds together spend exactly the plan's target epsilon, which makes the plan's
declared noise levels its budget split. :func:`budget_split` states that split for the study
summary a site approves. A leave-one-site-out answer (the left-out site's own counts, in a
separate run) is one more histogram release, checked against the ceiling when it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.plan import StudyPlan
from privacy.mechanisms import GaussianRelease


def statistics_mechanism(plan: StudyPlan) -> GaussianRelease | None:
    """One statistics release (None without DP)."""
    if not plan.privacy.dp:
        return None
    return GaussianRelease(noise_multiplier=plan.statistics_policy.noise_multiplier, count=1)


def row_count_mechanism(plan: StudyPlan) -> GaussianRelease | None:
    """One release of a site's row counts (None without DP)."""
    if not plan.privacy.dp:
        return None
    return GaussianRelease(noise_multiplier=plan.statistics_policy.count_noise_multiplier,
                           count=1)


def counts_mechanism(plan: StudyPlan) -> GaussianRelease | None:
    """One release of evaluation histograms (None without DP)."""
    if not plan.privacy.dp:
        return None
    return GaussianRelease(noise_multiplier=plan.evaluation_policy.noise_multiplier, count=1)


def importance_mechanism(plan: StudyPlan) -> GaussianRelease | None:
    """One release of feature importance (None without DP)."""
    if not plan.privacy.dp:
        return None
    return GaussianRelease(
        noise_multiplier=plan.evaluation_policy.importance_noise_multiplier, count=1)


def drift_mechanism(plan: StudyPlan) -> GaussianRelease | None:
    """One drift release (None without DP or without ``[drift]``)."""
    if not plan.privacy.dp or plan.drift is None:
        return None
    histograms = len(plan.drift.features or plan.dataset.features) + int(plan.drift.scores)
    return GaussianRelease(noise_multiplier=plan.drift.noise_multiplier, count=histograms)


def evaluated_rounds(plan: StudyPlan) -> int:
    """How many rounds of one run are evaluated: all with ``every_round``, else the last."""
    return plan.training.rounds if plan.evaluation_policy.every_round else 1


def planned_releases(plan: StudyPlan) -> tuple[GaussianRelease, ...]:
    """Every release besides DP-SGD that one run of the plan makes at a site."""
    releases: list[GaussianRelease] = []
    stats, counts = statistics_mechanism(plan), counts_mechanism(plan)
    importance, rows = importance_mechanism(plan), row_count_mechanism(plan)
    if rows is not None:
        releases.append(rows)
    if stats is not None:
        releases.append(stats)
    if counts is not None:
        releases.append(GaussianRelease(counts.noise_multiplier, evaluated_rounds(plan)))
    if importance is not None and plan.evaluation_policy.importance:
        releases.append(importance)
    drift = drift_mechanism(plan)
    if drift is not None:
        releases.append(drift)
    return tuple(releases)


@dataclass(frozen=True)
class BudgetSplit:
    """Each part of a run's budget, as the epsilon it would cost alone at the plan's delta,
    and what the non-training parts cost together; DP-SGD gets the rest of the target."""

    delta: float
    target: float
    statistics: float
    row_counts: float
    evaluation: float
    evaluated_rounds: int
    importance: float | None
    releases: float
    #: One drift release (``[drift]``), None when the plan declares none.
    drift: float | None = None

    @property
    def feasible(self) -> bool:
        """Whether DP-SGD has any budget left once the other releases are paid for."""
        return self.releases < self.target

    def lines(self) -> list[str]:
        """The split in words, one part a line."""
        out = [f"row counts (once per dataset version): epsilon {self.row_counts:.3f} alone",
               f"statistics (round 0): epsilon {self.statistics:.3f} alone",
               f"evaluation ({self.evaluated_rounds} round(s) of score histograms): "
               f"epsilon {self.evaluation:.3f} alone"]
        if self.importance is not None:
            out.append(f"feature importance: epsilon {self.importance:.3f} alone")
        if self.drift is not None:
            out.append(f"drift histograms (once per dataset version; one counted here): "
                       f"epsilon {self.drift:.3f} alone")
        if self.feasible:
            out.append(f"together epsilon {self.releases:.3f}; DP-SGD noise is set so that "
                       f"the whole run spends epsilon {self.target:g} at delta {self.delta:g}")
        else:
            out.append(f"together epsilon {self.releases:.3f}, not below the target "
                       f"{self.target:g}: no budget is left for training, so every site "
                       "will refuse this plan (raise [evaluation] noise, evaluate only the "
                       "final round, or raise the target)")
        return out

    def to_json(self) -> dict[str, object]:
        return {"delta": self.delta, "target_epsilon": self.target,
                "statistics_epsilon": self.statistics, "row_counts_epsilon": self.row_counts,
                "evaluation_epsilon": self.evaluation,
                "evaluated_rounds": self.evaluated_rounds,
                "importance_epsilon": self.importance, "drift_epsilon": self.drift,
                "releases_epsilon": self.releases,
                "feasible": self.feasible}


def budget_split(plan: StudyPlan) -> BudgetSplit | None:
    """The plan's budget split at its own delta (None without DP)."""
    from privacy.accounting import epsilon_for_history  # the accountant is a heavy import

    stats, counts = statistics_mechanism(plan), counts_mechanism(plan)
    rows = row_count_mechanism(plan)
    if stats is None or counts is None or rows is None:
        return None
    delta = plan.privacy.delta
    rounds = evaluated_rounds(plan)
    importance = importance_mechanism(plan) if plan.evaluation_policy.importance else None
    drift = drift_mechanism(plan)
    return BudgetSplit(
        delta=delta, target=plan.privacy.target_epsilon,
        statistics=epsilon_for_history([stats], delta=delta),
        row_counts=epsilon_for_history([rows], delta=delta),
        evaluation=epsilon_for_history([GaussianRelease(counts.noise_multiplier, rounds)],
                                       delta=delta),
        evaluated_rounds=rounds,
        importance=None if importance is None else epsilon_for_history([importance],
                                                                       delta=delta),
        drift=None if drift is None else epsilon_for_history([drift], delta=delta),
        releases=epsilon_for_history(list(planned_releases(plan)), delta=delta))
