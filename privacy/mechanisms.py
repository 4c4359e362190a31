"""The privacy mechanisms a site's ledger records, in the form an accountant needs.

This module owns the vocabulary shared by every accountant: a DP-SGD run
(:class:`DpStep`: Poisson-subsampled Gaussian steps), a plain Gaussian-mechanism release
(:class:`GaussianRelease`: statistics, evaluation counts), their union :data:`Mechanism`, the
JSON form that lets anyone holding a ledger recompute epsilon with an independent accountant
(:meth:`DpStep.to_json`, :func:`mechanism_from_json`), and :func:`compact_history`, which
merges identical mechanisms of a history into one entry with a summed count (composition is
commutative, so the result is order-free and each distinct mechanism is built once).

All noise multipliers are relative to the L2 sensitivity (standard deviation / sensitivity);
the neighbouring relation is add-or-remove one record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from common.errors import ErrorCode, TesseraError


@dataclass(frozen=True)
class DpStep:
    """One stretch of DP-SGD steps at a fixed noise multiplier and Poisson sample rate."""

    mechanism: ClassVar[str] = "poisson_subsampled_gaussian"

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        check_noise_multiplier(self.noise_multiplier)
        check_sample_rate(self.sample_rate)
        check_count("steps", self.steps)

    def to_json(self) -> dict[str, Any]:
        """What an independent accountant needs: the mechanism and its parameters."""
        return {
            "mechanism": self.mechanism,
            "noise_multiplier": float(self.noise_multiplier),
            "sample_rate": float(self.sample_rate),
            "steps": self.steps,
        }


@dataclass(frozen=True)
class GaussianRelease:
    """``count`` releases of the Gaussian mechanism, not subsampled.

    ``noise_multiplier`` is the noise standard deviation divided by the release's L2
    sensitivity (``sigma / sensitivity``); the ``count`` releases compose as one Gaussian
    mechanism with noise multiplier ``noise_multiplier / sqrt(count)``.
    """

    mechanism: ClassVar[str] = "gaussian"

    noise_multiplier: float
    count: int = 1

    def __post_init__(self) -> None:
        check_noise_multiplier(self.noise_multiplier)
        check_count("count", self.count)

    def to_json(self) -> dict[str, Any]:
        """What an independent accountant needs: the mechanism and its parameters."""
        return {
            "mechanism": self.mechanism,
            "noise_multiplier": float(self.noise_multiplier),
            "count": self.count,
        }


#: Every mechanism a privacy history may hold.
Mechanism = DpStep | GaussianRelease


def mechanism_from_json(data: Mapping[str, Any]) -> Mechanism:
    """The mechanism a :meth:`DpStep.to_json` or :meth:`GaussianRelease.to_json` dict names."""
    if not isinstance(data, Mapping):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"mechanism: expected an object, got {type(data).__name__}"
        )
    name = data.get("mechanism")
    fields: tuple[str, ...]
    if name == DpStep.mechanism:
        fields = ("noise_multiplier", "sample_rate", "steps")
    elif name == GaussianRelease.mechanism:
        fields = ("noise_multiplier", "count")
    else:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"mechanism: unknown mechanism {name!r}")
    extra = sorted(set(data) - {"mechanism", *fields})
    missing = [field for field in fields if field not in data]
    if extra or missing:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"mechanism: {name} needs exactly {', '.join(fields)} "
            f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})",
        )
    if name == DpStep.mechanism:
        return DpStep(data["noise_multiplier"], data["sample_rate"], data["steps"])
    return GaussianRelease(data["noise_multiplier"], data["count"])


def compact_history(history: Sequence[Mechanism]) -> tuple[Mechanism, ...]:
    """``history`` with identical mechanisms merged (counts summed), in a canonical order.

    Raises a :class:`TesseraError` naming ``history[i]`` for an entry of another type.
    """
    if isinstance(history, Mapping | str | bytes):
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"history: expected a sequence of mechanisms, got {type(history).__name__}",
        )
    steps: dict[tuple[float, float], int] = {}
    releases: dict[float, int] = {}
    for index, item in enumerate(history):
        if isinstance(item, DpStep):
            key = (float(item.noise_multiplier), float(item.sample_rate))
            steps[key] = steps.get(key, 0) + item.steps
        elif isinstance(item, GaussianRelease):
            sigma = float(item.noise_multiplier)
            releases[sigma] = releases.get(sigma, 0) + item.count
        else:
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"history[{index}]: expected a DpStep or GaussianRelease, "
                f"got {type(item).__name__}",
            )
    merged: list[Mechanism] = [
        DpStep(sigma, rate, count) for (sigma, rate), count in sorted(steps.items())
    ]
    merged.extend(GaussianRelease(sigma, count) for sigma, count in sorted(releases.items()))
    return tuple(merged)


def is_number(value: object) -> bool:
    """A real number (int or float), not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_noise_multiplier(value: object) -> None:
    if not is_number(value) or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type,operator]
        raise TesseraError(
            ErrorCode.CONFIG_INVALID,
            f"noise_multiplier: must be a finite number > 0, got {value!r}",
        )


def check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"{name}: must be an integer >= 1, got {value!r}"
        )


def check_sample_rate(value: object) -> None:
    if not is_number(value) or not (0 < value <= 1):  # type: ignore[operator]
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"sample_rate: must be in (0, 1], got {value!r}"
        )


def check_delta(value: object) -> None:
    if not is_number(value) or not (0 < value < 1):  # type: ignore[operator]
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"delta: must be in (0, 1), got {value!r}")


def check_epsilon(name: str, value: object) -> None:
    if not is_number(value) or not (math.isfinite(value) and value > 0):  # type: ignore[arg-type,operator]
        raise TesseraError(
            ErrorCode.CONFIG_INVALID, f"{name}: must be a finite number > 0, got {value!r}"
        )
