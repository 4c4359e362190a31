"""The prediction request's rows, checked field by field, and problems that name no value.

A request carries ``rows``: a list of JSON objects mapping each model feature to a number
(other fields are ignored). Every problem names the row (its index in ``rows``, from 0) and
the field, and says what is wrong, never what the value was: the values are patient data.
At most :data:`MAX_PROBLEMS` problems are reported per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_PROBLEMS = 20
DEFAULT_MAX_BATCH = 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request; ``row`` None when it concerns the whole body."""

    row: int | None
    field: str
    problem: str

    def to_json(self) -> dict[str, object]:
        where = self.field if self.row is None else f"rows[{self.row}].{self.field}"
        return {"row": self.row, "field": self.field, "problem": self.problem,
                "message": f"{where}: {self.problem}"}


class InvalidRequestError(Exception):
    """The request cannot be scored; ``problems`` say where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the request")
        self.problems = tuple(problems)


def _number(value: object) -> str | None:
    """None when ``value`` is a usable number, else what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if not math.isfinite(float(value)):
        return "must be a finite number"
    return None


def rows_matrix(rows: object, features: Sequence[str], *,
                max_batch: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """The raw feature matrix ``(rows, features)`` of a request (or InvalidRequestError)."""
    if not isinstance(rows, list):
        raise InvalidRequestError([Problem(None, "rows", "must be a list of objects")])
    if not rows:
        raise InvalidRequestError([Problem(None, "rows", "must hold at least one row")])
    if len(rows) > max_batch:
        raise InvalidRequestError([Problem(None, "rows", f"at most {max_batch} rows per request")])
    X = np.empty((len(rows), len(features)), dtype=np.float64)
    problems: list[Problem] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(Problem(i, "*", "must be an object mapping features to numbers"))
        else:
            for j, name in enumerate(features):
                if name not in row:
                    problems.append(Problem(i, name, "is missing"))
                    continue
                wrong = _number(row[name])
                if wrong is None:
                    X[i, j] = float(row[name])
                else:
                    problems.append(Problem(i, name, wrong))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InvalidRequestError(problems[:MAX_PROBLEMS])
    return X
