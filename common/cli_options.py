"""The conventions every ``tessera`` command shares, defined once for every role's CLI: the
``--json`` switch and how a result is printed as JSON, the ``--actor`` option (default: the
login name), the ``--kit`` option of a command (the same meaning as the root's ``--kit``) and
the input-path checks that turn a bad path into a clear message instead of a traceback.

The JSON shapes of each command are listed in ``docs/cli-json.md``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import click
import typer

from common.errors import ErrorCode, TesseraError

#: The actor recorded when the login name cannot be found (no passwd entry, no variables).
FALLBACK_ACTOR = "operator"


def login_name() -> str:
    """The login name of the account running the command (``FALLBACK_ACTOR`` if none)."""
    try:
        return getpass.getuser() or FALLBACK_ACTOR
    except (KeyError, OSError):
        return FALLBACK_ACTOR


JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON document on stdout (shapes: "
                   "docs/cli-json.md); errors still go to stderr with the exit status.")]
ActorOption = Annotated[str, typer.Option(
    "--actor", default_factory=login_name, show_default=False,
    help="Who takes the decision or makes the change, as recorded (default: your login "
         "name).")]
KitOption = Annotated[Path | None, typer.Option(
    "--kit", help="Your kit folder; the same as 'tessera --kit DIR' before the command "
                  "(default: that one, or TESSERA_KIT).")]


def print_json(doc: object, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Print ``doc`` as one JSON document on stdout."""
    typer.echo(json.dumps(doc, indent=indent, sort_keys=sort_keys))


def kit_from(ctx: click.Context, kit: Path | None) -> Path | None:
    """The kit a command runs with: its own ``--kit``, else the root's ``--kit``/TESSERA_KIT."""
    chosen = kit if kit is not None else (ctx.find_root().obj or {}).get("kit")
    return Path(chosen).expanduser().absolute() if chosen else None


def input_file(path: Path, what: str) -> Path:
    """``path`` if it names a readable regular file; a clear NOT_FOUND / CONFIG_INVALID if not.

    ``what`` names the argument or option (``"LOG"``, ``"--plan"``) in the message.
    """
    if path.is_dir():
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"{what}: {path} is a directory, not a file")
    if not path.exists():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{what}: {path} not found")
    return path
