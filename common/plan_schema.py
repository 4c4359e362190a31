"""The study plan's schema: one frozen pydantic model per TOML section.

Models forbid unknown keys and are strict about types (a quoted number is an error). Reading,
writing, overriding and hashing plans live in :mod:`common.plan`; the sections that declare
what a study releases and measures besides training (KPI gates, evaluation queries, release,
statistics, drift) in :mod:`common.plan_queries`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from common.plan_base import Spec as _Spec
from common.plan_queries import DriftSpec, EvaluationSpec, KpiSpec, ReleaseSpec, StatisticsSpec

__all__ = ["DriftSpec", "EvaluationSpec", "KpiSpec", "ReleaseSpec", "StatisticsSpec"]

_SLUG = re.compile(r"^[a-z0-9_-]+$")


class StudySpec(_Spec):
    """``[study]``: identity of the study and its master seed."""

    name: str
    description: str = ""
    seed: int = Field(ge=0)
    #: The plan's version within its study (a drafted successor bumps it); 1 when absent.
    version: int = Field(default=1, ge=1)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError("must be a slug of lowercase letters, digits, '_' and '-'")
        return value


class ColumnSpec(_Spec):
    """``[dataset.columns.<name>]``: one column of the data dictionary.

    ``type`` is ``number`` (any finite number), ``integer`` (whole numbers), ``binary`` (0 or
    1) or ``category`` (one of ``categories``). ``min``/``max`` bound numbers and integers
    (inclusive); ``unit`` and ``description`` document the column for the people who
    prepare the data.
    """

    type: Literal["number", "integer", "category", "binary"]
    unit: str = ""
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        numeric = self.type in ("number", "integer")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply only to number and integer columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        if self.type == "category":
            if not self.categories:
                raise ValueError("a category column needs a non-empty categories list")
            if any(not c.strip() for c in self.categories) or len(set(self.categories)) != len(
                self.categories
            ):
                raise ValueError("categories must be distinct, non-empty strings")
        elif self.categories is not None:
            raise ValueError(f"categories apply only to category columns, not {self.type}")
        return self


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class DatasetSpec(_Spec):
    """``[dataset]``: the schema every site's table must have, and how it is split.

    ``columns`` is the optional data dictionary: one entry per feature, label or sensitive
    column it documents (not every column needs one). The label must be ``binary`` and a
    feature's categories must be numbers, since features are numeric model inputs.
    """

    name: str = Field(min_length=1)
    features: list[str] = Field(min_length=1)
    label: str = Field(min_length=1)
    sensitive: str | None = None
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(default=0.5, gt=0.0)
    columns: dict[str, ColumnSpec] | None = None

    @field_validator("features")
    @classmethod
    def _unique_features(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("feature names must be non-empty")
        duplicates = sorted(name for name, count in Counter(value).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        return value

    @field_validator("label")
    @classmethod
    def _label_not_feature(cls, value: str, info: ValidationInfo) -> str:
        if value in info.data.get("features", []):
            raise ValueError("the label must not also be a feature")
        return value

    @field_validator("sensitive")
    @classmethod
    def _sensitive_not_label(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == "":
            raise ValueError("must be a column name or omitted")
        if value is not None and value == info.data.get("label"):
            raise ValueError("the sensitive column must not be the label")
        return value

    @model_validator(mode="after")
    def _dictionary_matches_schema(self) -> DatasetSpec:
        known = {*self.features, self.label, *([self.sensitive] if self.sensitive else [])}
        for name, column in (self.columns or {}).items():
            if name not in known:
                raise ValueError(
                    f"columns.{name}: not a feature, the label or the sensitive column"
                )
            if name == self.label and column.type != "binary":
                raise ValueError(f"columns.{name}: the label column must be of type binary")
            if name in self.features and column.type == "category" and not all(
                _is_number(c) for c in column.categories or []
            ):
                raise ValueError(f"columns.{name}: a feature's categories must be numbers")
        return self


class ModelSpec(_Spec):
    """``[model]``: which zoo model to train (see :mod:`common.models`)."""

    kind: Literal["logreg", "mlp", "cnn"]
    hidden: int = Field(default=16, ge=2)
    groups: int = Field(default=4, ge=1)

    @field_validator("groups")
    @classmethod
    def _groups_divide_hidden(cls, value: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden")
        if info.data.get("kind") == "mlp" and hidden is not None and hidden % value != 0:
            raise ValueError(f"must divide model.hidden ({hidden}) for an mlp")
        if info.data.get("kind") == "cnn" and 16 % value != 0:
            raise ValueError("must divide 16 (the cnn's first convolution's channels)")
        return value


class TrainingSpec(_Spec):
    """``[training]``: federated rounds and each site's local SGD."""

    rounds: int = Field(ge=1, le=1000)
    local_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0)


