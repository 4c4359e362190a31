"""The models a site's prediction service holds: the final global models the site kept.

A site gets a study's final model by decrypting it itself from the verified sum of the
sites' contributions during the final evaluation (:mod:`client_app.learning.local_eval`
keeps it, encrypted in the site vault; ``tessera site models`` lists them). The coordinator's
registered copy never reaches the sites. :class:`SiteCatalog` serves those kept models: per
study, version ``n`` is the ``n``-th model the site kept (oldest first), the newest one is
served unless ``--version`` pins another, and there are no canary releases at a site.

**Promotion.** Whether a model passed its plan's KPI gates is the coordinator's verdict, in
its registry; a site does not know it, so its models are reported with ``promotable`` null
and served only with ``--allow-unpromotable`` (the operator's explicit choice).

**Export and parity.** Each served model is exported to ONNX at start-up with its parity
checked on the site's own rows (every consented row of the newest version of the study's
dataset, with their outcomes: scores, labels and AUC) instead of synthetic ones. The graph
and the parity record are kept in ``SITE/serving/exports/`` (graph sha256, parity, dataset
version, never row values) and the export is a ``model_exported`` site event; a later start
reuses a kept graph whose parity passed for the same model and dataset version.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from client_app.custody.vault import SiteVault
from client_app.learning.local_eval import stored_models
from client_app.learning.site_data import load_split
from client_app.store.events import SiteEvent
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.plan import parse_plan
from server.onnx_export import export_onnx, onnx_session
from server.predict import MODEL_FORMAT
from serving.catalog import ServedModel
from serving.releases import Release, Thresholds
from serving.tokens import SITE_SERVING_DIR


def serving_dir(vault: SiteVault) -> Path:
    """The site's serving folder (exported graphs, API tokens)."""
    return vault.site.root / SITE_SERVING_DIR


def model_document(site_doc: dict[str, Any]) -> dict[str, Any]:
    """A kept site model as a registry-format model document (what export and scoring read)."""
    plan = parse_plan(str(site_doc["plan_toml"]))
    return {"format": MODEL_FORMAT, "study": plan.name, "plan_hash": site_doc["plan_hash"],
            "model": plan.model.model_dump(mode="json"), "features": list(site_doc["features"]),
            "label": plan.dataset.label, "layout": site_doc["layout"],
            "values": site_doc["values"], "mean": site_doc["mean"], "std": site_doc["std"]}


