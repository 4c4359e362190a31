"""The coordinator store and its model registry (``coordinator/coordinator.db``, ``models/``).

The schema comes only from the Alembic migrations in ``server/migrations``, applied when the
registry opens; on SQLite every transaction holds the write lock from its start, so two
processes registering at once get distinct versions.
Each released model is written to ``models/<study>-v<version>.json`` (a JSON model
document) with its sha256, training metrics, epsilon per site, lineage and whether it may be
promoted (it passed every KPI gate of its plan; if not, the gates' reasons); reading it back
verifies the hash. ``promotable`` is ``None`` for a model registered before the registry
recorded it and whose lineage holds no gate outcome.
Exported artefacts of a model (ONNX fp32 or int8, :mod:`server.onnx_export`) are kept beside
it (``models/<study>-v<version>.<precision>.onnx``) with their sha256 and the parity check
they passed; reading one back verifies its hash too.
Drift checks of a model (:mod:`server.drift`) are kept too; the newest one says whether
retraining is recommended (its PSI crossed the plan's ``[drift] psi_threshold``).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from common.errors import ErrorCode, TesseraError
from common.files import PRIVATE_DIR, atomic_write_bytes, ensure_private_file
from common.sql import SqlStore
from common.workdir import CoordinatorDir
from server.migrations import MIGRATIONS_DIR, DriftCheckRow, ModelExportRow, ModelVersionRow

#: Precisions an exported artefact may have.
EXPORT_PRECISIONS = ("fp32", "int8")
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model; ``path`` is relative to the coordinator folder."""

    id: int
    at: datetime
    study: str
    version: int
    plan_hash: str
    rounds: int
    sha256: str
    path: str
    metrics: dict[str, float]
    epsilon_per_site: dict[str, float]
    lineage: dict[str, Any]
    promotable: bool | None = None
    promotion_reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": self.at.isoformat(),
                "promotion_reasons": list(self.promotion_reasons)}


@dataclass(frozen=True)
class ModelExport:
    """One exported artefact of a registered model; ``path`` is relative to the folder."""

    id: int
    at: datetime
    study: str
    version: int
    format: str
    precision: str
    sha256: str
    path: str
    size_bytes: int
    parity: dict[str, Any]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class DriftCheck:
    """One drift check of a registered model (the coordinator's PSI across sites)."""

    id: int
    at: datetime
    study: str
    version: int
    worst_psi: float
    threshold: float
    retraining_recommended: bool
    draft_plan: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "at": self.at.isoformat()}


