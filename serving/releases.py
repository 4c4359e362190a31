"""Release state of each study's served model: the stable version and a candidate beside it.

Two ways to bring in a candidate version:

* **canary**: ``percent`` of the requests go to the candidate; a request that carries a
  request key (``X-Request-Key``) always lands on the same side (the key's SHA-256, with the
  study, picks a slot out of 10,000), a request without one is placed at random;
* **blue-green**: the candidate is loaded and warm (callers may name it with
  ``X-Model-Version``) but takes no traffic until it is promoted, then all at once.

``promote`` makes the candidate the stable version; ``rollback`` drops it (by an operator or
automatically by :mod:`serving.guard`). Every action is a row of ``release_events`` and an
event of the coordinator's audit log (``model_release``, ``model_promoted``,
``model_rolled_back``). Each change bumps ``generation`` so a running service reloads.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlmodel import Session, col, select

from common.errors import ErrorCode, TesseraError
from common.sql import SqlStore
from common.workdir import CoordinatorDir
from server.audit_trail import record_event
from server.migrations import MIGRATIONS_DIR, ReleaseEventRow, ReleaseRow

Mode = Literal["canary", "blue_green"]
SLOTS = 10_000
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MAX_SCORE_PSI = 0.25
DEFAULT_MIN_REQUESTS = 50


@dataclass(frozen=True)
class Thresholds:
    """When the guard rolls a candidate back (docs/serving.md, "Automatic rollback")."""

    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_score_psi: float = DEFAULT_MAX_SCORE_PSI
    min_requests: int = DEFAULT_MIN_REQUESTS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_error_rate) and 0.0 <= self.max_error_rate <= 1.0):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "max_error_rate: must be in [0, 1]")
        if not (math.isfinite(self.max_score_psi) and self.max_score_psi > 0.0):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "max_score_psi: must be > 0")
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) \
                or self.min_requests < 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "min_requests: must be an integer >= 1")


@dataclass(frozen=True)
class Release:
    """One study's release state."""

    study: str
    stable: int
    candidate: int | None
    mode: Mode | None
    percent: float
    generation: int
    thresholds: Thresholds
    updated_at: datetime

    def route(self, key: str | None) -> int:
        """The version a request goes to (sticky per ``key`` for a canary)."""
        if self.candidate is None or self.mode != "canary" or self.percent <= 0:
            return self.stable
        if key is None:
            slot = secrets.randbelow(SLOTS)
        else:
            digest = hashlib.sha256(f"{self.study}\0{key}".encode()).digest()
            slot = int.from_bytes(digest[:8], "big") % SLOTS
        return self.candidate if slot < round(self.percent * SLOTS / 100.0) else self.stable

    def versions(self) -> list[int]:
        return [self.stable] + ([self.candidate] if self.candidate is not None else [])

    def to_json(self) -> dict[str, object]:
        return {"study": self.study, "stable": self.stable, "candidate": self.candidate,
                "mode": self.mode, "percent": self.percent, "generation": self.generation,
                "thresholds": asdict(self.thresholds),
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class ReleaseEvent:
    """One release action."""

    at: datetime
    study: str
    action: str
    actor: str
    details: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": self.at.isoformat()}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _release(row: ReleaseRow) -> Release:
    mode: Mode | None = "canary" if row.mode == "canary" else (
        "blue_green" if row.mode == "blue_green" else None)
    return Release(study=row.study, stable=row.stable_version, candidate=row.candidate_version,
                   mode=mode, percent=row.percent, generation=row.generation,
                   thresholds=Thresholds(row.max_error_rate, row.max_score_psi,
                                         row.min_requests),
                   updated_at=_utc(row.updated_at))


class ReleaseStore(SqlStore):
    """Release state and history in a coordinator folder's store; actions go to its audit log."""

    def __init__(self, coordinator_dir: Path) -> None:
        self._root = Path(coordinator_dir)
        super().__init__(CoordinatorDir(self._root).db_url, MIGRATIONS_DIR)

    def get(self, study: str) -> Release | None:
        with self._transaction() as session:
            row = session.get(ReleaseRow, study)
            return None if row is None else _release(row)

    def generation(self, study: str) -> int:
        """The state's generation (-1 when the study has none): cheap to poll."""
        release = self.get(study)
        return -1 if release is None else release.generation

    def start(self, study: str, *, stable: int, candidate: int, mode: Mode, percent: float,
              thresholds: Thresholds, actor: str) -> Release:
        """Put ``candidate`` beside ``stable`` (a canary with ``percent``, or blue-green)."""
        if mode not in ("canary", "blue_green"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "mode: 'canary' or 'blue_green'")
        if mode == "canary" and not (math.isfinite(percent) and 0.0 < percent < 100.0):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "--percent: a canary takes more than 0 and less than 100")
        if candidate == stable:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"version {candidate} is already the stable version")
        with self._transaction(write=True) as session:
            row = session.get(ReleaseRow, study)
            if row is not None and row.candidate_version is not None:
                raise TesseraError(ErrorCode.CONFIG_INVALID,
                                   f"{study}: version {row.candidate_version} is already being "
                                   "released; promote or roll it back first")
            row = row or ReleaseRow(study=study, stable_version=stable,
                                    updated_at=datetime.now(UTC))
            row.stable_version = stable
            row.candidate_version = candidate
            row.mode = mode
            row.percent = percent if mode == "canary" else 0.0
            row.max_error_rate = thresholds.max_error_rate
            row.max_score_psi = thresholds.max_score_psi
            row.min_requests = thresholds.min_requests
            release = self._save(session, row)
        self._record(study, "model_release", actor, {
            "stable": stable, "candidate": candidate, "mode": mode, "percent": release.percent,
            "thresholds": asdict(thresholds)})
        return release

    def promote(self, study: str, *, actor: str) -> Release:
        """The candidate becomes the stable version and takes all the traffic."""
        with self._transaction(write=True) as session:
            row = self._candidate_row(session, study)
            assert row is not None
            previous, row.stable_version = row.stable_version, int(row.candidate_version or 0)
            row.candidate_version, row.mode, row.percent = None, None, 0.0
            release = self._save(session, row)
        self._record(study, "model_promoted", actor,
                     {"stable": release.stable, "previous": previous})
        return release

    def rollback(self, study: str, *, actor: str, reason: str,
                 measured: dict[str, float] | None = None,
                 expected_generation: int | None = None) -> Release | None:
        """Drop the candidate; all traffic back to the stable version.

        With ``expected_generation`` (the guard), nothing happens (None) when the state moved
        on meanwhile, so an automatic rollback never undoes a newer operator action.
        """
        with self._transaction(write=True) as session:
            row = self._candidate_row(session, study, quiet=expected_generation is not None)
            if row is None or (expected_generation is not None
                               and row.generation != expected_generation):
                return None
            candidate = row.candidate_version
            row.candidate_version, row.mode, row.percent = None, None, 0.0
            release = self._save(session, row)
        self._record(study, "model_rolled_back", actor,
                     {"stable": release.stable, "candidate": candidate, "reason": reason,
                      "measured": measured or {}})
        return release

    def events(self, study: str | None = None) -> list[ReleaseEvent]:
        query = select(ReleaseEventRow)
        if study is not None:
            query = query.where(ReleaseEventRow.study == study)
        with self._transaction() as session:
            rows = session.exec(query.order_by(col(ReleaseEventRow.id))).all()
            return [ReleaseEvent(at=_utc(r.at), study=r.study, action=r.action, actor=r.actor,
                                 details=json.loads(r.details)) for r in rows]

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _candidate_row(session: Session, study: str, *, quiet: bool = False
                       ) -> ReleaseRow | None:
        row = session.get(ReleaseRow, study)
        if row is None or row.candidate_version is None:
            if quiet:
                return None
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"{study}: no version is being released (nothing to "
                               "promote or roll back)")
        return row

    @staticmethod
    def _save(session: Session, row: ReleaseRow) -> Release:
        row.generation += 1
        row.updated_at = datetime.now(UTC)
        session.add(row)
        session.flush()
        return _release(row)

    def _record(self, study: str, action: str, actor: str, details: dict[str, object]) -> None:
        with self._transaction(write=True) as session:
            session.add(ReleaseEventRow(at=datetime.now(UTC), study=study, action=action,
                                        actor=actor, details=json.dumps(details,
                                                                        sort_keys=True)))
        record_event(self._root, action, actor=actor, details={"study": study, **details})