def _own_rows(vault: SiteVault, site_doc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """Every consented row of the newest version of the study's dataset, and its version."""
    split = load_split(vault, parse_plan(str(site_doc["plan_toml"])))
    X = np.concatenate([split.train.X, split.test.X])
    y = np.concatenate([split.train.y, split.test.y])
    if X.shape[0] == 0:
        raise TesseraError(ErrorCode.DATA_INVALID, "the site has no rows to check parity on")
    return X, y, split.dataset_version


class SiteCatalog:
    """The studies a site's service answers for and their loaded kept models."""

    release_store = None  # no canary releases at a site

    def __init__(self, vault: SiteVault, *, study: str | None = None,
                 version: int | None = None, precision: str = "fp32",
                 allow_unpromotable: bool = False) -> None:
        if precision not in ("fp32", "int8"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "precision: 'fp32' or 'int8'")
        if version is not None and study is None:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--version needs --study")
        self._vault, self._precision = vault, precision
        self._lock = threading.RLock()
        kept = sorted(stored_models(vault), key=lambda m: m.at)
        self._names: dict[tuple[str, int], str] = {}
        for model in kept:
            n = 1 + sum(1 for s, _ in self._names if s == model.study)
            self._names[(model.study, n)] = model.name
        studies = sorted({s for s, _ in self._names if study is None or s == study})
        if not studies:
            raise TesseraError(ErrorCode.NOT_FOUND, "this site has kept no final model to "
                               "serve" + (f" for study {study!r}" if study else "") +
                               " (a site keeps a study's final model when it evaluates it; "
                               "tessera site models lists them)")
        if not allow_unpromotable:
            raise TesseraError(ErrorCode.PERMISSION_DENIED, "a site does not know whether its "
                               "kept models passed their plans' KPI gates (that verdict is in "
                               "the coordinator's registry): serve them with "
                               "--allow-unpromotable")
        self.studies = tuple(studies)
        self._releases: dict[str, Release] = {}
        self._models: dict[tuple[str, int], ServedModel] = {}
        for name in self.studies:
            newest = max(v for s, v in self._names if s == name)
            stable = newest if version is None else version
            if (name, stable) not in self._names:
                raise TesseraError(ErrorCode.NOT_FOUND, f"{name}: this site kept "
                                   f"{newest} model(s); there is no version {stable}")
            self._releases[name] = Release(
                study=name, stable=stable, candidate=None, mode=None, percent=0.0,
                generation=-1, thresholds=Thresholds(), updated_at=datetime.now(UTC))
            self.model(name, stable)

    def close(self) -> None:
        """Nothing to close: the vault and stores are opened per use."""

    def release(self, study: str) -> Release:
        if study not in self.studies:
            raise TesseraError(ErrorCode.NOT_FOUND, f"study {study!r} is not served here")
        return self._releases[study]

    def refresh(self, study: str) -> Release:
        return self.release(study)

    def model(self, study: str, version: int) -> ServedModel:
        with self._lock:
            key = (study, version)
            if key not in self._models:
                if key not in self._names:
                    raise TesseraError(ErrorCode.NOT_FOUND, f"{study} v{version} is not kept "
                                       "at this site")
                self._models[key] = self._load(study, version, self._names[key])
            return self._models[key]

    def served(self) -> list[ServedModel]:
        with self._lock:
            return [self._models[(s, self._releases[s].stable)] for s in self.studies]

    def _load(self, study: str, version: int, name: str) -> ServedModel:
        raw = self._vault.read_model(name)
        site_doc = json.loads(raw)
        doc = model_document(site_doc)
        sha = hashlib.sha256(raw).hexdigest()
        data = self._export(doc, site_doc, name=name, model_sha=sha)
        return ServedModel(study=study, version=version, sha256=sha, promotable=None,
                           precision=self._precision,
                           onnx_sha256=hashlib.sha256(data).hexdigest(),
                           features=tuple(doc["features"]), doc=doc, session=onnx_session(data))

    def _export(self, doc: dict[str, Any], site_doc: dict[str, Any], *, name: str,
                model_sha: str) -> bytes:
        """The kept graph when its parity passed for this model and data, else a new export
        checked on the site's own rows and recorded."""
        X, y, dataset_version = _own_rows(self._vault, site_doc)
        folder = serving_dir(self._vault) / "exports"
        graph = folder / f"{name}.{self._precision}.onnx"
        record_path = folder / f"{name}.{self._precision}.json"
        if graph.is_file() and record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            data = graph.read_bytes()
            if (record.get("model_sha256") == model_sha
                    and record.get("dataset_version") == dataset_version
                    and record.get("onnx_sha256") == hashlib.sha256(data).hexdigest()
                    and record.get("parity", {}).get("passed") is True):
                return data
        artefact = export_onnx(doc, quantize="int8" if self._precision == "int8" else None,
                               rows=X, labels=y, source="site")
        record = {"model": name, "model_sha256": model_sha, "precision": self._precision,
                  "onnx_sha256": artefact.sha256, "dataset_version": dataset_version,
                  "parity": artefact.parity.to_json(),
                  "at": datetime.now(UTC).isoformat(timespec="seconds")}
        atomic_write_bytes(graph, artefact.data)
        atomic_write_bytes(record_path, json.dumps(record, indent=1).encode("utf-8"))
        with SiteStore.open(self._vault.site) as store:
            store.record_event(SiteEvent.MODEL_EXPORTED, plan_hash=str(site_doc["plan_hash"]),
                               details={k: v for k, v in record.items() if k != "at"})
        return artefact.data
