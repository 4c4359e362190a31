"""The signed federation manifest (``federation.toml``) and the kit descriptor (``kit.toml``).

The coordinator provisions a federation and signs its manifest; every party (coordinator,
site, auditor) receives it in its kit and trusts the public keys it lists only after the
signature verifies. The signature covers the parsed TOML content without its ``[signature]``
table (Ed25519, domain ``federation-manifest``, see :mod:`privacy.signing`). This module is
shared by the coordinator side (writing) and the site side (reading), hence its home here.

Kit file names are part of the format: a kit is a folder holding ``kit.toml``, the manifest
and the party's key files under the fixed names below.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from common.errors import ErrorCode, TesseraError
from privacy.signing import SigningKey, verify

MANIFEST_DOMAIN = "federation-manifest"
MANIFEST_FORMAT = 1
MANIFEST_FILE = "federation.toml"
KIT_FILE = "kit.toml"
ROLES = ("coordinator", "site", "auditor")
#: Site names, the rule of site folders (client_app.store.folder): they become file and folder
#: names (kits, sealed keys, node keys), so a manifest naming any other is refused.
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")

# Files inside kits (fixed names; see server.provisioning for the full layouts).
CA_CERT_FILE = "ca.pem"
NODE_AUTH_KEY_FILE = "node-auth.key"
NODE_AUTH_PUB_FILE = "node-auth.pub"
SEALING_KEY_FILE = "sealing.key"
SIGNING_KEY_FILE = "signing.key"
AUDIT_SERVER_CERT_FILE = "audit-server.pem"   # coordinator and site kits: the audit service
AUDIT_SERVER_KEY_FILE = "audit-server.key"
AUDIT_CLIENT_CERT_FILE = "audit-client.pem"   # auditor kit: the audit service's client
AUDIT_CLIENT_KEY_FILE = "audit-client.key"


@dataclass(frozen=True)
class SiteEntry:
    """One site as the manifest lists it (public material only)."""

    name: str
    superlink_address: str
    node_auth_public_key: str
    sealing_public_key: str
    signing_public_key: str


@dataclass(frozen=True)
class Manifest:
    """A verified federation manifest."""

    name: str
    created: str
    superlink_address: str
    superlink_port: int
    tls_names: tuple[str, ...]
    ca_sha256: str
    coordinator_signing_key: str
    auditor_signing_key: str
    auditor_sealing_key: str
    sites: tuple[SiteEntry, ...]
    signature: str

    @property
    def site_names(self) -> tuple[str, ...]:
        """The names of the sites, in manifest order."""
        return tuple(s.name for s in self.sites)

    def site(self, name: str) -> SiteEntry:
        """The entry of site ``name``; NOT_FOUND if the manifest does not list it."""
        for entry in self.sites:
            if entry.name == name:
                return entry
        raise TesseraError(ErrorCode.NOT_FOUND, f"site {name!r} is not in federation {self.name!r}")

    def signing_key_of(self, *, role: str, party: str) -> str | None:
        """The Ed25519 public key (lowercase hex) this manifest gives to ``party`` acting in
        ``role``: the coordinator's (party "coordinator"), the auditor's (party "auditor") or a
        listed site's (role "site"); None if it gives that party none."""
        if role == "coordinator" and party == "coordinator":
            return self.coordinator_signing_key.lower()
        if role == "auditor" and party == "auditor":
            return self.auditor_signing_key.lower()
        if role == "site":
            for entry in self.sites:
                if entry.name == party:
                    return entry.signing_public_key.lower()
        return None


@dataclass(frozen=True)
class KitInfo:
    """``kit.toml``: which role and party a kit belongs to."""

    role: str
    party: str
    federation: str


def describe_party(role: str, party: str) -> str:
    """``site 'north'``, ``the coordinator``, ``the auditor``: a party, for messages."""
    if role == party and role in ("coordinator", "auditor"):
        return f"the {role}"
    return f"{role} {party!r}"


def manifest_content(manifest: Manifest) -> dict[str, Any]:
    """The signed content of ``manifest`` (everything but the signature), as TOML tables."""
    return {
        "format": MANIFEST_FORMAT,
        "federation": {"name": manifest.name, "created": manifest.created},
        "superlink": {"address": manifest.superlink_address, "port": manifest.superlink_port,
                      "tls_names": list(manifest.tls_names), "ca_sha256": manifest.ca_sha256},
        "coordinator": {"signing_public_key": manifest.coordinator_signing_key},
        "auditor": {"signing_public_key": manifest.auditor_signing_key,
                    "sealing_public_key": manifest.auditor_sealing_key},
        "sites": [{"name": s.name, "superlink_address": s.superlink_address,
                   "node_auth_public_key": s.node_auth_public_key,
                   "sealing_public_key": s.sealing_public_key,
                   "signing_public_key": s.signing_public_key} for s in manifest.sites],
    }


def signed_manifest_toml(content: dict[str, Any], coordinator: SigningKey) -> str:
    """TOML text of ``content`` with the coordinator's signature in a ``[signature]`` table."""
    if content["coordinator"]["signing_public_key"] != coordinator.public_hex:
        raise TesseraError(ErrorCode.INTERNAL, "manifest names another coordinator key")
    signature = coordinator.sign(MANIFEST_DOMAIN, content)
    return tomli_w.dumps({**content, "signature": {
        "algorithm": "ed25519", "domain": MANIFEST_DOMAIN, "value": signature}})


