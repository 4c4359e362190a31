"""Attack: claim to hold a study's CKKS key (or hand a site a key) without the custodian.

Sites will accept encrypted contributions only from the study key's holders, so the list of
holders is part of custody: the custodian signs it (site names and signing keys, bound to the
plan hash and key fingerprint), every sealed copy carries it, and a receiving site verifies
and keeps it. A site the custodian did not confirm is never a holder, a list signed by anyone
else is refused, and a second key for a study a site already holds does not replace it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client_app.custody.vault import SiteVault
from common.errors import ErrorCode, TesseraError
from common.plan import bundled_plan_path, load_plan, plan_hash
from privacy.manifest import Manifest
from privacy.sealing import seal
from server.provisioning import Federation, init_federation
from tests.adversarial.conftest import installed_site, key_of

PLAN = load_plan(bundled_plan_path("breast_cancer"))


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory):
    from client_app.custody.he_custody import keygen_and_seal

    root = tmp_path_factory.mktemp("holders")
    fed = init_federation(root / "fed", name="holders", sites=["a", "b", "c"], archives=False)
    vaults = {s: installed_site(fed.site_kit(s), root / "sites" / s) for s in ("a", "b", "c")}
    result = keygen_and_seal(vaults["a"], PLAN, fed.manifest, root / "out", recipients=["b"],
                             actor="operator")
    return fed, vaults, result


def _keys(manifest: Manifest, *names: str) -> dict[str, str]:
    return {n: manifest.site(n).signing_public_key for n in names}


def test_the_custodian_and_each_recipient_keep_the_confirmed_holders(ceremony) -> None:
    from client_app.custody.he_custody import import_sealed
    from client_app.custody.key_holders import study_key_holders

    fed, vaults, result = ceremony
    digest = plan_hash(PLAN)
    assert study_key_holders(vaults["a"], digest) == _keys(fed.manifest, "a", "b")
    import_sealed(vaults["b"], result.sealed["b"].read_bytes(), fed.manifest)
    assert study_key_holders(vaults["b"], digest) == _keys(fed.manifest, "a", "b")
    with pytest.raises(TesseraError) as err:
        study_key_holders(vaults["c"], digest)
    assert err.value.code is ErrorCode.KEY_MISSING


def _copy_for_b(fed: Federation, vaults: dict[str, SiteVault], document: bytes) -> bytes:
    """A copy sealed to 'b' by the custodian's own key, carrying ``document`` as holders."""
    from client_app.custody.ckks_keys import load_secret_context
    from client_app.custody.he_custody import PURPOSE
    from client_app.custody.key_holders import pack

    digest = plan_hash(PLAN)
    secret = load_secret_context(vaults["a"], digest)
    from privacy.ckks import fingerprint_of_secret

    return seal(pack(document, secret),
                recipient_public_hex=fed.manifest.site("b").sealing_public_key,
                recipient="b", sender="a", sender_key=key_of(fed.site_kit("a")),
                purpose=PURPOSE,
                context={"plan_hash": digest, "fingerprint": fingerprint_of_secret(secret)})


def test_a_holder_list_signed_by_anyone_but_the_custodian_is_refused(ceremony) -> None:
    from client_app.custody.he_custody import import_sealed
    from client_app.custody.key_holders import sign_holders

    fed, vaults, result = ceremony
    digest = plan_hash(PLAN)
    forged = sign_holders(plan_hash=digest, fingerprint=result.fingerprint, custodian="a",
                          holders=_keys(fed.manifest, "a", "b", "c"),
                          signer=key_of(fed.site_kit("b")))
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["b"], _copy_for_b(fed, vaults, forged), fed.manifest)
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_a_holder_list_of_another_study_is_refused(ceremony) -> None:
    from client_app.custody.he_custody import import_sealed
    from client_app.custody.key_holders import sign_holders

    fed, vaults, result = ceremony
    other = sign_holders(plan_hash="ee" * 32, fingerprint=result.fingerprint, custodian="a",
                         holders=_keys(fed.manifest, "a", "b", "c"),
                         signer=key_of(fed.site_kit("a")))
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["b"], _copy_for_b(fed, vaults, other), fed.manifest)
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_a_holder_list_that_leaves_out_the_recipient_is_refused(ceremony) -> None:
    from client_app.custody.he_custody import import_sealed
    from client_app.custody.key_holders import sign_holders

    fed, vaults, result = ceremony
    document = sign_holders(plan_hash=plan_hash(PLAN), fingerprint=result.fingerprint,
                            custodian="a", holders=_keys(fed.manifest, "a"),
                            signer=key_of(fed.site_kit("a")))
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["b"], _copy_for_b(fed, vaults, document), fed.manifest)
    assert err.value.code is ErrorCode.PERMISSION_DENIED


def test_a_second_key_for_a_study_does_not_replace_the_one_a_site_holds(
        ceremony, tmp_path: Path) -> None:
    """Site 'c' (which the coordinator could impersonate) seals its own key for the study."""
    from client_app.custody.ckks_keys import load_secret_context
    from client_app.custody.he_custody import import_sealed, keygen_and_seal

    fed, vaults, result = ceremony
    digest = plan_hash(PLAN)
    import_sealed(vaults["b"], result.sealed["b"].read_bytes(), fed.manifest)
    held = load_secret_context(vaults["b"], digest)
    rival = keygen_and_seal(vaults["c"], PLAN, fed.manifest, tmp_path / "rival",
                            recipients=["b"], actor="operator")
    with pytest.raises(TesseraError) as err:
        import_sealed(vaults["b"], rival.sealed["b"].read_bytes(), fed.manifest)
    assert err.value.code is ErrorCode.DUPLICATE
    assert load_secret_context(vaults["b"], digest) == held
