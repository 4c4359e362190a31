"""Provisioning a federation: its CA, the SuperLink certificate, every party's keys and kits.

``init_federation`` writes, under a new output folder::

    federation.toml                 the signed manifest (public keys only)
    coordinator-kit/                kit.toml, federation.toml, ca.pem, ca.key, superlink.pem,
                                    superlink.key, signing.key, node-auth/<site>.pub,
                                    audit-server.pem, audit-server.key
    site-kits/<site>/               kit.toml, federation.toml, ca.pem, node-auth.key,
                                    node-auth.pub, sealing.key, signing.key,
                                    audit-server.pem, audit-server.key
    auditor-kit/                    kit.toml, federation.toml, ca.pem, signing.key, sealing.key,
                                    audit-client.pem, audit-client.key
    coordinator-kit.tar.gz, site-kits/<site>.tar.gz, auditor-kit.tar.gz

Each private key exists in exactly one kit. TLS is EC P-384 with SHA-384; node-authentication
keys are EC P-384 in OpenSSH format (what Flower's SuperNode and ``flwr supernode register``
take); signing keys are Ed25519 and sealing keys X25519, both raw 32 bytes written as hex.
The read-only audit service (``tessera audit serve``) uses an ``audit-server`` certificate
(serverAuth; SANs 127.0.0.1, localhost and the party's addresses) in the coordinator and each
site kit, and accepts only the auditor's ``audit-client`` certificate (clientAuth, CN
``auditor``); all are issued by the federation CA.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import ErrorCode, TesseraError
from privacy.manifest import (
    AUDIT_CLIENT_CERT_FILE,
    AUDIT_CLIENT_KEY_FILE,
    AUDIT_SERVER_CERT_FILE,
    AUDIT_SERVER_KEY_FILE,
    CA_CERT_FILE,
    MANIFEST_FILE,
    NODE_AUTH_KEY_FILE,
    NODE_AUTH_PUB_FILE,
    SEALING_KEY_FILE,
    SIGNING_KEY_FILE,
    KitInfo,
    Manifest,
    SiteEntry,
    certificate_sha256,
    load_manifest,
    manifest_content,
    signed_manifest_toml,
    write_kit_info,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

__all__ = ["Federation", "init_federation", "load_manifest"]

CA_KEY_FILE = "ca.key"
SUPERLINK_CERT_FILE = "superlink.pem"
SUPERLINK_KEY_FILE = "superlink.key"
NODE_AUTH_DIR = "node-auth"
CA_VALIDITY = timedelta(days=730)
SUPERLINK_VALIDITY = timedelta(days=365)
AUDIT_CLIENT_NAME = "auditor"
DEFAULT_PORT = 9092
_ALWAYS_TLS_NAMES = ("127.0.0.1", "localhost")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Federation:
    """Where a freshly provisioned federation's files are."""

    root: Path
    manifest: Manifest

    @property
    def manifest_path(self) -> Path:
        """The top-level signed manifest."""
        return self.root / MANIFEST_FILE

    @property
    def coordinator_kit(self) -> Path:
        """The coordinator's kit folder."""
        return self.root / "coordinator-kit"

    @property
    def auditor_kit(self) -> Path:
        """The auditor's kit folder."""
        return self.root / "auditor-kit"

    def site_kit(self, site: str) -> Path:
        """The kit folder of ``site`` (NOT_FOUND if the federation has no such site)."""
        return self.root / "site-kits" / self.manifest.site(site).name


