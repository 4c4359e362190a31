"""A dataset version is known outside the site only by a keyed digest; the site maps back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from client_app.custody.vault import SiteVault, create_vault
from client_app.datasets.identity import digest_for, public_version, version_for_digest
from client_app.datasets.validation import Policy
from client_app.datasets.versions import current_version, dataset_versions, register_content
from client_app.store.folder import init_site_dir
from common.datasets import csv_bytes, load_bundled, select
from common.plan import bundled_plan_path, load_plan

PLAN = load_plan(bundled_plan_path("breast_cancer"))


def _vault(tmp_path: Path, name: str = "h1") -> SiteVault:
    return create_vault(init_site_dir(tmp_path / name, name=name), "identity passphrase")


def _register(vault: SiteVault, rows: range) -> str:
    data = select(load_bundled(PLAN.dataset.name), PLAN.dataset)
    return register_content(vault, csv_bytes(data, list(rows)), source_name="d.csv",
                            plan=PLAN, policy=Policy(), actor="ops").version


def test_a_registered_version_gets_a_keyed_digest_never_its_content_hash(
        tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    version = _register(vault, range(100))
    current = current_version(vault.site, PLAN.dataset.name)
    assert current is not None and current.public_version is not None
    assert current.public_version != version and len(current.public_version) == 64
    assert public_version(vault, PLAN.dataset.name, version) == current.public_version
    assert current.to_json()["public_version"] == current.public_version


def test_two_sites_with_the_same_content_show_different_digests(tmp_path: Path) -> None:
    one, two = _vault(tmp_path, "h1"), _vault(tmp_path, "h2")
    assert _register(one, range(100)) == _register(two, range(100))  # same content hash
    a = current_version(one.site, PLAN.dataset.name)
    b = current_version(two.site, PLAN.dataset.name)
    assert a is not None and b is not None and a.public_version != b.public_version


def test_the_site_maps_its_digests_back_to_its_versions(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    first = _register(vault, range(100))
    second = _register(vault, range(150))
    for version in (first, second):
        digest = public_version(vault, PLAN.dataset.name, version)
        assert version_for_digest(vault.site, digest) == (PLAN.dataset.name, version)
    assert version_for_digest(vault.site, "0" * 64) is None
    assert [v.public_version is not None for v in dataset_versions(vault.site)] == [True, True]


def test_a_version_registered_before_digests_existed_gets_one_on_first_use(
        tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    version = _register(vault, range(100))
    with sqlite3.connect(vault.site.db_path) as conn:
        conn.execute("UPDATE dataset_versions SET public_version = NULL")
    digest = public_version(vault, PLAN.dataset.name, version)
    current = current_version(vault.site, PLAN.dataset.name)
    assert current is not None and current.public_version == digest
    assert digest == digest_for(vault.read_secret("dataset-id-key") or b"", version)
