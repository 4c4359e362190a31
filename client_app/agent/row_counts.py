"""The row counts a site releases: how many training and held-out rows it has.

Counts are a release like any other: an adversary who knows every other record learns from
an exact count whether one patient is in the dataset. Under DP a site releases its two
counts with Gaussian noise (one row is in exactly one of them: L2 sensitivity 1; the plan's
``[statistics] count_noise_multiplier``), rounded and at least 1, recorded in the ledger as a
``row_counts`` entry. The noisy counts are drawn once per dataset version and split (cached
in the site store under a digest of those) and reused by every later run, so a coordinator
cannot spend a site's budget by asking again. Consent changes do not draw again: the few rows
a withdrawal removes are far inside the noise, and a released count is only ever used as an
approximate figure (weights, sample rate). Everything the coordinator sees
that depends on a row count uses the released one: the ``hello`` reply, the example count
and weight of every contribution, and DP-SGD's sample rate and step count (so the noise,
sample rate and steps a site reports reveal nothing more).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from client_app.agent.context import TaskContext
from client_app.agent.spending import spend
from client_app.store.records import ReleaseKind
from common.errors import ErrorCode, TesseraError
from privacy.dp_evaluation import noisy_cells
from privacy.release_plan import row_count_mechanism

#: Prefix of the site-store settings that keep released counts.
SETTING_PREFIX = "row_counts:"


@dataclass(frozen=True)
class ReleasedRows:
    """The counts a site shows outside: training and held-out rows."""

    train: int
    test: int


def _setting_key(ctx: TaskContext, *, noise: float) -> str:
    split = ctx.split
    text = "|".join((split.dataset_id, split.dataset_version,
                     repr(ctx.plan.dataset.test_fraction), repr(noise)))
    return SETTING_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _cached(value: str | None) -> ReleasedRows | None:
    if value is None:
        return None
    try:
        doc = json.loads(value)
        rows = ReleasedRows(train=int(doc["train"]), test=int(doc["test"]))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: release afresh (a new ledger entry)
    return rows if rows.train >= 1 and rows.test >= 1 else None


def released_rows(ctx: TaskContext, *, release: bool = True) -> ReleasedRows:
    """This run's dataset's row counts as released (exact in a plan without DP).

    ``release`` False (training): only counts released before are used; with none, the
    task is refused (OUT_OF_SCHEDULE) rather than spending budget outside the statistics
    step, which checks first that the whole run fits.
    """
    split = ctx.split
    train, test = len(split.train.y), len(split.test.y)
    mechanism = row_count_mechanism(ctx.plan)
    if mechanism is None:
        return ReleasedRows(train=train, test=test)
    key = _setting_key(ctx, noise=mechanism.noise_multiplier)
    cached = _cached(ctx.store.setting(key))
    if cached is not None:
        return cached
    if not release:
        raise TesseraError(ErrorCode.OUT_OF_SCHEDULE,
                           "this site released no row counts for this data yet: a run's "
                           "statistics come before its training")
    spend(ctx, mechanism, kind=ReleaseKind.ROW_COUNTS, what="the row counts")
    noisy = noisy_cells(np.array([train, test]), noise_multiplier=mechanism.noise_multiplier)
    rows = ReleasedRows(train=max(1, int(noisy[0])), test=max(1, int(noisy[1])))
    ctx.store.put_setting(key, json.dumps({"train": rows.train, "test": rows.test}))
    return rows
