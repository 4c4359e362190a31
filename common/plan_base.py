"""The base of every study-plan section: a frozen pydantic model that forbids unknown keys
and is strict about types (a quoted number is an error)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """One TOML section of a study plan."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
