"""``tessera site consent withdraw|grant|import|history|status``: patient consent, for the
site operator.

The rules live in :mod:`client_app.governance.consent`. Every command unlocks the site vault
(the passphrase comes from ``TESSERA_SITE_PASSPHRASE``, the OS keyring or a prompt). Only
``consent history`` prints patient ids; the others print counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    NoteOption,
    SiteDirOption,
    cells,
    print_json,
    site_vault,
)
from common.cli_boundary import cli_boundary
from common.cli_options import input_file

#: The scope of every study: client_app.governance.consent.GLOBAL_SCOPE, written out so that
#: --help does not import the consent module (numpy, the database layer).
GLOBAL_SCOPE = "*"
ScopeOption = Annotated[str, typer.Option(
    "--scope", help="A study name, or '*' for every study (the default).")]
IdsArgument = Annotated[list[str], typer.Argument(help="Patient ids, as in the site's data.")]


def _scope_text(scope: str) -> str:
    return "every study" if scope == GLOBAL_SCOPE else f"study {scope}"


def _distinct(patient_ids: list[str]) -> int:
    return len({p.strip() for p in patient_ids})


def withdraw_consent(patient_ids: IdsArgument, site_dir: SiteDirOption, actor: ActorOption,
                     scope: ScopeOption = GLOBAL_SCOPE, note: NoteOption = "",
                     as_json: JsonOption = False) -> None:
    """Withdraw consent: the patients leave training and evaluation from the next task."""
    from client_app.governance.consent import withdraw  # here: --help stays light

    with cli_boundary():
        written = withdraw(site_vault(site_dir), patient_ids, actor=actor, scope=scope,
                           note=note)
    unchanged = _distinct(patient_ids) - written
    if as_json:
        print_json({"action": "withdrawn", "scope": scope, "changed": written,
                    "unchanged": unchanged, "batch": None})
        return
    typer.echo(f"consent withdrawn for {written} patient(s) in {_scope_text(scope)}"
               f" ({unchanged} already withdrawn)")


def grant_consent(patient_ids: IdsArgument, site_dir: SiteDirOption, actor: ActorOption,
                  scope: ScopeOption = GLOBAL_SCOPE, note: NoteOption = "",
                  as_json: JsonOption = False) -> None:
    """Grant consent again: the patients are included from the next task."""
    from client_app.governance.consent import grant

    with cli_boundary():
        written = grant(site_vault(site_dir), patient_ids, actor=actor, scope=scope, note=note)
    unchanged = _distinct(patient_ids) - written
    if as_json:
        print_json({"action": "granted", "scope": scope, "changed": written,
                    "unchanged": unchanged, "batch": None})
        return
    typer.echo(f"consent granted for {written} patient(s) in {_scope_text(scope)}"
               f" ({unchanged} already included)")


def import_opt_outs(
    file: Annotated[Path, typer.Argument(
        help="Opt-out list: CSV with a patient_id column, or one id per line.")],
    site_dir: SiteDirOption, actor: ActorOption, scope: ScopeOption = GLOBAL_SCOPE,
    as_json: JsonOption = False,
) -> None:
    """Withdraw consent for everyone on an opt-out list, as one batch."""
    from client_app.governance.consent import import_opt_out

    with cli_boundary():
        source = input_file(file, "FILE")  # checked before the passphrase is asked
        result = import_opt_out(site_vault(site_dir), source, actor=actor, scope=scope)
    if as_json:
        print_json({"action": "withdrawn", "scope": scope, "changed": result.withdrawn,
                    "unchanged": result.unchanged, "batch": result.batch})
        return
    typer.echo(f"batch {result.batch}: consent withdrawn for {result.withdrawn} "
               f"patient(s) in {_scope_text(scope)} ({result.unchanged} already withdrawn)")


def consent_history(
    site_dir: SiteDirOption, as_json: JsonOption = False,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="Only this scope (a study name, or '*').")] = None,
) -> None:
    """Every consent change, newest first (shows patient ids: site operator only)."""
    from client_app.governance.consent import history

    with cli_boundary():
        events = history(site_vault(site_dir), scope=scope)
    if as_json:
        print_json([e.to_json() for e in events])
        return
    table = Table("at", "action", "patient", "scope", "source", "actor", "note",
                  title="Consent history")
    for e in events:
        table.add_row(*cells(
            e.at.isoformat(timespec="seconds"), e.action, e.patient_id, e.scope,
            e.source if e.batch is None else f"{e.source} {e.batch}", e.actor, e.note))
    Console().print(table)


def consent_status(
    site_dir: SiteDirOption,
    study: Annotated[str, typer.Option("--study", help="The study name.")],
    as_json: JsonOption = False,
) -> None:
    """How many patients are withdrawn from a study (globally or for that study)."""
    from client_app.governance.consent import withdrawn_ids

    with cli_boundary():
        count = len(withdrawn_ids(site_vault(site_dir), study=study))
    if as_json:
        print_json({"study": study, "withdrawn": count})
        return
    typer.echo(f"study {study}: {count} patient(s) withdrawn")


def register(app: typer.Typer) -> None:
    """Add the ``consent`` command group to the site CLI."""
    group = typer.Typer(name="consent", no_args_is_help=True, add_completion=False,
                        help="Patient consent: withdraw, grant, import opt-outs, history.\n\n"
                        "Example: tessera site consent status --site-dir DIR --study cardio")
    group.command("withdraw")(withdraw_consent)
    group.command("grant")(grant_consent)
    group.command("import")(import_opt_outs)
    group.command("history")(consent_history)
    group.command("status")(consent_status)
    app.add_typer(group, name="consent")
