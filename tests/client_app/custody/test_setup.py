"""A new site's first steps: the kit checked before it is written, the passphrase rated."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.custody.setup import (
    create_keystore,
    import_kit,
    passphrase_strength,
    preview_kit,
    site_state,
)
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from privacy.signing import fingerprint
from server.provisioning import init_federation

STRONG = "copper lantern orbit meadow 42"


def _kit(tmp_path: Path) -> tuple[Path, str]:
    fed = init_federation(tmp_path / "federation", name="fed", sites=["h1", "h2"],
                          archives=False)
    return fed.site_kit("h1"), fed.manifest.coordinator_signing_key


def test_preview_shows_site_federation_and_coordinator_fingerprint_and_writes_nothing(
    tmp_path: Path,
) -> None:
    kit, key = _kit(tmp_path)
    before = sorted(p.name for p in kit.rglob("*"))
    preview = preview_kit(kit)
    assert (preview.site, preview.federation, preview.sites) == ("h1", "fed", ("h1", "h2"))
    assert preview.coordinator_fingerprint == fingerprint(key)
    assert sorted(p.name for p in kit.rglob("*")) == before
    with pytest.raises(TesseraError) as caught:
        preview_kit(kit, expected_coordinator_key="00" * 32)
    assert caught.value.code is ErrorCode.BAD_SIGNATURE


def test_a_new_folder_goes_through_kit_then_keystore(tmp_path: Path) -> None:
    kit, _ = _kit(tmp_path)
    folder = tmp_path / "new-site"
    assert site_state(folder) == "new"
    import_kit(kit, folder)
    assert site_state(folder) == "kit"
    with pytest.raises(TesseraError) as weak:
        create_keystore(folder, "short")
    assert weak.value.code is ErrorCode.CONFIG_INVALID and site_state(folder) == "kit"
    vault = create_keystore(folder, STRONG)
    assert site_state(folder) == "ready"
    with SiteStore.open(vault.site) as store:
        assert [e.kind for e in store.events(kind="kit_imported")] == ["kit_imported"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x", encoding="utf-8")
    assert site_state(tmp_path / "other") == "other"


@pytest.mark.parametrize(("text", "label"), [
    ("", "too short"), ("password1234", "weak"), ("aaaaaaaaaaaaaaaa", "weak"),
    ("correcthorsebattery", "good"), ("Tr0ub4dor&3xyz", "strong"), (STRONG, "strong"),
])
def test_passphrase_strength(text: str, label: str) -> None:
    strength = passphrase_strength(text)
    assert strength.label == label, strength
    assert strength.acceptable == (label in ("fair", "good", "strong"))
