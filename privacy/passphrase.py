"""Where a site passphrase comes from: the environment, the OS keyring, or a prompt."""

from __future__ import annotations

import contextlib
import getpass
import importlib
import os
import sys

from common.errors import ErrorCode, TesseraError

PASSPHRASE_ENV_VAR = "TESSERA_SITE_PASSPHRASE"  # noqa: S105 (a variable name)
KEYRING_SERVICE = "tessera"
KEYRING_USERNAME = "site-passphrase"


def _from_keyring(service: str, username: str) -> str | None:
    try:
        keyring = importlib.import_module("keyring")
    except ImportError:
        return None
    with contextlib.suppress(Exception):  # no backend, locked, headless: not an error here
        value = keyring.get_password(service, username)
        if isinstance(value, str) and value:
            return value
    return None


def passphrase_from_environment(*, env_var: str = PASSPHRASE_ENV_VAR, prompt: bool = True,
                                use_keyring: bool = True) -> str:
    """The site passphrase: ``env_var``; else the OS keyring ("tessera"/"site-passphrase") if
    the ``keyring`` package is installed; else getpass when stdin is a TTY and ``prompt``."""
    value = os.environ.get(env_var)
    if value is not None:
        if not value.strip():
            raise TesseraError(ErrorCode.KEY_MISSING, f"{env_var} is set but empty")
        return value
    if use_keyring and (stored := _from_keyring(KEYRING_SERVICE, KEYRING_USERNAME)):
        return stored
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        entered = getpass.getpass("Site passphrase: ")
        if not entered.strip():
            raise TesseraError(ErrorCode.KEY_MISSING, "no passphrase entered")
        return entered
    raise TesseraError(ErrorCode.KEY_MISSING,
                       f"set {env_var} or run interactively to enter the site passphrase")
