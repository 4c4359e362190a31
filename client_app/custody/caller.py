"""Who is calling, proven by a kit, and which access policy applies.

The one home for both doors: the ``tessera`` CLI (``tessera/access.py``) and the desktop app
(``client_app/facade.py``).

**Identity.** A kit's ``kit.toml`` counts only as far as the kit's own keys prove it against
the signed manifest inside the kit (:func:`privacy.kit_identity.verify_kit`); its kind maps to a
policy role (:data:`common.roles.KIT_ROLES`). With a site folder, the kit installed in it
(``<site>/kit``) is the caller's unless another kit is given; a folder without an installed kit
counts as its own site operator (development, and a site before ``tessera site import-kit``:
whoever can write the folder controls it anyway). A site kit acts only on its own site's folder
(:func:`require_own_folder`).

**Policy.** The bundled ``tessera/roles.toml``, unless an override is named (a path, or the
``TESSERA_POLICY`` environment variable). An override is honoured only if the federation's
coordinator signed it (:mod:`privacy.signed_policy`), checked against the coordinator key in
the signed manifest of the caller's kit; otherwise it is refused, never silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from client_app.custody.kit import KIT_DIR
from client_app.store.folder import open_site_dir
from common.errors import ErrorCode, TesseraError
from common.roles import Policy, Role, kit_role, parse_policy
from privacy.kit_identity import verify_kit
from privacy.manifest import KIT_FILE, Manifest
from privacy.signed_policy import verified_policy_text

POLICY_ENV_VAR = "TESSERA_POLICY"
BUNDLED_POLICY = "roles.toml"


@dataclass(frozen=True)
class Identity:
    """The caller: role, party, where that came from and the kit that proved it."""

    role: Role
    party: str
    source: str
    kit: Path | None = None

    def describe(self) -> str:
        """``auditor 'auditor' (kit /x/auditor-kit)``: for messages; nothing secret."""
        return f"{self.role.value} '{self.party}' ({self.source})"


def kit_identity(kit: Path, *, source: str) -> Identity:
    """The identity kit folder ``kit`` proves (errors name the kit and what does not match)."""
    verified = verify_kit(kit)
    return Identity(role=kit_role(verified.role), party=verified.party, source=source, kit=kit)


def caller_identity(*, kit: Path | None, site_dir: Path | None) -> Identity | None:
    """Who calls: ``kit``, else the kit installed in ``site_dir``, else the folder's own site
    operator; None with neither. Does not check folder ownership (:func:`require_own_folder`).
    """
    if kit is not None:
        kit = Path(kit).expanduser().absolute()
        return kit_identity(kit, source=f"kit {kit}")
    if site_dir is None:
        return None
    site_dir = Path(site_dir).expanduser().absolute()
    installed = site_dir / KIT_DIR
    if (installed / KIT_FILE).is_file():
        identity = kit_identity(installed, source=f"the kit installed in {site_dir}")
        if identity.role is not Role.SITE_OPERATOR:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"the kit installed in {site_dir} is a {identity.role.value} "
                               "kit; a site folder holds its own site's kit")
        return identity
    try:
        party = _folder_site(site_dir) or site_dir.name
    except TesseraError:
        party = site_dir.name  # the command itself will say what is wrong with the folder
    return Identity(role=Role.SITE_OPERATOR, party=party,
                    source=f"site folder {site_dir} without a kit")


def require_own_folder(identity: Identity, site_dir: Path | None) -> None:
    """PERMISSION_DENIED if a site's kit is used on another site's (initialised) folder."""
    if site_dir is None or identity.role is not Role.SITE_OPERATOR or identity.kit is None:
        return
    owner = _folder_site(Path(site_dir).expanduser().absolute())
    if owner is not None and owner != identity.party:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"the kit of site {identity.party!r} may not act on site folder "
                           f"{site_dir}, which belongs to site {owner!r}")


def load_access_policy(path: Path | None = None, *, kit: Path | None = None,
                       site_dir: Path | None = None) -> Policy:
    """The access policy in force for a caller with ``kit`` (or ``site_dir``'s kit).

    ``path``, else ``$TESSERA_POLICY``, else the bundled roles.toml. An override must carry
    the coordinator's signature, checked against the manifest of the caller's kit: without
    such a kit, or with a missing, foreign or stale signature, it is refused.
    """
    chosen, source = (Path(path), "access policy") if path is not None else (None, "")
    if chosen is None and os.environ.get(POLICY_ENV_VAR):
        chosen, source = Path(os.environ[POLICY_ENV_VAR]), POLICY_ENV_VAR
    if chosen is None:
        return parse_policy(_bundled_text())
    manifest = _caller_manifest(kit=kit, site_dir=site_dir)
    if manifest is None:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{source}: an access policy override is honoured only with the "
                           "signature of the federation's coordinator, checked against the "
                           "manifest in your kit; run with your kit (or a site folder holding "
                           "one), or unset the override")
    text = verified_policy_text(chosen, manifest, source=source)
    try:
        return parse_policy(text)
    except TesseraError as err:
        raise TesseraError(err.code, f"{err.message} ({chosen})") from None


def _caller_manifest(*, kit: Path | None, site_dir: Path | None) -> Manifest | None:
    if kit is not None:
        return verify_kit(Path(kit).expanduser().absolute()).manifest
    if site_dir is not None:
        installed = Path(site_dir).expanduser().absolute() / KIT_DIR
        if (installed / KIT_FILE).is_file():
            return verify_kit(installed).manifest
    return None


def _bundled_text() -> str:
    try:
        return resources.files("tessera").joinpath(BUNDLED_POLICY).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ModuleNotFoundError) as exc:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"the bundled access policy {BUNDLED_POLICY} cannot be read "
                           f"({type(exc).__name__})") from None


def _folder_site(site_dir: Path) -> str | None:
    """The site an initialised folder belongs to; None for a folder not yet initialised."""
    if not (site_dir / "site.toml").is_file():
        return None
    return open_site_dir(site_dir).name
