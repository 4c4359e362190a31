"""CKKS key custody: sealed to each site, opened only there, only if the custodian signed."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.custody.ckks_keys import load_secret_context
from client_app.custody.he_custody import import_sealed, keygen_and_seal
from client_app.custody.identity import signing_key
from client_app.custody.kit import import_site_kit
from client_app.custody.vault import create_vault
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, plan_hash
from privacy.ckks import CkksParams, can_decrypt, generate_keys
from privacy.he_package import build_package, verify_package
from privacy.manifest import load_manifest
from privacy.sealing import seal
from server.he_context import import_evaluation_package, read_evaluation_context
from server.provisioning import init_federation

PASS = "custody test passphrase"


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("custody")
    fed = init_federation(root / "fed", name="c", sites=["a", "b", "c"], archives=False)
    vaults = {}
    for name in ("a", "b", "c"):
        import_site_kit(fed.site_kit(name), root / "sites" / name)
        vaults[name] = create_vault(open_site_dir(root / "sites" / name), PASS)
    plan = load_plan(bundled_plan_path("breast_cancer"))
    manifest = load_manifest(fed.manifest_path)
    result = keygen_and_seal(vaults["a"], plan, manifest, root / "out", recipients=["b", "c"],
                             actor="operator")
    return root, fed, vaults, plan, manifest, result


def test_each_site_opens_its_own_sealed_copy(ceremony) -> None:
    _, _, vaults, plan, manifest, result = ceremony
    digest = plan_hash(plan)
    assert sorted(result.sealed) == ["b", "c"]
    got = import_sealed(vaults["b"], result.sealed["b"].read_bytes(), manifest)
    assert got == (digest, result.fingerprint)
    assert load_secret_context(vaults["b"], digest) == load_secret_context(vaults["a"], digest)
    with SiteStore.open(vaults["b"].site) as store:
        assert [e.kind for e in store.events(kind="he_key_imported")] == ["he_key_imported"]
    with SiteStore.open(vaults["a"].site) as store:
        assert len(store.events(kind="he_key_sealed")) == 2


def test_a_copy_sealed_for_another_site_does_not_open(ceremony) -> None:
    _, _, vaults, _, manifest, result = ceremony
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["b"], result.sealed["c"].read_bytes(), manifest)
    assert err.value.code == ErrorCode.PERMISSION_DENIED


def test_a_copy_not_signed_by_the_custodian_is_refused(ceremony) -> None:
    _, _, vaults, _, manifest, _ = ceremony
    impostor = signing_key(vaults["b"])
    forged = seal(b"not a key", recipient_public_hex=manifest.site("c").sealing_public_key,
                  recipient="c", sender="a", sender_key=impostor,
                  purpose="ckks-secret-context", context={"plan_hash": "x", "fingerprint": "y"})
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["c"], forged, manifest)
    assert err.value.code == ErrorCode.BAD_SIGNATURE


def test_tampered_sealed_copy_is_refused(ceremony) -> None:
    _, _, vaults, _, manifest, result = ceremony
    blob = bytearray(result.sealed["c"].read_bytes())
    blob[-5] ^= 0x01
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["c"], bytes(blob), manifest)
    assert err.value.code == ErrorCode.BAD_SIGNATURE


def test_coordinator_package_verifies_and_cannot_decrypt(ceremony, tmp_path: Path) -> None:
    _, _, _, plan, manifest, result = ceremony
    import_evaluation_package(tmp_path, result.package.read_bytes(), manifest)
    ctx = read_evaluation_context(tmp_path, plan_hash=plan_hash(plan))
    assert ctx.fingerprint == result.fingerprint
    assert not can_decrypt(ctx.context)
    for path in tmp_path.iterdir():
        assert not can_decrypt(path.read_bytes()) if path.suffix == ".evalctx" else True


def test_package_with_a_secret_key_is_refused(ceremony) -> None:
    _, _, vaults, _, manifest, _ = ceremony
    keys = generate_keys(CkksParams())
    with pytest.raises(TesseraError) as err:
        build_package(plan_hash="p" * 64, fingerprint=keys.fingerprint, custodian="a",
                      evaluation_context=keys.secret_context, signer=signing_key(vaults["a"]))
    assert err.value.code == ErrorCode.PERMISSION_DENIED


def test_package_edited_after_signing_is_refused(ceremony) -> None:
    _, _, _, _, manifest, result = ceremony
    data = result.package.read_bytes().replace(b'"custodian": "a"', b'"custodian": "b"')
    with pytest.raises(TesseraError) as err:
        verify_package(data, manifest)
    assert err.value.code == ErrorCode.BAD_SIGNATURE


def test_the_confirmation_and_the_holders_are_recorded(ceremony) -> None:
    _, _, vaults, _, manifest, result = ceremony
    assert result.holders == {n: manifest.site(n).signing_public_key for n in ("a", "b", "c")}
    with SiteStore.open(vaults["a"].site) as store:
        [confirmed] = store.events(kind="he_recipients_confirmed")
        [generated] = store.events(kind="he_key_generated")
    assert confirmed.details["confirmed_by"] == "operator"
    assert [r["site"] for r in confirmed.details["recipients"]] == ["b", "c"]
    assert generated.details["holders"] == ["a", "b", "c"]


def test_recipients_drop_the_custodian_and_repeats_and_refuse_strangers(ceremony) -> None:
    from client_app.custody.he_custody import recipients_of

    _, _, _, _, manifest, _ = ceremony
    assert [r.name for r in recipients_of(manifest, ["b", "a", "b"], custodian="a")] == ["b"]
    with pytest.raises(TesseraError) as err:
        recipients_of(manifest, ["b", "mallory"], custodian="a")
    assert err.value.code is ErrorCode.NOT_FOUND


def test_importing_the_same_copy_twice_keeps_one_key(ceremony) -> None:
    _, _, vaults, plan, manifest, result = ceremony
    blob = result.sealed["c"].read_bytes()
    assert import_sealed(vaults["c"], blob, manifest) == import_sealed(vaults["c"], blob,
                                                                       manifest)
    assert load_secret_context(vaults["c"], plan_hash(plan)) == \
        load_secret_context(vaults["a"], plan_hash(plan))


def test_keygen_needs_who_confirmed(ceremony, tmp_path: Path) -> None:
    _, _, vaults, plan, manifest, _ = ceremony
    with pytest.raises(TesseraError) as err:
        keygen_and_seal(vaults["a"], plan, manifest, tmp_path, recipients=["b"], actor=" ")
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert not (tmp_path / "sealed").exists()
