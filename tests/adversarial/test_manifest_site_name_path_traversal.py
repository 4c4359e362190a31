"""Attack: a validly signed manifest names a site with a path, to write outside a folder.

Site names are joined into paths (sealed copies, kit folders, node keys). A manifest whose
site name is absolute or climbs out with ``..`` must be refused when it is parsed, before any
name reaches a path; site names follow the site-folder rule (letters, digits, ``_.-``, 1-64
characters, starting with a letter or digit).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan
from privacy.manifest import parse_manifest
from server.provisioning import Federation
from tests.adversarial.conftest import coordinator_signed, installed_site, kit_with_manifest

BAD_NAMES = ["../../escape", "/tmp/escape", "..", ".", "a/b", "a\\b", "-flag", ".hidden",
             "x" * 65, "with space", "nul\x00byte"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_signed_manifest_naming_a_site_with_a_path_is_refused(fed: Federation,
                                                                name: str) -> None:
    b = dataclasses.replace(fed.manifest.site("b"), name=name)
    text = coordinator_signed(fed, (fed.manifest.site("a"), b))
    with pytest.raises(TesseraError) as err:
        parse_manifest(text)
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert "site name" in err.value.message


def test_a_manifest_listing_a_site_twice_is_refused(fed: Federation) -> None:
    a = fed.manifest.site("a")
    with pytest.raises(TesseraError) as err:
        parse_manifest(coordinator_signed(fed, (a, a)))
    assert err.value.code is ErrorCode.CONFIG_INVALID


def test_key_custody_cannot_write_outside_its_output_folder(fed: Federation,
                                                           tmp_path: Path) -> None:
    from client_app.custody.he_custody import keygen_and_seal

    evil = dataclasses.replace(fed.manifest.site("b"), name="../../escape")
    kit = kit_with_manifest(fed, "a", coordinator_signed(fed, (fed.manifest.site("a"), evil)),
                            tmp_path)
    out = tmp_path / "work" / "out"
    with pytest.raises(TesseraError):
        vault = installed_site(kit, tmp_path / "sites" / "a")
        from privacy.manifest import load_manifest

        manifest = load_manifest(vault.site.root / "kit" / "federation.toml")
        keygen_and_seal(vault, load_plan(bundled_plan_path("breast_cancer")), manifest, out,
                        recipients=list(manifest.site_names), actor="operator")
    assert [p for p in tmp_path.rglob("escape*")] == []