class PrivacySpec(_Spec):
    """``[privacy]``: DP-SGD target and clipping, and the per-round update bound."""

    dp: bool = True
    target_epsilon: float = Field(gt=0.0)
    delta: float = Field(gt=0.0, lt=1.0)
    max_grad_norm: float = Field(gt=0.0)
    update_clip: float = Field(gt=0.0)


#: Largest total coefficient-modulus bits at 128-bit classical security per CKKS ring degree,
#: for a ternary secret: the HE security standard's table (docs/he-parameters.md).
HE_MAX_COEFF_BITS: dict[int, int] = {2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


class HESpec(_Spec):
    """``[he]``: CKKS parameters for encrypted aggregation (each chain must fit the 128-bit
    table :data:`HE_MAX_COEFF_BITS` for its ring degree)."""

    enabled: bool = True
    poly_modulus_degree: Literal[2048, 4096, 8192, 16384, 32768] = 8192
    coeff_mod_bit_sizes: list[int] = Field(default_factory=lambda: [60, 50, 60], min_length=2)
    global_scale_bits: int = Field(default=50, ge=1)

    @field_validator("coeff_mod_bit_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if any(bits < 1 for bits in value):
            raise ValueError("every bit size must be positive")
        return value

    @model_validator(mode="after")
    def _secure_chain(self) -> HESpec:
        limit = HE_MAX_COEFF_BITS[self.poly_modulus_degree]
        if sum(self.coeff_mod_bit_sizes) > limit:
            raise ValueError(
                f"he.coeff_mod_bit_sizes: {sum(self.coeff_mod_bit_sizes)} bits in total exceed "
                f"{limit}, the 128-bit security limit for poly_modulus_degree "
                f"{self.poly_modulus_degree}")
        return self

    @field_validator("global_scale_bits")
    @classmethod
    def _scale_below_modulus(cls, value: int, info: ValidationInfo) -> int:
        sizes = info.data.get("coeff_mod_bit_sizes")
        if sizes and value >= max(sizes):
            raise ValueError(f"must be less than max(he.coeff_mod_bit_sizes) ({max(sizes)})")
        return value


class FederationSpec(_Spec):
    """``[federation]``: how many sites must take part in a round, and whether sites may
    decrypt *attested* sums.

    With ``attesters = c`` (encrypted studies only) a site accepts, for training, evaluation
    and importance, the sum of a contribution set that ``c`` distinct key-holding sites
    verified contribution by contribution and signed (docs/envelope-format.md, "Attested
    sums"), instead of verifying every contribution itself. The key is left out of the plan
    (and its hash) while it is 0, so plans written before it keep their hash.
    """

    min_sites: int = Field(default=2, ge=1)
    attesters: int = Field(default=0, ge=0, le=32)

    @model_serializer(mode="wrap")
    def _without_attesters(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not self.attesters:
            data.pop("attesters", None)
        return data


class StudyPlan(_Spec):
    """A complete, validated study plan."""

    study: StudySpec
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec
    privacy: PrivacySpec
    he: HESpec = Field(default_factory=HESpec)
    federation: FederationSpec = Field(default_factory=FederationSpec)
    kpis: KpiSpec | None = None
    evaluation: EvaluationSpec | None = None
    release: ReleaseSpec | None = None
    statistics: StatisticsSpec | None = None
    drift: DriftSpec | None = None

    @model_validator(mode="after")
    def _attested_sums_need_he(self) -> StudyPlan:
        if self.federation.attesters and not self.he.enabled:
            raise ValueError("[federation] attesters sign sums of encrypted contributions: "
                             "it needs [he] enabled = true")
        return self

    @model_validator(mode="after")
    def _drift_needs_ranges(self) -> StudyPlan:
        if self.drift is None:
            return self
        watched = self.drift.features or self.dataset.features
        unknown = [f for f in watched if f not in self.dataset.features]
        if unknown or len(set(watched)) != len(watched) or not watched:
            raise ValueError("[drift] features must be distinct features of the dataset"
                             + (f" ('{unknown[0]}' is not one)" if unknown else ""))
        columns = self.dataset.columns or {}
        missing = [f for f in watched
                   if f not in columns or columns[f].min is None or columns[f].max is None]
        if missing:
            raise ValueError("[drift] bins each feature over its declared range: "
                             f"dataset.columns.{missing[0]} needs a min and a max")
        return self

    @property
    def evaluation_policy(self) -> EvaluationSpec:
        """The declared ``[evaluation]`` queries, or the defaults."""
        return self.evaluation or EvaluationSpec()

    @property
    def statistics_policy(self) -> StatisticsSpec:
        """The declared ``[statistics]`` mechanism, or the defaults."""
        return self.statistics or StatisticsSpec()

    @property
    def release_policy(self) -> ReleaseSpec:
        """The declared ``[release]`` precision, or the default."""
        return self.release or ReleaseSpec()

    @property
    def name(self) -> str:
        """The study's name (``study.name``)."""
        return self.study.name

    @property
    def seed(self) -> int:
        """The study's master seed (``study.seed``)."""
        return self.study.seed
