"""How the ``tessera`` command applies the conventions every command shares (the list is in
``docs/cli-json.md``): each group's help ends with an example, every command takes ``--kit``
with the root's meaning, and ``demo --sites N``, the old spelling of ``--num-sites N``, still
works with a warning (``--sites`` names sites everywhere else)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from typer.core import TyperOption

from common.errors import ErrorCode, TesseraError
from tessera.access import enforce_on


def group_help(text: str, example: str) -> str:
    """A command group's help: what it is for, then one example (shown by ``--help``)."""
    return f"{text}\n\nExample: {example}"


def _command_kit(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    """A command's own ``--kit``: the root's ``--kit``, given after the command (it wins)."""
    if value is not None:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "kit": value}
        enforce_on(root, kit=value)


def kit_on_every_command(group: click.Group) -> None:
    """Give every command that has no ``--kit`` of its own the root's, with one meaning.

    Click builds the command tree per invocation, so this changes only the running one; call
    it from the root's callback, before :func:`tessera.access.enforce_on`."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            kit_on_every_command(command)
        elif not any("--kit" in param.opts for param in command.params):
            command.params.append(TyperOption(
                param_decls=["--kit"], type=click.Path(path_type=Path), metavar="DIR",
                expose_value=False, callback=_command_kit,
                help="Your kit folder: the same as 'tessera --kit DIR' before the command."))


def deprecated_site_count(value: str, *, warn: Console) -> int:
    """``demo --sites N``: the old spelling of ``--num-sites N`` (a warning, then N)."""
    try:
        count = int(value)
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"--sites {value!r}: the demo names its sites itself (site-1, "
                           "site-2, ...); give their number with --num-sites N") from None
    if not 1 <= count <= 50:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"--sites {count}: the number of sites must be 1 to 50")
    warn.print(f"warning: 'demo --sites {count}' is deprecated: --sites names sites in other "
               f"commands; use --num-sites {count}", markup=False, highlight=False)
    return count
