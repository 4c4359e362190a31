"""A hospital's side of provisioning: importing its site kit and loading the site's identity.

A site kit (made by ``tessera federation init``) holds the signed federation manifest, the
federation CA certificate and the site's own private keys: node authentication (EC P-384,
OpenSSH), sealing (X25519, hex) and signing (Ed25519, hex). Import checks everything before
it writes anything: the kit is a site kit, the manifest signature verifies (and matches a
pinned coordinator key, if any), the CA is the one the manifest names and every key in the
kit matches the public key the manifest lists for that site. Only then is the site folder
initialised under the kit's site name and the material copied to ``<site folder>/kit/``.
"""

from __future__ import annotations

import functools
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from client_app.store.events import SiteEvent
from client_app.store.folder import init_site_dir, open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.files import PRIVATE_DIR, PRIVATE_FILE, atomic_write_bytes, fsync_dir
from common.workdir import KIT as KIT_DIR
from common.workdir import site_config
from privacy.kit_identity import read_hex_key
from privacy.manifest import (
    AUDIT_SERVER_CERT_FILE,
    AUDIT_SERVER_KEY_FILE,
    CA_CERT_FILE,
    KIT_FILE,
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
    parse_manifest,
    read_kit_info,
)
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

PRIVATE_FILES = (NODE_AUTH_KEY_FILE, SEALING_KEY_FILE, SIGNING_KEY_FILE, AUDIT_SERVER_KEY_FILE)
PUBLIC_FILES = (KIT_FILE, MANIFEST_FILE, CA_CERT_FILE, NODE_AUTH_PUB_FILE, AUDIT_SERVER_CERT_FILE)


@dataclass(frozen=True)
class SiteKit:
    """An installed site identity: who the site is and where its key material lives."""

    site: str
    root: Path
    manifest: Manifest

    @property
    def entry(self) -> SiteEntry:
        """This site's entry in the manifest."""
        return self.manifest.site(self.site)

    @property
    def manifest_path(self) -> Path:
        """The signed federation manifest."""
        return self.root / MANIFEST_FILE

    @property
    def node_auth_key(self) -> Path:
        """EC P-384 private key, OpenSSH format (``--auth-supernode-private-key``)."""
        return self.root / NODE_AUTH_KEY_FILE

    @property
    def node_auth_public_key(self) -> Path:
        """The matching OpenSSH public key line."""
        return self.root / NODE_AUTH_PUB_FILE

    @property
    def sealing_key(self) -> Path:
        """X25519 private key (hex of the raw 32 bytes)."""
        return self.root / SEALING_KEY_FILE

    @property
    def signing_key(self) -> Path:
        """Ed25519 private key (hex of the raw 32 bytes)."""
        return self.root / SIGNING_KEY_FILE

    @property
    def ca_certificate(self) -> Path:
        """The federation CA certificate (``--root-certificates``)."""
        return self.root / CA_CERT_FILE


def import_site_kit(kit: Path, site_dir: Path, *,
                    expected_coordinator_key: str | None = None) -> SiteKit:
    """Verify the site kit ``kit`` (folder or ``.tar.gz``) and install it into ``site_dir``.

    Nothing is written unless every check passes. A site folder that already holds a kit
    accepts only a kit signed by the same coordinator key (trust on first use); a folder that
    belongs to another site is refused.
    """
    site_dir = Path(site_dir).expanduser().absolute()
    installed = site_dir / KIT_DIR
    pins = [k.strip().lower() for k in [expected_coordinator_key] if k]
    if (installed / MANIFEST_FILE).is_file():
        pins.append(_load_manifest(installed / MANIFEST_FILE).coordinator_signing_key.lower())
        if len(set(pins)) > 1:
            raise TesseraError(ErrorCode.BAD_SIGNATURE,
                               f"{site_dir} already trusts another coordinator key; "
                               f"remove {installed} to change federation")
    with _unpacked(Path(kit).expanduser()) as folder:
        info = _verified(folder, pinned=pins[-1] if pins else None)
        if site_config(site_dir).is_file():
            owner = open_site_dir(site_dir).name
            if owner != info.party:
                raise TesseraError(ErrorCode.PERMISSION_DENIED,
                                   f"site folder {site_dir} belongs to site {owner!r}, "
                                   f"not {info.party!r}")
        site = init_site_dir(site_dir, name=info.party)
        _install(folder, installed)
    identity = load_site_identity(site_dir)
    with SiteStore.open(site) as store:
        store.record_event(SiteEvent.KIT_IMPORTED, details={
            "federation": identity.manifest.name,
            "coordinator_key": identity.manifest.coordinator_signing_key})
    return identity


def inspect_site_kit(kit: Path, *,
                     expected_coordinator_key: str | None = None) -> tuple[KitInfo, Manifest]:
    """Verify the site kit ``kit`` exactly as :func:`import_site_kit` does, writing nothing:
    who it is for and the signed manifest, for the operator to confirm before importing."""
    pin = expected_coordinator_key.strip().lower() if expected_coordinator_key else None
    with _unpacked(Path(kit).expanduser()) as folder:
        info = _verified(folder, pinned=pin)
        return info, _load_manifest(folder / MANIFEST_FILE)


