"""A site's datasets: checking a file, registering it as a new version, reading versions.

Registering a CSV or Parquet file against a study plan validates it
(:mod:`client_app.datasets.inspection`), applies the operator's
:class:`~client_app.datasets.validation.Policy`
(:mod:`client_app.datasets.cleaning`) and stores the cleaned, canonical content encrypted as a new
**version** named by its SHA-256, with its lineage: the source file's hash, name and format,
the plan hash, the policy, the validation summary and the version it follows. A refused
file changes nothing in the site folder: validation runs before anything is opened for
writing. The encrypted file is written first and the ``dataset_versions`` row and the
``dataset_registered`` event are added in one store transaction; if that fails the file is
removed again. Registering content identical to the current version is a no-op.

The content hash names a version at the site only: outside it (the agent's hello, and so the
coordinator's registry and model cards) a version is known by its keyed digest
(:mod:`client_app.datasets.identity`), recorded beside it when it is registered.

Sites made before versions existed hold one unversioned ``data/<name>.enc``;
:func:`read_current` falls back to it (its version is its content hash).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from client_app.custody.site_secrets import dataset_id_secret
from client_app.custody.vault import SiteVault
from client_app.datasets.cleaning import CleanResult, clean
from client_app.datasets.identity import digest_for
from client_app.datasets.inspection import inspect
from client_app.datasets.validation import Policy, ValidationReport
from client_app.store.events import SiteEvent
from client_app.store.folder import SiteDir
from client_app.store.site_store import site_transaction
from client_app.store.tables import (
    DatasetVersionRow,
    EventRow,
)
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash

MAX_DATASET_BYTES = 512 * 1024 * 1024
EVENT_KIND = SiteEvent.DATASET_REGISTERED


@dataclass(frozen=True)
class DatasetVersion:
    """One stored version of a dataset and its lineage (no cell values, no patient ids)."""

    dataset: str
    version: str
    parent_version: str | None
    source_hash: str
    source_name: str
    source_format: str
    plan_hash: str | None
    rows: int
    policy: dict[str, Any]
    report: dict[str, Any]
    actor: str
    at: datetime
    #: The keyed digest that stands for this version outside the site (None until known).
    public_version: str | None = None

    def to_json(self) -> dict[str, object]:
        """The version as JSON-able data."""
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class PreparedDataset:
    """A file validated and cleaned under a policy, ready to be stored."""

    report: ValidationReport
    policy: Policy
    plan: StudyPlan
    cleaned: CleanResult = field(repr=False)

    @property
    def version(self) -> str:
        """The version the cleaned content will have: its SHA-256."""
        return hashlib.sha256(self.cleaned.content).hexdigest()


def _read_file(path: Path) -> bytes:
    file = Path(path)
    if file.is_dir():
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"data file {file.name}: is a directory, not a file")
    if not file.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"data file not found: {file.name}")
    if file.stat().st_size > MAX_DATASET_BYTES:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{file.name}: larger than {MAX_DATASET_BYTES // 2**20} MiB")
    return file.read_bytes()


def check_content(content: bytes, *, source_name: str, plan: StudyPlan) -> ValidationReport:
    """Validate a data file's bytes against the plan; writes nothing."""
    return inspect(content, source_name=source_name, spec=plan.dataset).report


def check_dataset(path: Path, *, plan: StudyPlan) -> ValidationReport:
    """Validate a CSV or Parquet file against the plan; writes nothing."""
    return check_content(_read_file(path), source_name=Path(path).name, plan=plan)


def prepare_content(content: bytes, *, source_name: str, plan: StudyPlan,
                    policy: Policy) -> PreparedDataset:
    """Validate and clean a file's bytes (DATA_INVALID with the report if refused)."""
    inspection = inspect(content, source_name=source_name, spec=plan.dataset)
    return PreparedDataset(inspection.report, policy, plan, clean(inspection, policy))


def prepare_dataset(path: Path, *, plan: StudyPlan, policy: Policy) -> PreparedDataset:
    """Validate and clean a CSV or Parquet file (DATA_INVALID with the report if refused)."""
    return prepare_content(_read_file(path), source_name=Path(path).name, plan=plan,
                           policy=policy)


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "actor: must be a non-empty name of at most 128 characters")
    return actor.strip()




def _record(row: DatasetVersionRow) -> DatasetVersion:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return DatasetVersion(
        dataset=row.dataset, version=row.version, parent_version=row.parent_version,
        source_hash=row.source_hash, source_name=row.source_name,
        source_format=row.source_format, plan_hash=row.plan_hash, rows=row.rows,
        policy=json.loads(row.policy), report=json.loads(row.report), actor=row.actor, at=at,
        public_version=row.public_version,
    )


def _newest(session: Session, dataset: str) -> DatasetVersionRow | None:
    return session.exec(
        select(DatasetVersionRow).where(DatasetVersionRow.dataset == dataset)
        .order_by(col(DatasetVersionRow.id).desc()).limit(1)
    ).first()