def init_federation(out: Path, *, name: str, sites: Sequence[str],
                    addresses: Sequence[str] = ("127.0.0.1",), port: int = DEFAULT_PORT,
                    site_addresses: Mapping[str, str] | None = None,
                    audit_addresses: Mapping[str, Sequence[str]] | None = None,
                    archives: bool = True) -> Federation:
    """Provision federation ``name`` with ``sites`` into the new (or empty) folder ``out``.

    ``addresses`` are the SuperLink's names (the first is the one the manifest advertises);
    ``site_addresses`` maps a site to the SuperLink address that site dials, when it differs.
    Every address becomes a SAN of the SuperLink certificate, with 127.0.0.1 and localhost.
    ``audit_addresses`` maps a party ("coordinator" or a site) to extra names its audit
    service answers on; the coordinator's audit certificate always names the SuperLink's.
    """
    _check_name(name, "--name")
    site_names = [_check_name(s, "--sites") for s in sites]
    if not site_names:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--sites must name at least one site")
    if len(set(site_names)) != len(site_names):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--sites names a site twice")
    if not 0 < port < 65536:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"--port {port} is not a port number")
    hosts = [_check_host(a, "--address") for a in addresses] or ["127.0.0.1"]
    per_site: dict[str, str] = {}
    for site, host in (site_addresses or {}).items():
        if site not in site_names:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--site-address names {site!r}, which is not in --sites")
        per_site[site] = _check_host(host, "--site-address")
    tls_names = tuple(dict.fromkeys([*_ALWAYS_TLS_NAMES, *hosts, *per_site.values()]))
    audit_names: dict[str, tuple[str, ...]] = {}
    for party, names in (audit_addresses or {}).items():
        if party != "coordinator" and party not in site_names:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--audit-address names {party!r}, which is neither "
                               "'coordinator' nor in --sites")
        audit_names[party] = tuple(_check_host(h, "--audit-address") for h in names)
    audit_names["coordinator"] = (*tls_names, *audit_names.get("coordinator", ()))

    out = Path(out).expanduser().absolute()
    existed = out.exists()
    if existed and (not out.is_dir() or any(out.iterdir())):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"output folder {out} is not empty; choose a new folder")
    _mkdir(out)
    try:
        return _provision(out, name=name, sites=site_names, address=hosts[0], port=port,
                          per_site=per_site, tls_names=tls_names, audit_names=audit_names,
                          archives=archives)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if existed:
            _mkdir(out)
        raise


def _provision(out: Path, *, name: str, sites: list[str], address: str, port: int,
               per_site: dict[str, str], tls_names: tuple[str, ...],
               audit_names: dict[str, tuple[str, ...]], archives: bool) -> Federation:
    now = datetime.now(UTC).replace(microsecond=0)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = _ca_certificate(ca_key, name=name, now=now)
    link_key = ec.generate_private_key(ec.SECP384R1())
    link_cert = _superlink_certificate(link_key, ca_key, ca_cert, tls_names=tls_names, now=now)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    coordinator, auditor = SigningKey.generate(), SigningKey.generate()
    auditor_sealing = SealingKey.generate()
    site_keys = {s: (ec.generate_private_key(ec.SECP384R1()), SealingKey.generate(),
                     SigningKey.generate()) for s in sites}
    manifest = Manifest(
        name=name, created=now.isoformat().replace("+00:00", "Z"), superlink_address=address,
        superlink_port=port, tls_names=tls_names, ca_sha256=certificate_sha256(ca_pem),
        coordinator_signing_key=coordinator.public_hex, auditor_signing_key=auditor.public_hex,
        auditor_sealing_key=auditor_sealing.public_hex,
        sites=tuple(SiteEntry(
            name=s, superlink_address=per_site.get(s, address),
            node_auth_public_key=_openssh_public(auth), sealing_public_key=seal.public_hex,
            signing_public_key=sign.public_hex) for s, (auth, seal, sign) in site_keys.items()),
        signature="")
    manifest_bytes = signed_manifest_toml(manifest_content(manifest), coordinator).encode()
    _write(out / MANIFEST_FILE, manifest_bytes)
    fed = Federation(root=out, manifest=load_manifest(out / MANIFEST_FILE,
                                                      trusted_coordinator_key=coordinator.public_hex))

    def audit_tls(folder: Path, party: str, *, client: bool = False) -> None:
        key = ec.generate_private_key(ec.SECP384R1())
        names = () if client else tuple(dict.fromkeys(
            [*_ALWAYS_TLS_NAMES, *audit_names.get(party, ())]))
        cert = _leaf_certificate(key, ca_key, ca_cert, common_name=party, tls_names=names,
                                 client=client, now=now)
        stem = (AUDIT_CLIENT_CERT_FILE, AUDIT_CLIENT_KEY_FILE) if client else (
            AUDIT_SERVER_CERT_FILE, AUDIT_SERVER_KEY_FILE)
        _write(folder / stem[0], cert.public_bytes(serialization.Encoding.PEM))
        _write(folder / stem[1], _pem_private(key), private=True)

    def kit(folder: Path, role: str, party: str) -> Path:
        _mkdir(folder)
        write_kit_info(folder, KitInfo(role=role, party=party, federation=name))
        _write(folder / MANIFEST_FILE, manifest_bytes)
        _write(folder / CA_CERT_FILE, ca_pem)
        return folder

    coord = kit(fed.coordinator_kit, "coordinator", "coordinator")
    _write(coord / CA_KEY_FILE, _pem_private(ca_key), private=True)
    _write(coord / SUPERLINK_CERT_FILE, link_cert.public_bytes(serialization.Encoding.PEM))
    _write(coord / SUPERLINK_KEY_FILE, _pem_private(link_key), private=True)
    _write(coord / SIGNING_KEY_FILE, _hex_line(coordinator.raw), private=True)
    _mkdir(coord / NODE_AUTH_DIR)
    for entry in fed.manifest.sites:
        _write(coord / NODE_AUTH_DIR / f"{entry.name}.pub", _pub_line(entry))
    audit_tls(coord, "coordinator")

    _mkdir(out / "site-kits")
    for entry in fed.manifest.sites:
        auth, seal, sign = site_keys[entry.name]
        folder = kit(fed.site_kit(entry.name), "site", entry.name)
        _write(folder / NODE_AUTH_KEY_FILE, auth.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()), private=True)
        _write(folder / NODE_AUTH_PUB_FILE, _pub_line(entry))
        _write(folder / SEALING_KEY_FILE, _hex_line(seal.raw), private=True)
        _write(folder / SIGNING_KEY_FILE, _hex_line(sign.raw), private=True)
        audit_tls(folder, entry.name)

    aud = kit(fed.auditor_kit, "auditor", "auditor")
    _write(aud / SIGNING_KEY_FILE, _hex_line(auditor.raw), private=True)
    _write(aud / SEALING_KEY_FILE, _hex_line(auditor_sealing.raw), private=True)
    audit_tls(aud, AUDIT_CLIENT_NAME, client=True)

    if archives:
        for folder in (coord, aud, *(fed.site_kit(s) for s in sites)):
            _archive(folder)
    return fed


