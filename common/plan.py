"""The study plan: TOML reading and writing, overrides and the plan hash (the schema is
:mod:`common.plan_schema`, whose models are re-exported here).

A study plan is the one home of training configuration (dataset schema, model, rounds, DP
and HE parameters, minimum sites, KPI release gates). Plans are TOML files validated by
frozen pydantic models that forbid unknown keys and are strict about types (a quoted number
is an error). Sites approve a plan by its :func:`plan_hash`, a SHA-256 over a canonical JSON
normal form, so the hash ignores key order, whitespace and comments but changes with any
semantic edit; the optional ``[kpis]`` table enters the hash only with the gates it sets,
and the optional data dictionary (``[dataset.columns.<name>]``) only when it is present.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from common.errors import ErrorCode, TesseraError
from common.plan_schema import (
    ColumnSpec,
    DatasetSpec,
    DriftSpec,
    EvaluationSpec,
    FederationSpec,
    HESpec,
    KpiSpec,
    ModelSpec,
    PrivacySpec,
    ReleaseSpec,
    StatisticsSpec,
    StudyPlan,
    StudySpec,
    TrainingSpec,
)

__all__ = [
    "ColumnSpec", "DatasetSpec", "DriftSpec", "EvaluationSpec", "FederationSpec", "HESpec",
    "KpiSpec", "ModelSpec", "PrivacySpec", "ReleaseSpec", "StatisticsSpec", "StudyPlan",
    "StudySpec",
    "TrainingSpec",
    "bundled_plan_path", "bundled_plans", "declared_feature_ranges", "load_plan", "override",
    "parse_plan", "plan_hash", "plan_to_toml", "statistics_length",
]

#: The study plans shipped with Tessera: package data of ``common`` (``common/studies/*.toml``).
BUNDLED_STUDIES = "studies"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "(plan)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"study plan: {where}: {message}")
    return "\n".join(lines)


def _validate(raw: dict[str, Any]) -> StudyPlan:
    try:
        return StudyPlan.model_validate(raw)
    except ValidationError as error:
        raise TesseraError(ErrorCode.PLAN_INVALID, _describe(error)) from None


def parse_plan(text: str) -> StudyPlan:
    """Parse and validate a study plan from TOML text; every problem is listed, one a line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TesseraError(ErrorCode.PLAN_INVALID, f"study plan: not valid TOML: {error}") from None
    return _validate(raw)


def load_plan(path: Path) -> StudyPlan:
    """Read and validate the study plan stored at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"study plan file not found: {path}") from None
    except UnicodeDecodeError:
        raise TesseraError(ErrorCode.PLAN_INVALID, f"study plan: {path}: not UTF-8 text") from None
    return parse_plan(text)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _canonical(plan: StudyPlan) -> dict[str, Any]:
    """The plan as plain data for hashing; ``[kpis]`` only with the gates it sets.

    A plan without gates (no ``[kpis]`` table, or an empty one) hashes exactly as plans did
    before ``[kpis]`` existed, and a gate added later does not change existing hashes. A plan
    without a data dictionary likewise hashes as plans did before ``dataset.columns`` existed.
    """
    raw = plan.model_dump(mode="json", exclude={"kpis"}, exclude_none=False)
    # Optional sections enter the hash only when present.
    for optional in ("evaluation", "release", "statistics", "drift"):
        if raw.get(optional) is None:
            raw.pop(optional, None)
    if not plan.dataset.columns:
        del raw["dataset"]["columns"]
    if plan.study.version == 1:  # plans from before study.version hash as they did
        del raw["study"]["version"]
    gates = plan.kpis.gates() if plan.kpis is not None else {}
    if gates:
        raw["kpis"] = gates
    return raw


def plan_hash(plan: StudyPlan) -> str:
    """SHA-256 hex of the plan's canonical JSON (sorted keys, no whitespace, 3.0 == 3)."""
    canonical = json.dumps(
        _normalise(_canonical(plan)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan_to_toml(plan: StudyPlan) -> str:
    """Render the plan as TOML such that ``parse_plan(plan_to_toml(p)) == p``."""
    return tomli_w.dumps(plan.model_dump(mode="json", exclude_none=True))


def override(
    plan: StudyPlan,
    *,
    rounds: int | None = None,
    target_epsilon: float | None = None,
    seed: int | None = None,
    he_enabled: bool | None = None,
    min_sites: int | None = None,
    loso: bool | None = None,
    attesters: int | None = None,
) -> StudyPlan:
    """Return a new, validated plan with the given fields replaced (``None`` keeps a field)."""
    raw = plan.model_dump()
    changes = {
        ("training", "rounds"): rounds,
        ("privacy", "target_epsilon"): target_epsilon,
        ("study", "seed"): seed,
        ("he", "enabled"): he_enabled,
        ("federation", "min_sites"): min_sites,
        ("federation", "attesters"): attesters,
    }
    for (section, field), value in changes.items():
        if value is not None:
            raw[section][field] = value
    if loso is not None and loso != plan.evaluation_policy.loso:
        raw["evaluation"] = {**plan.evaluation_policy.model_dump(), "loso": loso}
    return _validate(raw)


def declared_feature_ranges(plan: StudyPlan) -> tuple[list[float], list[float]] | None:
    """Each feature's declared ``(min, max)`` as two lists, or None when any lacks one."""
    columns = plan.dataset.columns or {}
    lows, highs = [], []
    for feature in plan.dataset.features:
        column = columns.get(feature)
        if column is None or column.min is None or column.max is None:
            return None
        lows.append(float(column.min))
        highs.append(float(column.max))
    return lows, highs


def statistics_length(plan: StudyPlan) -> int:
    """Values of one site's round-0 statistics: a normalised sum per feature when every
    feature has a declared range; otherwise sums and sums of squares (plans without DP)."""
    features = len(plan.dataset.features)
    return features if declared_feature_ranges(plan) is not None else 2 * features


def _studies_dir() -> Path:
    folder = resources.files(__name__.rpartition(".")[0]).joinpath(BUNDLED_STUDIES)
    if not isinstance(folder, Path):  # e.g. imported from a zip archive
        raise TesseraError(ErrorCode.NOT_FOUND,
                           "the bundled study plans are not on the file system in this install")
    return folder


def bundled_plans() -> tuple[str, ...]:
    """Names of the study plans shipped with Tessera (the package's ``studies/*.toml``)."""
    return tuple(sorted(path.stem for path in _studies_dir().glob("*.toml")))


def bundled_plan_path(name: str) -> Path:
    """Path of a study plan shipped with Tessera (package data), by study name."""
    available = bundled_plans()
    if name not in available:
        listing = ", ".join(available) or "none"
        raise TesseraError(
            ErrorCode.NOT_FOUND, f"no bundled study plan named {name!r}; available: {listing}"
        )
    return _studies_dir() / f"{name}.toml"
