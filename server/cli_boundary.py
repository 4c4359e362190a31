"""The coordinator CLIs' boundary: errors become ``error: ...`` and an exit status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from common.errors import ErrorCode, TesseraError


@contextmanager
def boundary(io_problem: str = "") -> Iterator[None]:
    """Print errors plainly (never a traceback) and exit with the error's status."""
    try:
        yield
    except TesseraError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(err.exit_code) from None
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        prefix = f"{io_problem}: " if io_problem else ""
        typer.echo(f"error: {prefix}{err.strerror or type(err).__name__}{where}", err=True)
        raise typer.Exit(TesseraError(ErrorCode.INTERNAL, "").exit_code) from None
