"""The models a running service holds: one ONNX Runtime session per served version.

A pinned ``--version`` is served alone, whatever the release state. Otherwise, for each
served study the catalog follows the study's release state (:mod:`serving.releases`) and
keeps the stable version and the candidate loaded; with no release state, it serves the
newest promotable version. A version's graph is its newest recorded export of the served
precision that passed its parity check; a version without one is exported in that precision
and the export recorded, as ``tessera model export`` would (an export that fails its parity
check is not served). Only promotable models are served unless the service allows unpromotable ones.
The release state is re-read at most every :data:`REFRESH_S` seconds, so a ``promote`` or
``rollback`` from the command line reaches a running service within that time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ErrorCode, TesseraError
from server.explain import Explanation, explain
from server.onnx_export import export_onnx, onnx_scores, onnx_session
from server.predict import load_model, parse_model_document
from server.registry import ModelRegistry, ModelVersion
from serving.releases import Release, ReleaseStore, Thresholds

REFRESH_S = 0.5


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version."""

    study: str
    version: int
    sha256: str
    promotable: bool | None
    precision: str
    onnx_sha256: str
    features: tuple[str, ...]
    doc: dict[str, Any]
    session: Any

    def scores(self, X_raw: np.ndarray) -> np.ndarray:
        scores = onnx_scores(self.session, X_raw)
        if not np.all(np.isfinite(scores)):
            raise TesseraError(ErrorCode.INTERNAL, "the model returned non-finite scores")
        return np.clip(scores, 0.0, 1.0)

    def explain(self, X_raw: np.ndarray) -> Explanation:
        """The contributions ``tessera model predict --explain`` gives for these rows."""
        model, features, mean, std = load_model(self.doc)
        return explain(model, (X_raw - mean) / std, features)

    def to_json(self) -> dict[str, object]:
        return {"study": self.study, "version": self.version, "sha256": self.sha256,
                "onnx_sha256": self.onnx_sha256, "precision": self.precision,
                "promotable": self.promotable, "features": list(self.features)}


def load_version(registry: ModelRegistry, mv: ModelVersion, *, precision: str) -> ServedModel:
    """Load ``mv``'s recorded export of ``precision`` (exporting and recording one if none)."""
    doc = parse_model_document(registry.load_bytes(mv))
    exports = [e for e in registry.exports(mv.study, mv.version)
               if e.precision == precision and e.parity.get("passed") is True]
    if exports:
        data = registry.load_export(exports[-1])
    else:
        artefact = export_onnx(doc, quantize="int8" if precision == "int8" else None)
        registry.record_export(mv, artefact.data, precision=precision,
                               parity=artefact.parity.to_json())
        data = artefact.data
    served = ServedModel(study=mv.study, version=mv.version, sha256=mv.sha256,
                         promotable=mv.promotable, precision=precision,
                         onnx_sha256=hashlib.sha256(data).hexdigest(),
                         features=tuple(doc["features"]), doc=doc,
                         session=onnx_session(data))
    return served


class Catalog:
    """The studies a service answers for, their release state and their loaded versions."""

    def __init__(self, coordinator_dir: Path, *, study: str | None = None,
                 version: int | None = None, precision: str = "fp32",
                 allow_unpromotable: bool = False) -> None:
        if precision not in ("fp32", "int8"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "precision: 'fp32' or 'int8'")
        self._dir = Path(coordinator_dir)
        self._precision = precision
        self._allow = allow_unpromotable
        self._version = version
        self._lock = threading.RLock()
        self._models: dict[tuple[str, int], ServedModel] = {}
        self._releases: dict[str, Release] = {}
        self._checked: dict[str, float] = {}
        self.registry = ModelRegistry.open(self._dir)
        self.release_store = ReleaseStore(self._dir)
        studies = sorted({mv.study for mv in self.registry.list(study=study)})
        if not studies:
            raise TesseraError(ErrorCode.NOT_FOUND, "no registered model to serve" + (
                f" for study {study!r}" if study else ""))
        if version is not None and study is None:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--version needs --study")
        self.studies = tuple(studies)
        for name in self.studies:
            self._load_release(name)

    def close(self) -> None:
        self.registry.close()
        self.release_store.close()

    def _default_release(self, study: str) -> Release:
        if self._version is not None:
            stable = self.registry.get(study, self._version)
        else:
            versions = [mv for mv in self.registry.list(study=study)
                        if mv.promotable is True or self._allow]
            if not versions:
                raise TesseraError(ErrorCode.PERMISSION_DENIED,
                                   f"{study}: no promotable model to serve "
                                   "(--allow-unpromotable serves the others)")
            stable = versions[-1]
        return Release(study=study, stable=stable.version, candidate=None, mode=None,
                       percent=0.0, generation=-1, thresholds=Thresholds(),
                       updated_at=datetime.now(UTC))

    def _load_release(self, study: str) -> Release:
        pinned = self._version is not None
        release = (None if pinned else self.release_store.get(study)) \
            or self._default_release(study)
        self.model(study, release.stable)
        if release.candidate is not None:
            self.model(study, release.candidate)
        self._releases[study] = release
        self._checked[study] = time.monotonic()
        return release

    def release(self, study: str) -> Release:
        """The study's release state (re-read when stale); NOT_FOUND for a study not served."""
        if study not in self.studies:
            raise TesseraError(ErrorCode.NOT_FOUND, f"study {study!r} is not served here")
        with self._lock:
            current = self._releases[study]
            if self._version is not None or time.monotonic() - self._checked[study] < REFRESH_S:
                return current
            self._checked[study] = time.monotonic()
            if self.release_store.generation(study) in (current.generation, -1):
                return current
            return self._load_release(study)

    def refresh(self, study: str) -> Release:
        """Re-read the study's release state now (after the service changed it)."""
        with self._lock:
            return self._load_release(study)

    def model(self, study: str, version: int) -> ServedModel:
        """A loaded version (loading it on first use); refuses unpromotable ones if asked."""
        with self._lock:
            key = (study, version)
            if key not in self._models:
                mv = self.registry.get(study, version)
                if mv.promotable is not True and not self._allow:
                    raise TesseraError(ErrorCode.PERMISSION_DENIED,
                                       f"{study} v{version} is not promotable; the service "
                                       "serves it only with --allow-unpromotable")
                self._models[key] = load_version(self.registry, mv, precision=self._precision)
            return self._models[key]

    def served(self) -> list[ServedModel]:
        with self._lock:
            return [self._models[(s, v)] for s in self.studies
                    for v in self._releases[s].versions() if (s, v) in self._models]