def load_site_identity(site_dir: Path) -> SiteKit:
    """The installed kit of an initialised site folder, its manifest signature verified."""
    site = open_site_dir(site_dir)
    root = site.kit_dir
    info = read_kit_info(root) if root.is_dir() else None
    if info is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"site {site.name!r} has no site kit; run 'tessera site import-kit'")
    if info.role != "site" or info.party != site.name:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"the kit in {root} is for {info.role} {info.party!r}, "
                           f"not site {site.name!r}")
    manifest = _load_manifest(root / MANIFEST_FILE)
    manifest.site(site.name)
    # The signing and sealing keys move into the encrypted vault on first unlock
    # (client_app.custody.identity); only the node-authentication key must stay a file.
    for name in (*PUBLIC_FILES, NODE_AUTH_KEY_FILE):
        if not (root / name).is_file():
            raise TesseraError(ErrorCode.KEY_MISSING, f"site kit in {root} lacks {name}")
    return SiteKit(site=site.name, root=root, manifest=manifest)


def _load_manifest(path: Path, *, trusted_coordinator_key: str | None = None) -> Manifest:
    """:func:`privacy.manifest.load_manifest`, parsing and verifying a given text once.

    The verified manifest is a pure function of the file's text and the pinned key (and a
    frozen value), so the folders of many sites on one machine (a simulation) that hold the
    same manifest share one parse instead of each reading every site's entry again.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # load_manifest names the problem
        return load_manifest(path, trusted_coordinator_key=trusted_coordinator_key)
    return _verified_manifest(text, trusted_coordinator_key)


@functools.lru_cache(maxsize=8)
def _verified_manifest(text: str, trusted_coordinator_key: str | None) -> Manifest:
    return parse_manifest(text, trusted_coordinator_key=trusted_coordinator_key)


def _verified(kit: Path, *, pinned: str | None) -> KitInfo:
    """Check a kit folder completely; raise naming the first problem."""
    info = read_kit_info(kit)
    if info.role != "site":
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{kit} is a {info.role} kit, not a site kit")
    for name in (*PRIVATE_FILES, *PUBLIC_FILES):
        if not (kit / name).is_file():
            raise TesseraError(ErrorCode.KEY_MISSING, f"site kit {kit} lacks {name}")
    manifest = _load_manifest(kit / MANIFEST_FILE, trusted_coordinator_key=pinned)
    if manifest.name != info.federation:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{KIT_FILE} names federation {info.federation!r}, "
                           f"the manifest {manifest.name!r}")
    entry = manifest.site(info.party)
    if certificate_sha256((kit / CA_CERT_FILE).read_bytes()) != manifest.ca_sha256:
        raise TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                           f"{CA_CERT_FILE} in the kit is not the CA the manifest names")
    _check_node_auth(kit, entry)
    sealing = SealingKey(read_hex_key(kit / SEALING_KEY_FILE)).public_hex
    if sealing != entry.sealing_public_key.lower():
        raise _mismatch("sealing", entry.name)
    signing = SigningKey(read_hex_key(kit / SIGNING_KEY_FILE)).public_hex
    if signing != entry.signing_public_key.lower():
        raise _mismatch("signing", entry.name)
    return info


def _check_node_auth(kit: Path, entry: SiteEntry) -> None:
    try:
        key = serialization.load_ssh_private_key((kit / NODE_AUTH_KEY_FILE).read_bytes(), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{NODE_AUTH_KEY_FILE} is not an unencrypted OpenSSH private key"
                           ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP384R1):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"{NODE_AUTH_KEY_FILE} is not EC P-384")
    derived = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH).decode()
    listed = entry.node_auth_public_key.split()[:2]
    published = (kit / NODE_AUTH_PUB_FILE).read_text(encoding="utf-8").split()[:2]
    if derived.split()[:2] != listed or published != listed:
        raise _mismatch("node-authentication", entry.name)


def _mismatch(kind: str, site: str) -> TesseraError:
    return TesseraError(ErrorCode.FINGERPRINT_MISMATCH,
                        f"the {kind} key in the kit does not match the manifest's key "
                        f"for site {site!r}")


def _install(kit: Path, target: Path) -> None:
    """Copy the kit's files into ``target`` (replaced whole); private keys 0o600.

    The one place that writes key material to the site folder: encryption at rest
    replaces this function.
    """
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=PRIVATE_DIR, parents=True)
    staging.chmod(PRIVATE_DIR)
    for name in (*PUBLIC_FILES, *PRIVATE_FILES):
        mode = PRIVATE_FILE if name in PRIVATE_FILES else 0o644
        atomic_write_bytes(staging / name, (kit / name).read_bytes(), overwrite=False, mode=mode)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _unpacked(kit: Path) -> Iterator[Path]:
    """The kit folder itself, or a ``.tar.gz`` kit unpacked into a private temporary folder."""
    if kit.is_dir():
        yield kit
        return
    if not kit.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"no site kit at {kit}")
    with tempfile.TemporaryDirectory(prefix="tessera-kit-") as tmp:
        try:
            with tarfile.open(kit, mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"{kit.name} is not a readable kit archive ({type(exc).__name__})"
                               ) from None
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"{kit.name} must hold exactly one kit folder")
        yield tops[0]
