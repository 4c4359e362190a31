"""``tessera site consent ...``, ``site models`` and ``site evaluate``: patient consent and
local evaluation of the kept global models, for the site operator.

Registered on the site CLI by :func:`register`. Every command unlocks the site vault (the
passphrase comes from ``TESSERA_SITE_PASSPHRASE``, the OS keyring or a prompt). Only
``consent history`` prints patient ids; the others print counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from client_app.custody.vault import SiteVault, unlock_vault
from client_app.governance.consent import (
    GLOBAL_SCOPE,
    grant,
    history,
    import_opt_out,
    withdraw,
    withdrawn_ids,
)
from client_app.learning.local_eval import evaluate_model, stored_models
from client_app.store.folder import open_site_dir

SiteDir = Annotated[Path, typer.Option("--site-dir", help="The site folder.")]
Actor = Annotated[str, typer.Option("--actor", help="Who records the change (required).")]
Scope = Annotated[str, typer.Option(
    "--scope", help="A study name, or '*' for every study (the default).")]
Note = Annotated[str, typer.Option("--note", help="Free-text reason (no patient data).")]
Ids = Annotated[list[str], typer.Argument(help="Patient ids, as in the site's data.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _vault(site_dir: Path) -> SiteVault:
    return unlock_vault(open_site_dir(site_dir))


def _scope_text(scope: str) -> str:
    return "every study" if scope == GLOBAL_SCOPE else f"study {scope}"


def register(app: typer.Typer, boundary) -> None:
    """Add ``consent``, ``models`` and ``evaluate`` to the site CLI."""
    consent = typer.Typer(name="consent", no_args_is_help=True, add_completion=False,
                          help="Patient consent: withdraw, grant, import opt-outs, history.")
    app.add_typer(consent, name="consent")

    @consent.command("withdraw")
    def withdraw_cmd(patient_ids: Ids, site_dir: SiteDir, actor: Actor,
                     scope: Scope = GLOBAL_SCOPE, note: Note = "") -> None:
        """Withdraw consent: the patients leave training and evaluation from the next task."""
        with boundary():
            written = withdraw(_vault(site_dir), patient_ids, actor=actor, scope=scope,
                               note=note)
        typer.echo(f"consent withdrawn for {written} patient(s) in {_scope_text(scope)}"
                   f" ({len({p.strip() for p in patient_ids}) - written} already withdrawn)")

    @consent.command("grant")
    def grant_cmd(patient_ids: Ids, site_dir: SiteDir, actor: Actor,
                  scope: Scope = GLOBAL_SCOPE, note: Note = "") -> None:
        """Grant consent again: the patients are included from the next task."""
        with boundary():
            written = grant(_vault(site_dir), patient_ids, actor=actor, scope=scope, note=note)
        typer.echo(f"consent granted for {written} patient(s) in {_scope_text(scope)}"
                   f" ({len({p.strip() for p in patient_ids}) - written} already included)")

    @consent.command("import")
    def import_cmd(
        file: Annotated[Path, typer.Argument(
            help="Opt-out list: CSV with a patient_id column, or one id per line.")],
        site_dir: SiteDir, actor: Actor, scope: Scope = GLOBAL_SCOPE,
    ) -> None:
        """Withdraw consent for everyone on an opt-out list, as one batch."""
        with boundary():
            result = import_opt_out(_vault(site_dir), file, actor=actor, scope=scope)
        typer.echo(f"batch {result.batch}: consent withdrawn for {result.withdrawn} "
                   f"patient(s) in {_scope_text(scope)} ({result.unchanged} already withdrawn)")

    @consent.command("history")
    def history_cmd(
        site_dir: SiteDir, as_json: AsJson = False,
        scope: Annotated[str | None, typer.Option(
            "--scope", help="Only this scope (a study name, or '*').")] = None,
    ) -> None:
        """Every consent change, newest first (shows patient ids: site operator only)."""
        with boundary():
            events = history(_vault(site_dir), scope=scope)
        if as_json:
            typer.echo(json.dumps([e.to_json() for e in events], indent=2))
            return
        table = Table("at", "action", "patient", "scope", "source", "actor", "note",
                      title="Consent history")
        for e in events:
            table.add_row(*(Text(v) for v in (
                e.at.isoformat(timespec="seconds"), e.action, e.patient_id, e.scope,
                e.source if e.batch is None else f"{e.source} {e.batch}", e.actor, e.note)))
        Console().print(table)

    @consent.command("status")
    def status_cmd(
        site_dir: SiteDir,
        study: Annotated[str, typer.Option("--study", help="The study name.")],
    ) -> None:
        """How many patients are withdrawn from a study (globally or for that study)."""
        with boundary():
            count = len(withdrawn_ids(_vault(site_dir), study=study))
        typer.echo(f"study {study}: {count} patient(s) withdrawn")

    @app.command("models")
    def models_cmd(site_dir: SiteDir, as_json: AsJson = False) -> None:
        """The final global models kept at this site, newest first."""
        with boundary():
            models = stored_models(_vault(site_dir))
        if as_json:
            typer.echo(json.dumps([m.to_json() for m in models], indent=2))
            return
        if not models:
            typer.echo("no global model stored yet (one is kept after a study's final round)")
            return
        table = Table(title="Models")
        table.add_column("name", no_wrap=True)
        for header in ("study", "plan hash", "round", "stored (UTC)"):
            table.add_column(header, overflow="fold")
        for m in models:
            table.add_row(*(Text(v) for v in (m.name, m.study, m.plan_hash[:12], str(m.round),
                                               m.at.strftime("%Y-%m-%d %H:%M"))))
        Console().print(table)

    @app.command("evaluate")
    def evaluate_cmd(
        site_dir: SiteDir, as_json: AsJson = False,
        model: Annotated[str | None, typer.Option(
            "--model", help="A stored model's name (default: the newest).")] = None,
    ) -> None:
        """Score a kept global model on this site's held-out rows (withdrawn patients out)."""
        with boundary():
            result = evaluate_model(_vault(site_dir), model=model)
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
            return
        doc = result.to_json()
        auc = "undefined (one class only)" if doc["auc"] is None else f"{result.auc:.4f}"
        typer.echo(f"model {result.model} (study {result.study}, plan {result.plan_hash[:12]})")
        typer.echo(f"  held-out rows {result.n} (dataset {result.dataset_version[:16]}; "
                   f"{result.excluded_by_consent} row(s) left out for consent)")
        typer.echo(f"  accuracy      {result.accuracy:.4f} at threshold {result.threshold:g}")
        typer.echo(f"  AUC           {auc}")
        typer.echo(f"  confusion     TP {result.tp}  FP {result.fp}  TN {result.tn}  "
                   f"FN {result.fn}")
