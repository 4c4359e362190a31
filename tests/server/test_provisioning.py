"""``tessera federation init``: CA and SuperLink certificate, keys, signed manifest, kits."""

from __future__ import annotations

import gzip
import io
import ipaddress
import stat
import tarfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from typer.testing import CliRunner

from common.errors import ErrorCode, TesseraError
from privacy.manifest import read_kit_info, signed_manifest_toml
from privacy.signing import SigningKey
from server.cli import app
from server.provisioning import Federation, init_federation, load_manifest

SITES = ("north", "south", "east")
SITE_PRIVATE = ("node-auth.key", "sealing.key", "signing.key")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return init_federation(tmp_path_factory.mktemp("fed") / "out", name="cardio", sites=SITES,
                           addresses=["10.0.0.5", "link.example.org"], port=9443,
                           site_addresses={"east": "east-gw.example.org"})


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a kit folder, and every member of the archive next to it."""
    found = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    archive = folder.with_name(folder.name + ".tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                found[f"tar:{member.name}"] = tar.extractfile(member).read()  # type: ignore[union-attr]
    found["tar.gz:raw"] = gzip.decompress(archive.read_bytes())
    return found


def _secrets_of_site(fed: Federation, site: str) -> list[bytes]:
    """Every form a site's private keys could leak in: files, PEM/DER, raw bytes, hex."""
    kit = fed.site_kit(site)
    ssh = (kit / "node-auth.key").read_bytes()
    key = serialization.load_ssh_private_key(ssh, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(48, "big")
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    forms = [ssh, ssh.splitlines()[2], scalar, scalar.hex().encode(), pkcs8]
    for name in ("sealing.key", "signing.key"):
        text = (kit / name).read_text().strip()
        forms += [text.encode(), text.upper().encode(), bytes.fromhex(text)]
    return forms


def _secrets_of_coordinator(fed: Federation) -> list[bytes]:
    kit = fed.coordinator_kit
    forms = []
    for name in ("ca.key", "superlink.key"):
        pem = (kit / name).read_bytes()
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        forms += [pem.splitlines()[1], key.private_numbers().private_value.to_bytes(48, "big")]
    signing = (kit / "signing.key").read_text().strip()
    return [*forms, signing.encode(), bytes.fromhex(signing)]


def _leaks(blobs: dict[str, bytes], secrets: list[bytes]) -> list[str]:
    return [name for name, blob in blobs.items() if any(s in blob for s in secrets)]


def test_manifest_signature_verifies_and_lists_every_site(fed: Federation) -> None:
    manifest = load_manifest(fed.manifest_path)
    assert manifest == fed.manifest
    assert manifest.name == "cardio"
    assert manifest.site_names == SITES
    assert (manifest.superlink_address, manifest.superlink_port) == ("10.0.0.5", 9443)
    assert manifest.site("east").superlink_address == "east-gw.example.org"
    assert manifest.site("north").superlink_address == "10.0.0.5"
    for kit in (fed.coordinator_kit, fed.auditor_kit, *(fed.site_kit(s) for s in SITES)):
        assert (kit / "federation.toml").read_bytes() == fed.manifest_path.read_bytes()


@pytest.mark.parametrize("field", ["node_auth_public_key", "sealing_public_key",
                                   "signing_public_key", "superlink_address"])
def test_manifest_edit_of_a_site_entry_is_refused(fed: Federation, tmp_path: Path,
                                                  field: str) -> None:
    data = tomllib.loads(fed.manifest_path.read_text())
    other = data["sites"][-1][field]
    data["sites"][0][field] = other
    tampered = tmp_path / "federation.toml"
    tampered.write_text(tomli_w.dumps(data))
    with pytest.raises(TesseraError) as err:
        load_manifest(tampered)
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_manifest_added_site_or_missing_signature_is_refused(fed: Federation,
                                                             tmp_path: Path) -> None:
    data = tomllib.loads(fed.manifest_path.read_text())
    data["sites"].append(dict(data["sites"][0], name="intruder"))
    (tmp_path / "added.toml").write_text(tomli_w.dumps(data))
    del data["signature"]
    (tmp_path / "unsigned.toml").write_text(tomli_w.dumps(data))
    for name in ("added.toml", "unsigned.toml"):
        with pytest.raises(TesseraError) as err:
            load_manifest(tmp_path / name)
        assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_manifest_resigned_by_another_coordinator_is_refused_when_pinned(
        fed: Federation, tmp_path: Path) -> None:
    data = tomllib.loads(fed.manifest_path.read_text())
    del data["signature"]
    forger = SigningKey.generate()
    data["coordinator"]["signing_public_key"] = forger.public_hex
    forged = tmp_path / "federation.toml"
    forged.write_text(signed_manifest_toml(data, forger))
    assert load_manifest(forged).coordinator_signing_key == forger.public_hex  # self-consistent
    with pytest.raises(TesseraError) as err:
        load_manifest(forged, trusted_coordinator_key=fed.manifest.coordinator_signing_key)
    assert err.value.code is ErrorCode.BAD_SIGNATURE


def test_pinned_wrong_coordinator_key_is_refused(fed: Federation) -> None:
    pinned = load_manifest(fed.manifest_path,
                           trusted_coordinator_key=fed.manifest.coordinator_signing_key.upper())
    assert pinned.name == "cardio"
    with pytest.raises(TesseraError) as err:
        load_manifest(fed.manifest_path, trusted_coordinator_key=SigningKey.generate().public_hex)
    assert err.value.code is ErrorCode.BAD_SIGNATURE
    assert "trusted" in err.value.message


def test_coordinator_kit_holds_no_site_private_key(fed: Federation) -> None:
    blobs = _files(fed.coordinator_kit)
    assert not [n for n, b in blobs.items() if b"OPENSSH PRIVATE KEY" in b]
    for site in SITES:
        assert _leaks(blobs, _secrets_of_site(fed, site)) == [], site
    assert sorted(p.name for p in (fed.coordinator_kit / "node-auth").iterdir()) == sorted(
        f"{s}.pub" for s in SITES)


@pytest.mark.parametrize("site", SITES)
def test_site_kit_holds_only_its_own_private_keys(fed: Federation, site: str) -> None:
    kit = fed.site_kit(site)
    assert sorted(p.name for p in kit.iterdir()) == sorted(
        ["kit.toml", "federation.toml", "ca.pem", "node-auth.pub", "audit-server.pem",
         "audit-server.key", *SITE_PRIVATE])
    blobs = _files(kit)
    for other in SITES:
        if other != site:
            assert _leaks(blobs, _secrets_of_site(fed, other)) == [], other
    assert _leaks(blobs, _secrets_of_coordinator(fed)) == []
    own_audit_key = (kit / "audit-server.key").read_bytes()  # its own audit-service key
    assert not [n for n, b in blobs.items()
                if b"BEGIN PRIVATE KEY" in b.replace(own_audit_key, b"")]


def test_auditor_kit_holds_no_site_or_coordinator_secret(fed: Federation) -> None:
    blobs = _files(fed.auditor_kit)
    assert sorted(p.name for p in fed.auditor_kit.iterdir()) == [
        "audit-client.key", "audit-client.pem", "ca.pem", "federation.toml", "kit.toml",
        "sealing.key", "signing.key"]
    assert _leaks(blobs, _secrets_of_coordinator(fed)) == []
    for site in SITES:
        assert _leaks(blobs, _secrets_of_site(fed, site)) == []
    signing = SigningKey(bytes.fromhex((fed.auditor_kit / "signing.key").read_text().strip()))
    assert signing.public_hex == fed.manifest.auditor_signing_key


def test_kit_toml_names_role_and_party(fed: Federation) -> None:
    assert read_kit_info(fed.coordinator_kit).role == "coordinator"
    assert read_kit_info(fed.auditor_kit).role == "auditor"
    info = read_kit_info(fed.site_kit("south"))
    assert (info.role, info.party, info.federation) == ("site", "south", "cardio")


def test_superlink_certificate_chains_to_ca_and_names_dialled_addresses(fed: Federation) -> None:
    kit = fed.coordinator_kit
    ca = x509.load_pem_x509_certificate((kit / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((kit / "superlink.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA384)
    assert 729 <= (ca.not_valid_after_utc - ca.not_valid_before_utc).days <= 731
    names: list[x509.DNSName | x509.IPAddress] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")), x509.DNSName("link.example.org"),
        x509.DNSName("east-gw.example.org")]
    for name in names:
        verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
        chain = verifier.verify(leaf, [])
        assert chain[-1] == ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key((kit / "superlink.key").read_bytes(), None)
    assert key.public_key() == leaf.public_key()
    assert fed.manifest.ca_sha256 == ca.fingerprint(hashes.SHA256()).hex()


def test_superlink_certificate_does_not_name_other_hosts(fed: Federation) -> None:
    ca = x509.load_pem_x509_certificate((fed.coordinator_kit / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((fed.coordinator_kit / "superlink.pem").read_bytes())
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(
        x509.DNSName("evil.example.org"))
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(leaf, [])


@pytest.mark.parametrize("site", SITES)
def test_node_auth_keys_are_p384_in_openssh_format(fed: Federation, site: str) -> None:
    kit = fed.site_kit(site)
    private_text = (kit / "node-auth.key").read_text()
    assert private_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = serialization.load_ssh_private_key(private_text.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    for pub in (kit / "node-auth.pub", fed.coordinator_kit / "node-auth" / f"{site}.pub"):
        line = pub.read_text()
        assert line.startswith("ecdsa-sha2-nistp384 ")
        assert serialization.load_ssh_public_key(line.encode()) == key.public_key()
        assert line.split()[:2] == fed.manifest.site(site).node_auth_public_key.split()
    sealing = X25519PrivateKey.from_private_bytes(
        bytes.fromhex((kit / "sealing.key").read_text().strip()))
    assert sealing.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex() == fed.manifest.site(site).sealing_public_key


def test_private_keys_are_owner_only(fed: Federation) -> None:
    private = {"ca.key", "superlink.key", *SITE_PRIVATE}
    for path in fed.root.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name in private or path.name.endswith(".tar.gz"):
            assert mode == 0o600, path


def test_archives_hold_the_same_files_as_the_kits(fed: Federation) -> None:
    for kit in (fed.coordinator_kit, fed.auditor_kit, fed.site_kit("north")):
        with tarfile.open(kit.with_name(kit.name + ".tar.gz"), "r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        expected = {f"{kit.name}/{p.relative_to(kit)}": p.read_bytes()
                    for p in kit.rglob("*") if p.is_file()}
        assert members == expected


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(TesseraError) as err:
        init_federation(tmp_path, name="f", sites=["a"])
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"sites": []}, "at least one site"),
    ({"sites": ["a", "a"]}, "twice"),
    ({"sites": ["../a"]}, "--sites"),
    ({"sites": ["a"], "site_addresses": {"b": "h.example.org"}}, "not in --sites"),
    ({"sites": ["a"], "addresses": ["bad host!"]}, "--address"),
    ({"sites": ["a"], "port": 70000}, "--port"),
])
def test_invalid_options_are_refused_and_nothing_is_written(
        tmp_path: Path, kwargs: dict, fragment: str) -> None:
    with pytest.raises(TesseraError) as err:
        init_federation(tmp_path / "out", name="f", **kwargs)
    assert err.value.code is ErrorCode.CONFIG_INVALID
    assert fragment in err.value.message
    assert not (tmp_path / "out").exists()


def test_federation_init_cli_writes_kits_and_prints_the_coordinator_key(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    result = CliRunner().invoke(app, [
        "init", "--name", "cardio", "--sites", "a, b", "--out", str(out),
        "--address", "link.example.org", "--port", "9092", "--site-address", "b=10.1.2.3"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out / "federation.toml")
    assert manifest.site_names == ("a", "b")
    assert manifest.site("b").superlink_address == "10.1.2.3"
    assert manifest.coordinator_signing_key in result.output
    assert (out / "site-kits" / "b.tar.gz").is_file()
    secret = (out / "coordinator-kit" / "signing.key").read_text().strip()
    assert secret not in result.output


def test_federation_init_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    runner = CliRunner()
    result = runner.invoke(app, ["init", "--name", "f", "--sites", "a", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: output folder" in result.output
    assert "Traceback" not in result.output
    bad = runner.invoke(app, ["init", "--name", "f", "--sites", "a", "--out",
                              str(tmp_path / "new"), "--site-address", "a"])
    assert bad.exit_code == 2 and "SITE=HOST" in bad.output


def test_archive_is_gzip_tar_of_one_folder(fed: Federation) -> None:
    raw = (fed.root / "site-kits" / "north.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        assert {m.name.split("/")[0] for m in tar.getmembers()} == {"north"}
