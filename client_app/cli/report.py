"""``tessera site report``: the participation report of one study for the site's ethics board
and data-protection officer (content in :mod:`client_app.governance.participation`, layout in
:mod:`client_app.governance.report_render`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client_app.cli.options import JsonOption, SiteDirOption, print_json
from common.cli_boundary import cli_boundary


def report(
    site_dir: SiteDirOption,
    study: Annotated[str, typer.Option("--study", help="The study's name or plan hash.")],
    out: Annotated[Path, typer.Option("--out", help="The report file: .pdf or .html.")],
    as_json: JsonOption = False,
) -> None:
    """Write what this site contributed to a study: approval, what left the site, privacy
    spent against the ceiling, consent, the model at this site, the audit log's check."""
    from client_app.governance.participation import build_report  # here: --help stays light
    from client_app.governance.report_render import write_report
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        site = open_site_dir(site_dir)
        written = write_report(build_report(site, study), out)
    if as_json:
        print_json({"study": study, "report": str(written)})
        return
    typer.echo(f"participation report on {study} written to {written}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the site CLI."""
    app.command("report")(report)
