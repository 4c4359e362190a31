"""The opaque identity of a dataset version outside the site.

A version is named by the SHA-256 of its content; that hash never leaves the site, because
anyone holding a candidate file (a public dataset, a colleague's extract) could test it
against the hash. What the coordinator sees (the hello reply, and so the registry's lineage
and the model card) is :func:`public_version`: HMAC-SHA256 under the site's
``dataset-id-key`` vault secret over the version hash. The site keeps the mapping in
``dataset_versions.public_version``, filled when a version is registered or first used, so
its own screens can show which of its versions a digest stands for
(:func:`version_for_digest`).
"""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import col, select

from client_app.custody.site_secrets import dataset_id_secret
from client_app.custody.vault import SiteVault
from client_app.store.folder import SiteDir
from client_app.store.site_store import site_transaction
from client_app.store.tables import DatasetVersionRow

_CONTEXT = b"tessera/dataset-version/v1\x00"


def digest_for(secret: bytes, version: str) -> str:
    """The keyed digest of ``version`` under ``secret`` (64 hex characters)."""
    return hmac.new(secret, _CONTEXT + version.encode("ascii"), hashlib.sha256).hexdigest()


def public_version(vault: SiteVault, dataset: str, version: str) -> str:
    """The digest that stands for ``version`` of ``dataset`` outside the site.

    Records it beside the version's row the first time (a legacy, unversioned dataset has
    no row: its digest is only computed).
    """
    digest = digest_for(dataset_id_secret(vault), version)
    with site_transaction(vault.site) as session:
        missing = session.exec(
            select(DatasetVersionRow.id).where(
                DatasetVersionRow.dataset == dataset, DatasetVersionRow.version == version,
                col(DatasetVersionRow.public_version).is_(None))).first()
    if missing is not None:
        with site_transaction(vault.site, write=True) as session:
            for row in session.exec(select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset == dataset, DatasetVersionRow.version == version,
                    col(DatasetVersionRow.public_version).is_(None))).all():
                row.public_version = digest
                session.add(row)
    return digest


def version_for_digest(site: SiteDir, digest: str) -> tuple[str, str] | None:
    """``(dataset, version)`` that a public digest stands for, if this site issued it."""
    with site_transaction(site) as session:
        row = session.exec(select(DatasetVersionRow).where(
            DatasetVersionRow.public_version == digest.lower())).first()
        return None if row is None else (row.dataset, row.version)
