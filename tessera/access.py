"""Who runs a command, whether the access policy lets them, and the record of each denial.

Identity comes from the kit a command runs with, in this order (the rules themselves, and the
proof a kit must give, live in :mod:`client_app.custody.caller`):

1. The kit the command itself takes (its own ``--kit DIR`` option, as in
   ``tessera federation he-context``), else ``tessera --kit DIR ...`` (a global option,
   before the command) or the ``TESSERA_KIT`` environment variable. ``DIR/kit.toml`` names a
   role and party, and counts only if the kit's private keys are the ones the signed manifest
   in ``DIR`` gives to that party: an edited ``kit.toml`` is refused.
2. For commands that take ``--site-dir DIR``: the kit installed in the site folder
   (``DIR/kit``), checked the same way. A site folder *without* an installed kit counts as its
   own site operator: that is the development set-up (``tessera site init`` before or
   without a federation) and the way a site bootstraps before ``tessera site import-kit``.
   Whoever can write the folder controls it anyway; a provisioned site is identified by its
   kit. A site's kit never acts on another site's folder.
3. Commands the policy lists under ``[without_kit]`` (``federation init``, which creates the
   coordinator's kit): the role named there.
4. Otherwise no identity: only commands granted to every role run; anything else is denied
   with a message saying how to provide a kit.

Kit roles map to policy roles (:data:`common.roles.KIT_ROLES`): ``coordinator`` →
coordinator, ``site`` → site_operator, ``auditor`` → auditor. The policy is
``tessera/roles.toml``; ``TESSERA_POLICY`` may name another file only if the federation's
coordinator signed it (``<file>.sig``, checked against the manifest of the caller's kit);
an unsigned or foreign override is refused.

Each denial is recorded as a ``role_denied`` event (details: command, role, party; never
arguments or secrets): in the site store when a site folder is involved, otherwise as one
JSON line appended to ``<kit>/denials.jsonl``. A caller without any kit or site folder leaves
nothing to record in; the denial is only printed.

The CLI hook (:func:`enforce_on`) wraps every leaf command of the click tree, so the check
runs after click has parsed the arguments (``--help`` and usage errors are click's, for
everyone) and before the command body.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from client_app.store.events import SiteEvent
from common.errors import ErrorCode, TesseraError
from common.roles import Policy, normalise_command
from privacy.manifest import KIT_FILE

if TYPE_CHECKING:  # the kit checks load the site store (SQL): only when a command runs
    from client_app.custody.caller import POLICY_ENV_VAR, Identity

__all__ = ["DENIALS_FILE", "DENIAL_EVENT", "KIT_ENV_VAR", "POLICY_ENV_VAR", "Identity",
           "authorize", "enforce_on", "load_policy", "record_denial", "resolve_identity"]

KIT_ENV_VAR = "TESSERA_KIT"
DENIAL_EVENT = SiteEvent.ROLE_DENIED
DENIALS_FILE = "denials.jsonl"
SITE_DIR_OPTION = "--site-dir"
KIT_OPTION = "--kit"
_KIT_META = "tessera.access.kit"
_GUARDED = "__tessera_access_guarded__"



def __getattr__(name: str) -> Any:
    """``Identity`` and ``POLICY_ENV_VAR``, re-exported from the kit checks on first use."""
    if name in ("Identity", "POLICY_ENV_VAR"):
        from client_app.custody import caller

        return getattr(caller, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_policy(path: Path | None = None, *, kit: Path | None = None,
                site_dir: Path | None = None) -> Policy:
    """The access policy in force (bundled, or a coordinator-signed override): one loader
    for the CLI and the desktop app (:func:`client_app.custody.caller.load_access_policy`)."""
    from client_app.custody.caller import load_access_policy

    return load_access_policy(path, kit=kit, site_dir=site_dir)


def resolve_identity(command: str, *, kit: Path | None, site_dir: Path | None,
                     policy: Policy) -> Identity | None:
    """Who runs ``command`` (see the module docstring for the order); None if nobody."""
    from client_app.custody.caller import Identity, caller_identity, kit_identity

    if kit is not None:
        kit = Path(kit).expanduser().absolute()
        try:
            return kit_identity(kit, source=f"kit {kit}")
        except TesseraError as err:
            raise TesseraError(err.code, f"--kit / {KIT_ENV_VAR}: {err.message}") from None
    identity = caller_identity(kit=None, site_dir=site_dir)
    if identity is not None:
        return identity
    role = policy.role_without_kit(command)
    if role is not None:
        return Identity(role=role, party=role.value,
                        source=f"no kit: '{normalise_command(command)}' creates one")
    return None


def authorize(command: str, *, kit: Path | None = None, site_dir: Path | None = None,
              policy: Policy | None = None) -> Identity | None:
    """Check that the caller may run ``command``; record and raise PERMISSION_DENIED if not.

    Returns the caller's identity (None for a command granted to everyone, run without one).
    """
    from client_app.custody.caller import require_own_folder

    policy = policy or load_policy(kit=kit, site_dir=site_dir)
    command = normalise_command(command)
    identity = resolve_identity(command, kit=kit, site_dir=site_dir, policy=policy)
    if identity is None:
        policy.require_known(command)
        if policy.granted_to_everyone(command):
            return None
        raise TesseraError(
            ErrorCode.PERMISSION_DENIED,
            f"'{command}' needs to know who you are: run it with your kit, "
            f"'tessera --kit DIR {command} ...', or set {KIT_ENV_VAR}=DIR "
            f"(DIR is the kit folder holding {KIT_FILE})")
    try:
        require_own_folder(identity, site_dir)
        policy.check(command, identity.role)
    except TesseraError as err:
        note = record_denial(command, identity, site_dir=site_dir)
        raise TesseraError(err.code, f"{err.message}; you are {identity.describe()}{note}"
                           ) from None
    return identity


def record_denial(command: str, identity: Identity, *, site_dir: Path | None) -> str:
    """Record a ``role_denied`` event; returns "" or a note saying why it was not recorded."""
    from sqlalchemy.exc import SQLAlchemyError  # the database layer: only on a denial

    from client_app.store.folder import open_site_dir
    from client_app.store.site_store import SiteStore

    details: dict[str, object] = {"command": command, "role": identity.role.value,
                                  "party": identity.party}
    try:
        if site_dir is not None and (Path(site_dir) / "site.toml").is_file():
            with SiteStore.open(open_site_dir(site_dir)) as store:
                store.record_event(DENIAL_EVENT, details=details)
            return ""
        if identity.kit is not None:
            _append_line(identity.kit / DENIALS_FILE,
                         {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                          "kind": DENIAL_EVENT, **details})
            return ""
    except (TesseraError, OSError, SQLAlchemyError) as exc:
        return f" (the denial could not be recorded: {type(exc).__name__})"
    return ""


def enforce_on(ctx: click.Context, *, kit: Path | None) -> None:
    """Make every leaf command under ``ctx.command`` check the policy before it runs.

    Call from the top-level group's callback: click builds the command tree per invocation,
    so the wrapping is local to this one. ``kit`` is the global ``--kit`` / ``TESSERA_KIT``.
    """
    ctx.meta[_KIT_META] = kit
    if isinstance(ctx.command, click.Group):
        _guard_group(ctx.command, ())


def _guard_group(group: click.Group, prefix: tuple[str, ...]) -> None:
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            _guard_group(command, path)
        elif command.callback is not None and not getattr(command.callback, _GUARDED, False):
            command.callback = _guarded(command.callback, " ".join(path))


def _guarded(callback: Callable[..., Any], command: str) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        kit = _path_argument(ctx, kwargs, KIT_OPTION) or ctx.meta.get(_KIT_META)
        site_dir = _path_argument(ctx, kwargs, SITE_DIR_OPTION)
        try:
            authorize(command, kit=kit, site_dir=site_dir)
        except TesseraError as err:
            click.echo(f"error: {err.message}", err=True)
            raise click.exceptions.Exit(err.exit_code) from None
        return callback(*args, **kwargs)

    setattr(run, _GUARDED, True)
    return run


def _path_argument(ctx: click.Context, kwargs: dict[str, Any], option: str) -> Path | None:
    """The value the running command got for ``option`` (None if it has no such option)."""
    for param in ctx.command.params:
        if isinstance(param, click.Option) and option in param.opts:
            value = kwargs.get(param.name or "")
            return Path(value) if value else None
    return None


def _append_line(path: Path, record: dict[str, object]) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
