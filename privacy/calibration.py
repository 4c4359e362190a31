"""Noise calibration: the smallest DP-SGD noise multiplier whose PLD epsilon meets a target.

This module owns the search behind :func:`privacy.accounting.noise_for_target`. Epsilon
falls monotonically and smoothly (close to a power law) as the noise multiplier grows, so
the search works on ``log epsilon`` against ``log sigma``:

1. **Bracket with RDP**: a vectorised integer-order RDP bound (milliseconds) gives a noise
   multiplier that certainly reaches the target, because RDP over-estimates epsilon; the
   tight accountant needs about 3-5% less.
2. **Coarse PLD search**: Illinois regula falsi on a pessimistic PLD with a coarse
   discretisation finds the root to 0.1%.
3. **Fine check and refinement** on exactly the computation the ledger uses
   (:data:`LEDGER_DISCRETISATION`): the result is the smallest noise found whose ledger
   epsilon is at most the target and within the tolerance of it. A noise multiplier is
   only ever returned after the ledger computation has confirmed it reaches the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from common.errors import ErrorCode, TesseraError
from privacy.mechanisms import DpStep, Mechanism
from privacy.pld import pld_epsilon, run_epsilon
from privacy.rdp import rdp_noise_upper_bound

#: Discretisation of the privacy loss in every ledger figure (pessimistic rounding).
LEDGER_DISCRETISATION = 1e-3
#: Coarsest discretisation of the search phase (finer for small targets).
SEARCH_DISCRETISATION = 1e-2
#: Largest noise multiplier calibration returns; a target needing more is refused.
MAX_NOISE_MULTIPLIER = 1e4

_Epsilon = Callable[[float], float]


def calibrate_noise(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, tolerance: float,
    extra: tuple[Mechanism, ...] = (),
) -> float:
    """Smallest noise multiplier (to ``tolerance`` in epsilon) reaching ``target_epsilon``.

    The ledger epsilon (:func:`privacy.pld.pld_epsilon` at :data:`LEDGER_DISCRETISATION`) of
    ``steps`` steps at ``sample_rate`` and the returned multiplier lies in
    ``[target_epsilon - tolerance, target_epsilon]``.
    """

    def epsilon_at(discretisation: float) -> _Epsilon:
        def epsilon(sigma: float) -> float:
            step = DpStep(sigma, sample_rate, steps)
            return run_epsilon(step, delta=delta, discretisation=discretisation, extra=extra)

        return epsilon

    fine = epsilon_at(LEDGER_DISCRETISATION)
    coarse = epsilon_at(max(LEDGER_DISCRETISATION, min(SEARCH_DISCRETISATION, target_epsilon / 50)))
    # Releases composed with the run: by basic composition, a run that alone reaches the
    # target minus their epsilon reaches the target with them, so its noise still brackets.
    spent = pld_epsilon(extra, delta=delta, discretisation=LEDGER_DISCRETISATION) if extra \
        else 0.0
    if spent >= target_epsilon:
        raise TesseraError(ErrorCode.BUDGET_EXCEEDED,
                           f"target_epsilon: the study's other releases alone spend {spent:.3f}, "
                           f"no less than the target {target_epsilon:g}")
    start = rdp_noise_upper_bound(
        target_epsilon=target_epsilon - spent,
        delta=delta,
        sample_rate=sample_rate,
        steps=steps,
        ceiling=MAX_NOISE_MULTIPLIER,
    )
    sigma = start if start is not None else 1.0
    # Coarse root, to 3e-4 of the target: its pessimistic epsilon is at least the fine one.
    # PLD typically needs 3-5% less noise than RDP: start with a point 5% below.
    points = [(sigma, coarse(sigma)), (0.95 * sigma, coarse(0.95 * sigma))]
    points = _solve(
        coarse, target_epsilon, points, aim=target_epsilon,
        accept=lambda f: f >= target_epsilon * (1 - 3e-4),
    )
    sigma = min(p[0] for p in points if p[1] <= target_epsilon)
    # The local power-law exponent: from the final coarse bracket when it is wide enough for
    # the discretisation's staircase not to matter, else from points near the root.
    below = max((p for p in points if p[1] > target_epsilon and p[0] < sigma), default=None)
    if below is not None and sigma / below[0] > 1.002:
        slope = _log_slope([below, (sigma, min(p[1] for p in points if p[0] == sigma))])
    else:
        slope = _log_slope([p for p in points if abs(math.log(p[0] / sigma)) < 0.25])
    # Fine: the ledger's own computation decides, aiming at the middle of the window.
    aim = target_epsilon - tolerance / 2
    first = (sigma, fine(sigma))
    guess = sigma * math.exp(math.log(max(first[1], 1e-300) / aim) / slope)
    points = _solve(
        fine, target_epsilon, [first], aim=aim,
        accept=lambda f: f >= target_epsilon - tolerance, guess=guess,
    )
    return min(p[0] for p in points if p[1] <= target_epsilon)


def _solve(
    epsilon: _Epsilon,
    target: float,
    points: list[tuple[float, float]],
    *,
    aim: float,
    accept: Callable[[float], bool],
    guess: float | None = None,
) -> list[tuple[float, float]]:
    """Evaluate ``epsilon`` until a point with ``accept(eps) and eps <= target`` is found.

    Secant steps on ``log eps`` against ``log sigma`` towards ``aim`` (kept strictly inside
    the bracket once one exists; geometric steps outside it), then bisection if the secant
    stalls. Returns every point evaluated. Refuses a target that no noise multiplier up to
    :data:`MAX_NOISE_MULTIPLIER` reaches.
    """
    points = list(points)
    log_aim = math.log(aim)
    for iteration in range(100):
        below = [p for p in points if p[1] <= target]
        above = [p for p in points if p[1] > target]
        hi = min(below) if below else None
        lo = max((p for p in above if hi is None or p[0] < hi[0]), default=None)
        if hi is not None and accept(hi[1]):
            return points
        if guess is not None:
            sigma, guess = guess, None
        elif lo is not None and hi is not None:
            x_lo, x_hi = math.log(lo[0]), math.log(hi[0])
            if iteration < 30 and hi[1] > 0:
                y_lo, y_hi = math.log(lo[1]) - log_aim, math.log(hi[1]) - log_aim
                x = x_hi - y_hi * (x_hi - x_lo) / (y_hi - y_lo)
                margin = 0.01 * (x_hi - x_lo)
                x = min(max(x, x_lo + margin), x_hi - margin)
            else:
                x = (x_lo + x_hi) / 2
            sigma = math.exp(x)
        else:
            sigma = _extrapolate(points, log_aim, below=hi is not None)
            if sigma > MAX_NOISE_MULTIPLIER:
                raise TesseraError(
                    ErrorCode.CONFIG_INVALID,
                    f"target_epsilon: {target} is unreachable with a noise multiplier up to "
                    f"{MAX_NOISE_MULTIPLIER:g}",
                )
        points.append((sigma, epsilon(sigma)))
    raise TesseraError(  # pragma: no cover - the secant falls back to bisection long before
        ErrorCode.INTERNAL, "noise calibration did not converge"
    )


def _extrapolate(points: list[tuple[float, float]], log_aim: float, *, below: bool) -> float:
    """Next sigma outside the bracket: the secant through the two points nearest the aim,
    overshooting by 1% so the next point lands on the other side, moving at most 2x."""
    nearest = sorted(points, key=lambda p: abs(math.log(max(p[1], 1e-300)) - log_aim))[:2]
    sigma, value = nearest[0]
    slope = _log_slope(nearest) if len(nearest) == 2 else 1.0
    step = (math.log(max(value, 1e-300)) - log_aim) / slope  # log-sigma distance to the aim
    step = step * 1.01 + (0.01 if step >= 0 else -0.01)
    step = min(max(step, -math.log(2)), math.log(2))
    if (below and step >= 0) or (not below and step <= 0):
        step = -0.02 if below else 0.02
    return sigma * math.exp(step)


def _log_slope(points: list[tuple[float, float]]) -> float:
    """``-d log eps / d log sigma`` across the widest pair of points (a power-law exponent)."""
    usable = sorted(p for p in points if p[1] > 0)
    if len(usable) < 2:
        return 1.0
    (s1, f1), (s2, f2) = usable[0], usable[-1]
    if s2 <= s1 or f1 <= f2:
        return 1.0
    return (math.log(f1) - math.log(f2)) / (math.log(s2) - math.log(s1))