def _ca_certificate(key: ec.EllipticCurvePrivateKey, *, name: str,
                    now: datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tessera"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{name} federation CA")])
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA384())
    )


def _superlink_certificate(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                           ca_cert: x509.Certificate, *, tls_names: tuple[str, ...],
                           now: datetime) -> x509.Certificate:
    return _leaf_certificate(key, ca_key, ca_cert, common_name="superlink",
                             tls_names=tls_names, client=False, now=now)


def _leaf_certificate(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                      ca_cert: x509.Certificate, *, common_name: str,
                      tls_names: tuple[str, ...], client: bool,
                      now: datetime) -> x509.Certificate:
    """A TLS server certificate naming ``tls_names`` or (``client``) a client certificate."""
    sans: list[x509.GeneralName] = []
    for host in tls_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tessera"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(min(now + SUPERLINK_VALIDITY, ca_cert.not_valid_after_utc)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    return (
        builder
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA384())
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; the SuperLink only signs TLS handshakes."""
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def _check_name(value: str, option: str) -> str:
    if not _NAME.fullmatch(value):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{option}: {value!r} must be 1-64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit")
    return value


def _check_host(value: str, option: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{option}: {value!r} is not an IP address or host name")
    return value.rstrip(".").lower()


def _openssh_public(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _pub_line(entry: SiteEntry) -> bytes:
    return f"{entry.node_auth_public_key} tessera-{entry.name}\n".encode()


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _hex_line(raw: bytes) -> bytes:
    return raw.hex().encode() + b"\n"


def _mkdir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Create ``path`` (never overwrite); private files are 0o600, others 0o644."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600 if private else 0o644)


def _archive(folder: Path) -> Path:
    """``<folder>.tar.gz`` next to ``folder`` (0o600: kits hold private keys)."""
    target = folder.with_name(folder.name + ".tar.gz")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return target