def store_dataset(vault: SiteVault, prepared: PreparedDataset, *, actor: str,
                  name: str | None = None) -> DatasetVersion:
    """Store a prepared dataset as the new current version (no-op if it is the current one)."""
    actor = _actor(actor)
    dataset = name if name is not None else prepared.plan.dataset.name
    version = prepared.version
    path = vault.dataset_version_path(dataset, version)  # checks the name
    current = current_version(vault.site, dataset)
    if current is not None and current.version == version:
        return current
    created = [p for p in (path.parent.parent, path.parent, path) if not p.exists()]
    if path in created:
        vault.write_dataset_version(dataset, version, prepared.cleaned.content)
    try:
        return _insert(vault.site, prepared, dataset=dataset, actor=actor,
                       public=digest_for(dataset_id_secret(vault), version))
    except BaseException:
        for made in reversed(created):
            if made.is_dir():
                made.rmdir()
            else:
                made.unlink(missing_ok=True)
        raise


def _insert(site: SiteDir, prepared: PreparedDataset, *, dataset: str, actor: str,
            public: str) -> DatasetVersion:
    report = prepared.report
    summary = {**report.summary(), "applied": prepared.cleaned.to_json()}
    digest = plan_hash(prepared.plan)
    with site_transaction(site, write=True) as session:
        newest = _newest(session, dataset)
        if newest is not None and newest.version == prepared.version:
            return _record(newest)  # registered meanwhile by another process
        now = datetime.now(UTC)
        row = DatasetVersionRow(
            at=now, dataset=dataset, version=prepared.version,
            parent_version=None if newest is None else newest.version,
            source_hash=report.source_hash, source_name=report.source_name[:256],
            source_format=report.source_format, plan_hash=digest,
            rows=prepared.cleaned.rows, policy=json.dumps(prepared.policy.to_json()),
            report=json.dumps(summary, sort_keys=True), actor=actor, public_version=public,
        )
        details = {
            "dataset": dataset, "version": prepared.version,
            "parent_version": row.parent_version, "rows": prepared.cleaned.rows,
            "source_hash": report.source_hash, "source_format": report.source_format,
            "policy": prepared.policy.to_json(), "issues": report.issue_counts(),
            **{k: v for k, v in prepared.cleaned.to_json().items() if k != "rows"},
            "actor": actor,
        }
        session.add(row)
        session.add(EventRow(at=now, kind=EVENT_KIND, plan_hash=digest,
                             details=json.dumps(details, sort_keys=True, allow_nan=False)))
        session.flush()
        return _record(row)


def register_content(vault: SiteVault, content: bytes, *, source_name: str, plan: StudyPlan,
                     policy: Policy, actor: str, name: str | None = None) -> DatasetVersion:
    """:func:`register_dataset` for bytes already in memory (``source_name`` names them)."""
    _actor(actor)
    prepared = prepare_content(content, source_name=source_name, plan=plan, policy=policy)
    return store_dataset(vault, prepared, actor=actor, name=name)


def register_dataset(vault: SiteVault, path: Path, *, plan: StudyPlan, policy: Policy,
                     actor: str, name: str | None = None) -> DatasetVersion:
    """Validate, clean and store a file as a new version of dataset ``name``.

    ``name`` defaults to the plan's dataset name. Refuses with DATA_INVALID and the report
    (nothing in the site folder changes) when the file has a blocking issue or the policy
    refuses an issue that is present.
    """
    _actor(actor)
    return store_dataset(vault, prepare_dataset(path, plan=plan, policy=policy), actor=actor,
                         name=name)


def dataset_versions(site: SiteDir, dataset: str | None = None) -> list[DatasetVersion]:
    """Stored versions (of every dataset, or of one), oldest first."""
    query = select(DatasetVersionRow)
    if dataset is not None:
        query = query.where(DatasetVersionRow.dataset == dataset)
    with site_transaction(site, write=False) as session:
        rows = session.exec(query.order_by(col(DatasetVersionRow.id))).all()
        return [_record(r) for r in rows]


def current_version(site: SiteDir, dataset: str) -> DatasetVersion | None:
    """The newest version of ``dataset``, or None if none is stored."""
    with site_transaction(site, write=False) as session:
        newest = _newest(session, dataset)
        return None if newest is None else _record(newest)


def _legacy(vault: SiteVault, dataset: str) -> tuple[bytes, DatasetVersion]:
    content = vault.read_dataset(dataset)  # NOT_FOUND when there is none either
    digest = hashlib.sha256(content).hexdigest()
    path = vault.dataset_path(dataset)
    rows = max(sum(1 for line in content.splitlines() if line.strip()) - 1, 0)
    return content, DatasetVersion(
        dataset=dataset, version=digest, parent_version=None, source_hash=digest,
        source_name=path.name, source_format="csv", plan_hash=None, rows=rows, policy={},
        report={"legacy": True}, actor="",
        at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
    )


def read_current(vault: SiteVault, dataset: str) -> tuple[bytes, DatasetVersion]:
    """The current version's content and record (NOT_FOUND if the site has none).

    Falls back to a legacy unversioned ``data/<name>.enc``. The content is checked against
    its version hash, so a swapped file is refused.
    """
    current = current_version(vault.site, dataset)
    if current is None:
        return _legacy(vault, dataset)
    content = vault.read_dataset_version(dataset, current.version)
    if hashlib.sha256(content).hexdigest() != current.version:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"dataset '{dataset}': stored content does not match version "
                           f"{current.version[:12]}")
    return content, current
