"""The one CLI error boundary: every ``tessera`` command turns errors into a line on stderr and
an exit status through :func:`cli_boundary`, never a traceback (:func:`common.errors.describe`
decides the status and the words). A bug stays a bug: what ``describe`` does not know
propagates with its traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from common.errors import describe


@contextmanager
def cli_boundary(context: str = "") -> Iterator[None]:
    """Print ``error: [context: ]message`` on stderr and exit with the error's status.

    ``context`` says what the command was doing with files (e.g. ``"cannot write OUT"``) and
    prefixes operating-system errors only; Tessera errors carry their own wording and are
    printed as they are. ``typer.Exit`` and anything ``describe`` calls a bug pass unchanged.
    """
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        described = describe(exc)
        if described is None:
            raise
        status, message = described
        prefix = f"{context}: " if context and isinstance(exc, OSError) else ""
        typer.echo(f"error: {prefix}{message}", err=True)
        raise typer.Exit(status) from None