def _json_text(value: object, *, name: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TesseraError(
            ErrorCode.DATA_INVALID, f"{name} must be JSON-serialisable with finite numbers"
        ) from exc


def _float_map(value: dict[str, float], *, name: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{name} must be a mapping of names to numbers")
    out: dict[str, float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or isinstance(number, bool) \
                or not isinstance(number, int | float) or not math.isfinite(number):
            raise TesseraError(
                ErrorCode.DATA_INVALID, f"{name} must map names to finite numbers"
            )
        out[key] = float(number)
    return out


def _reasons(promotable: bool, reasons: Sequence[str]) -> list[str]:
    if not isinstance(promotable, bool):
        raise TesseraError(ErrorCode.DATA_INVALID, "promotable must be true or false")
    if isinstance(reasons, str) or not all(isinstance(r, str) and r for r in reasons):
        raise TesseraError(ErrorCode.DATA_INVALID,
                           "promotion_reasons must be a list of non-empty strings")
    if promotable == bool(reasons):
        raise TesseraError(ErrorCode.DATA_INVALID, "promotion_reasons: a model that is not "
                           "promotable needs a reason, and a promotable one has none")
    return list(reasons)


class ModelRegistry(SqlStore):
    """Versions, hashes, metrics and lineage of the models a coordinator released."""

    def __init__(self, root: Path, *, url: str | None = None) -> None:
        self._root = Path(root).expanduser().absolute()
        layout = CoordinatorDir(self._root)
        self._models = layout.models_dir
        super().__init__(url or layout.db_url, MIGRATIONS_DIR)

    @classmethod
    def open(cls, coordinator_dir: Path) -> ModelRegistry:
        """Open (creating and migrating) the registry of a coordinator folder."""
        layout = CoordinatorDir(Path(coordinator_dir).expanduser().absolute())
        for folder in (layout.root, layout.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(PRIVATE_DIR)
        ensure_private_file(layout.db_path)
        return cls(layout.root)

    def register(
        self, *, study: str, plan_hash: str, rounds: int, model_bytes: bytes,
        metrics: dict[str, float], epsilon_per_site: dict[str, float],
        lineage: dict[str, object], promotable: bool = True,
        promotion_reasons: Sequence[str] = (),
    ) -> ModelVersion:
        """Store ``model_bytes`` as the next version of ``study`` and record it.

        ``promotable`` says whether the model passed its plan's KPI gates; a model that did
        not is still registered, with at least one reason in ``promotion_reasons``.
        """
        if not isinstance(study, str) or not _STUDY.fullmatch(study):
            raise TesseraError(
                ErrorCode.PLAN_INVALID,
                "study must be 1-128 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit",
            )
        if not isinstance(plan_hash, str) or not plan_hash:
            raise TesseraError(ErrorCode.PLAN_INVALID, "plan_hash must be a non-empty string")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise TesseraError(ErrorCode.PLAN_INVALID, "rounds must be an integer >= 0")
        if not isinstance(model_bytes, bytes | bytearray) or not model_bytes:
            raise TesseraError(ErrorCode.DATA_INVALID, "model_bytes must be non-empty bytes")
        metrics_text = _json_text(_float_map(metrics, name="metrics"), name="metrics")
        epsilon_text = _json_text(
            _float_map(epsilon_per_site, name="epsilon_per_site"), name="epsilon_per_site"
        )
        lineage_text = _json_text(lineage, name="lineage")
        reasons_text = _json_text(_reasons(promotable, promotion_reasons),
                                  name="promotion_reasons")
        digest = hashlib.sha256(model_bytes).hexdigest()
        self._models.mkdir(parents=True, exist_ok=True)
        with self._transaction(write=True) as session:
            latest = session.exec(
                select(sa.func.max(ModelVersionRow.version)).where(ModelVersionRow.study == study)
            ).one()
            version = int(latest or 0) + 1
            relative = CoordinatorDir.model_file(study, version)
            target = self._root / relative
            atomic_write_bytes(target, bytes(model_bytes))
            row = ModelVersionRow(
                at=datetime.now(UTC), study=study, version=version, plan_hash=plan_hash,
                rounds=rounds, sha256=digest, path=relative, metrics=metrics_text,
                epsilon=epsilon_text, lineage=lineage_text, promotable=promotable,
                promotion_reasons=reasons_text,
            )
            try:
                session.add(row)
                session.flush()
            except Exception:
                target.unlink(missing_ok=True)
                raise
            return _model_version(row)

    def get(self, study: str, version: int) -> ModelVersion:
        with self._transaction() as session:
            row = session.exec(
                select(ModelVersionRow).where(
                    ModelVersionRow.study == study, ModelVersionRow.version == version
                )
            ).first()
            if row is None:
                raise TesseraError(
                    ErrorCode.NOT_FOUND, f"model {study!r} version {version} is not registered"
                )
            return _model_version(row)

    def latest(self, study: str) -> ModelVersion:
        with self._transaction() as session:
            row = session.exec(
                select(ModelVersionRow).where(ModelVersionRow.study == study)
                .order_by(col(ModelVersionRow.version).desc()).limit(1)
            ).first()
            if row is None:
                raise TesseraError(ErrorCode.NOT_FOUND, f"no model registered for study {study!r}")
            return _model_version(row)

    def load_bytes(self, mv: ModelVersion) -> bytes:
        """The model file of ``mv``, after checking it against its registered sha256."""
        path = self._root / mv.path
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise TesseraError(
                ErrorCode.NOT_FOUND, f"model file {mv.path} of {mv.study} v{mv.version} is missing"
            ) from exc
        if hashlib.sha256(data).hexdigest() != mv.sha256:
            raise TesseraError(
                ErrorCode.DATA_INVALID,
                f"model file {mv.path} does not match its registered sha256",
            )
        return data

    def record_export(self, mv: ModelVersion, data: bytes, *, precision: str,
                      parity: dict[str, object], format: str = "onnx") -> ModelExport:
        """Keep an exported artefact of ``mv`` beside it and record its hash and parity."""
        if precision not in EXPORT_PRECISIONS:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"precision: must be one of {', '.join(EXPORT_PRECISIONS)}")
        if format != "onnx":
            raise TesseraError(ErrorCode.CONFIG_INVALID, "format: only 'onnx' is supported")
        if not isinstance(data, bytes | bytearray) or not data:
            raise TesseraError(ErrorCode.DATA_INVALID, "export data must be non-empty bytes")
        parity_text = _json_text(parity, name="parity")
        stem = Path(CoordinatorDir.model_file(mv.study, mv.version)).with_suffix("")
        relative = f"{stem.as_posix()}.{precision}.{format}"
        with self._transaction(write=True) as session:
            atomic_write_bytes(self._root / relative, bytes(data))
            row = ModelExportRow(at=datetime.now(UTC), study=mv.study, version=mv.version,
                                 format=format, precision=precision,
                                 sha256=hashlib.sha256(data).hexdigest(), path=relative,
                                 size_bytes=len(data), parity=parity_text)
            session.add(row)
            session.flush()
            return _model_export(row)

    def exports(self, study: str, version: int) -> builtins.list[ModelExport]:
        """The exported artefacts of one model, oldest first."""
        with self._transaction() as session:
            rows = session.exec(select(ModelExportRow).where(
                ModelExportRow.study == study, ModelExportRow.version == version,
            ).order_by(col(ModelExportRow.id))).all()
            return [_model_export(r) for r in rows]

    def load_export(self, export: ModelExport) -> bytes:
        """An exported artefact's bytes, after checking them against the recorded sha256."""
        try:
            data = (self._root / export.path).read_bytes()
        except FileNotFoundError as exc:
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"exported file {export.path} is missing") from exc
        if hashlib.sha256(data).hexdigest() != export.sha256:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"exported file {export.path} does not match its recorded sha256")
        return data

    def list(self, *, study: str | None = None) -> builtins.list[ModelVersion]:
        """Registered models (all, or of one study), in registration order."""
        query = select(ModelVersionRow)
        if study is not None:
            query = query.where(ModelVersionRow.study == study)
        with self._transaction() as session:
            rows = session.exec(query.order_by(col(ModelVersionRow.id))).all()
            return [_model_version(r) for r in rows]


    def record_drift(self, mv: ModelVersion, *, worst_psi: float, threshold: float,
                     details: dict[str, object], draft_plan: str = "",
                     recommended: bool | None = None) -> DriftCheck:
        """Record a drift check of ``mv``; retraining is recommended past ``threshold`` (or
        as ``recommended`` says, when another measure, e.g. the scores', decided it)."""
        for name, value in (("worst_psi", worst_psi), ("threshold", threshold)):
            if not math.isfinite(value) or value < 0:
                raise TesseraError(ErrorCode.DATA_INVALID, f"{name}: must be a finite number >= 0")
        details_text = _json_text(details, name="details")
        with self._transaction(write=True) as session:
            row = DriftCheckRow(at=datetime.now(UTC), study=mv.study, version=mv.version,
                                worst_psi=float(worst_psi), threshold=float(threshold),
                                retraining_recommended=(worst_psi > threshold
                                                        if recommended is None
                                                        else recommended),
                                draft_plan=draft_plan, details=details_text)
            session.add(row)
            session.flush()
            return _drift_check(row)

    def drift_checks(self, study: str, version: int) -> builtins.list[DriftCheck]:
        """The drift checks of one model, oldest first (the last one is current)."""
        with self._transaction() as session:
            rows = session.exec(select(DriftCheckRow).where(
                DriftCheckRow.study == study, DriftCheckRow.version == version,
            ).order_by(col(DriftCheckRow.id))).all()
            return [_drift_check(r) for r in rows]

    def retraining_recommended(self, mv: ModelVersion) -> bool:
        """Whether the newest drift check of ``mv`` crossed its plan's threshold."""
        checks = self.drift_checks(mv.study, mv.version)
        return bool(checks) and checks[-1].retraining_recommended


def _drift_check(row: DriftCheckRow) -> DriftCheck:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return DriftCheck(id=row.id or 0, at=at, study=row.study, version=row.version,
                      worst_psi=row.worst_psi, threshold=row.threshold,
                      retraining_recommended=row.retraining_recommended,
                      draft_plan=row.draft_plan, details=json.loads(row.details))


def _model_export(row: ModelExportRow) -> ModelExport:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return ModelExport(id=row.id or 0, at=at, study=row.study, version=row.version,
                       format=row.format, precision=row.precision, sha256=row.sha256,
                       path=row.path, size_bytes=row.size_bytes, parity=json.loads(row.parity))


def _model_version(row: ModelVersionRow) -> ModelVersion:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return ModelVersion(
        id=row.id or 0, at=at, study=row.study, version=row.version, plan_hash=row.plan_hash,
        rounds=row.rounds, sha256=row.sha256, path=row.path, metrics=json.loads(row.metrics),
        epsilon_per_site=json.loads(row.epsilon), lineage=json.loads(row.lineage),
        promotable=row.promotable, promotion_reasons=tuple(json.loads(row.promotion_reasons)),
    )