def load_manifest(path: Path, *, trusted_coordinator_key: str | None = None) -> Manifest:
    """Read and verify ``federation.toml``.

    The signature must verify with the coordinator key the manifest names; if
    ``trusted_coordinator_key`` is given (pinning), that key must also be the trusted one.
    Raises BAD_SIGNATURE on either failure, CONFIG_INVALID on a malformed file.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TesseraError(ErrorCode.NOT_FOUND, f"no federation manifest at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest {path} cannot be read ({type(exc).__name__})"
                           ) from None
    return parse_manifest(text, trusted_coordinator_key=trusted_coordinator_key)


def parse_manifest(text: str, *, trusted_coordinator_key: str | None = None) -> Manifest:
    """Verify and parse manifest TOML text (see :func:`load_manifest`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest is not valid TOML ({exc})") from None
    signature = data.pop("signature", None)
    value = signature.get("value") if isinstance(signature, dict) else None
    if not isinstance(value, str) or not value:
        raise TesseraError(ErrorCode.BAD_SIGNATURE, "federation manifest is not signed")
    if signature.get("domain", MANIFEST_DOMAIN) != MANIFEST_DOMAIN:
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           "federation manifest signature has the wrong domain")
    coordinator_key = _str(_table(data.get("coordinator"), "coordinator"),
                           "signing_public_key", "coordinator")
    if trusted_coordinator_key is not None and (
            coordinator_key.lower() != trusted_coordinator_key.strip().lower()):
        raise TesseraError(
            ErrorCode.BAD_SIGNATURE,
            f"federation manifest is signed by coordinator key {coordinator_key[:16]}..., "
            f"not by the trusted key {trusted_coordinator_key.strip()[:16]}...")
    try:
        verify(coordinator_key, value, MANIFEST_DOMAIN, data)
    except TypeError:  # a value canonical JSON cannot express (e.g. a TOML date)
        raise TesseraError(ErrorCode.BAD_SIGNATURE,
                           "federation manifest: signature does not verify") from None
    return _manifest_from(data, value)


def _manifest_from(data: dict[str, Any], signature: str) -> Manifest:
    if data.get("format") != MANIFEST_FORMAT:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest format {data.get('format')!r} is not supported")
    federation = _table(data.get("federation"), "federation")
    link = _table(data.get("superlink"), "superlink")
    auditor = _table(data.get("auditor"), "auditor")
    port = link.get("port")
    names = link.get("tls_names")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "superlink.port must be a port number")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "superlink.tls_names must list names")
    raw_sites = data.get("sites")
    if not isinstance(raw_sites, list) or not raw_sites:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "federation manifest lists no [[sites]]")
    sites = tuple(_site_entry(s) for s in raw_sites)
    site_names = [s.name for s in sites]
    for name in site_names:
        if site_names.count(name) > 1:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"federation manifest lists site {name!r} twice")
    return Manifest(
        name=_str(federation, "name", "federation"),
        created=_str(federation, "created", "federation"),
        superlink_address=_str(link, "address", "superlink"),
        superlink_port=port,
        tls_names=tuple(names),
        ca_sha256=_str(link, "ca_sha256", "superlink"),
        coordinator_signing_key=_key(data["coordinator"], "signing_public_key", "coordinator"),
        auditor_signing_key=_key(auditor, "signing_public_key", "auditor"),
        auditor_sealing_key=_key(auditor, "sealing_public_key", "auditor"),
        sites=sites,
        signature=signature,
    )


def _site_entry(value: object) -> SiteEntry:
    """One ``[[sites]]`` entry: its name checked before it can reach any path."""
    table = _table(value, "sites")
    name = _str(table, "name", "sites")
    if not SITE_NAME.fullmatch(name):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest: site name {name!r} is not allowed (1-64 "
                           "letters, digits, '_', '.' or '-', starting with a letter or digit)")
    return SiteEntry(name=name, superlink_address=_str(table, "superlink_address", "sites"),
                     node_auth_public_key=_str(table, "node_auth_public_key", "sites"),
                     sealing_public_key=_key(table, "sealing_public_key", f"site {name!r}"),
                     signing_public_key=_key(table, "signing_public_key", f"site {name!r}"))


def _key(table: dict[str, Any], key: str, where: str) -> str:
    value = _str(table, key, where)
    if not _KEY_HEX.fullmatch(value):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest: {where}.{key} is not a 32-byte key in hex")
    return value


def _table(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest has no valid [{name}] table")
    return value


def _str(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"federation manifest: {where}.{key} is missing or not text")
    return value


def certificate_sha256(pem: bytes) -> str:
    """SHA-256 (hex) of a PEM certificate's DER encoding; CONFIG_INVALID if not a certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "not a PEM X.509 certificate") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_kit_info(folder: Path, info: KitInfo) -> None:
    """Write ``kit.toml`` into a kit folder."""
    (folder / KIT_FILE).write_text(tomli_w.dumps(
        {"format": MANIFEST_FORMAT, "role": info.role, "party": info.party,
         "federation": info.federation}), encoding="utf-8")


def read_kit_info(folder: Path) -> KitInfo:
    """Read ``kit.toml`` of a kit folder (NOT_FOUND / CONFIG_INVALID naming the problem)."""
    path = Path(folder) / KIT_FILE
    if not path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{folder} is not a Tessera kit (no {KIT_FILE})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{KIT_FILE} in {folder} cannot be read ({type(exc).__name__})"
                           ) from None
    fields = {}
    for key in ("role", "party", "federation"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"{KIT_FILE}: {key} is missing")
        fields[key] = value
    if fields["role"] not in ROLES:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{KIT_FILE}: role {fields['role']!r} is not one of {', '.join(ROLES)}")
    return KitInfo(**fields)
