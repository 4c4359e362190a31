"""KPI release gates: whether a study's final metrics meet the plan's ``[kpis]`` table.

:func:`evaluate_gates` is pure: it takes the plan's :class:`~common.plan.KpiSpec` (or
``None``) and a metrics dictionary, the run result's ``final`` metrics, where the fairness
metrics sit in a nested ``"fairness"`` dictionary (a flat dictionary that carries them at the
top level works too). A gate whose metric is missing, ``None`` or not a finite number fails
with a reason: a model is promotable only when every gate it is held to is shown to pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from common.plan import KpiSpec

Bound = Literal["min", "max"]

#: gate field -> (metric name, bound kind, whether the metric lives under "fairness")
GATES: dict[str, tuple[str, Bound, bool]] = {
    "min_auc": ("auc", "min", False),
    "min_accuracy": ("accuracy", "min", False),
    "max_ece": ("ece", "max", False),
    "max_brier": ("brier", "max", False),
    "max_equalized_odds_difference": ("equalized_odds_difference", "max", True),
    "max_demographic_parity_difference": ("demographic_parity_difference", "max", True),
}


@dataclass(frozen=True)
class GateCheck:
    """One gate: the metric it reads, its bound, the value found and whether it passed."""

    metric: str
    bound: Bound
    threshold: float
    value: float | None
    passed: bool

    def to_json(self) -> dict[str, object]:
        return {"metric": self.metric, "bound": self.bound, "threshold": self.threshold,
                "value": self.value, "passed": self.passed}


@dataclass(frozen=True)
class GateOutcome:
    """Whether a model may be promoted, why not, and each gate's check (by gate name)."""

    promotable: bool
    reasons: tuple[str, ...]
    checks: dict[str, GateCheck]

    def to_json(self) -> dict[str, object]:
        return {"promotable": self.promotable, "reasons": list(self.reasons),
                "checks": {name: check.to_json() for name, check in self.checks.items()}}


def _metric(final_metrics: Mapping[str, Any], name: str, *, fairness: bool) -> float | None:
    """The metric as a finite float, or None when it is missing, undefined or not a number."""
    value: Any = None
    if fairness:
        nested = final_metrics.get("fairness")
        if isinstance(nested, Mapping):
            value = nested.get(name)
    if value is None:
        value = final_metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def evaluate_gates(kpis: KpiSpec | None, final_metrics: Mapping[str, Any]) -> GateOutcome:
    """Check ``final_metrics`` against every gate ``kpis`` sets (none set: promotable)."""
    gates = kpis.gates() if kpis is not None else {}
    checks: dict[str, GateCheck] = {}
    reasons: list[str] = []
    for gate in GATES:
        if gate not in gates:
            continue
        metric, bound, fairness = GATES[gate]
        threshold = gates[gate]
        value = _metric(final_metrics, metric, fairness=fairness)
        if value is None:
            passed = False
            reasons.append(f"{gate}: {metric} is missing or undefined, so the gate "
                           f"({'>=' if bound == 'min' else '<='} {threshold:g}) cannot pass")
        elif bound == "min":
            passed = value >= threshold
            if not passed:
                reasons.append(f"{gate}: {metric} {value:.4f} is below the minimum "
                               f"{threshold:g}")
        else:
            passed = value <= threshold
            if not passed:
                reasons.append(f"{gate}: {metric} {value:.4f} is above the maximum "
                               f"{threshold:g}")
        checks[gate] = GateCheck(metric=metric, bound=bound, threshold=threshold,
                                 value=value, passed=passed)
    return GateOutcome(promotable=not reasons, reasons=tuple(reasons), checks=checks)
