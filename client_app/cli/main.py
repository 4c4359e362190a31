"""``tessera site ...``: the site operator's commands over a site folder and its store.

Commands only translate: they open the site folder, call :class:`SiteStore` and print.
A :class:`TesseraError` becomes ``error: <message>`` on stderr and the error's exit status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from client_app.cli import consent as cli_consent
from client_app.cli import datasets as cli_datasets
from client_app.cli import sharing as cli_sharing
from client_app.cli import studies as cli_studies
from client_app.cli import vault as cli_vault
from client_app.custody.kit import import_site_kit
from client_app.custody.vault import open_or_create_vault
from client_app.store.folder import init_site_dir, open_site_dir
from client_app.store.site_store import SiteStore
from common.errors import ErrorCode, TesseraError
from common.settings import DEFAULT_CEILING
from privacy.passphrase import passphrase_from_environment

app = typer.Typer(
    name="site",
    help="Manage a hospital's site folder: approvals, privacy budget and events.",
    no_args_is_help=True,
    add_completion=False,
)

_PLAN_HASH = re.compile(r"^[0-9a-fA-F]{64}$")

SiteDirOption = Annotated[
    Path, typer.Option("--site-dir", help="The site folder (WORKDIR/sites/<site>).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ActorOption = Annotated[str, typer.Option("--actor", help="Who takes the decision.")]
NoteOption = Annotated[str, typer.Option("--note", help="Free-text reason (no patient data).")]
PlanHashArgument = Annotated[str, typer.Argument(help="The plan hash (64 hex characters).")]


@contextmanager
def _boundary() -> Iterator[None]:
    """Turn errors into ``error: ...`` on stderr and an exit status; never a traceback."""
    try:
        yield
    except TesseraError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(err.exit_code) from None
    except SQLAlchemyError as err:
        internal = TesseraError(ErrorCode.INTERNAL, "")
        typer.echo(f"error: the site database cannot be used ({type(err).__name__})", err=True)
        raise typer.Exit(internal.exit_code) from None
    except OSError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(TesseraError(ErrorCode.INTERNAL, "").exit_code) from None


@contextmanager
def _site_store(site_dir: Path) -> Iterator[SiteStore]:
    with _boundary(), SiteStore.open(open_site_dir(site_dir)) as store:
        yield store


def _plan_hash(value: str) -> str:
    if not _PLAN_HASH.fullmatch(value):
        raise TesseraError(
            ErrorCode.PLAN_INVALID,
            f"PLAN_HASH must be 64 hexadecimal characters (got {len(value)} characters"
            f"{'' if value.isalnum() else ', some not hexadecimal'})",
        )
    return value.lower()


def _cells(*values: str) -> list[Text]:
    """Table cells as plain text (operator notes must not be read as rich markup)."""
    return [Text(v) for v in values]


def _print_json(rows: list[dict[str, object]]) -> None:
    typer.echo(json.dumps(rows, indent=2))


@app.command()
def init(
    site_dir: SiteDirOption,
    name: Annotated[str, typer.Option("--name", help="The site name (letters, digits, _.-).")],
    ceiling: Annotated[
        float, typer.Option("--ceiling", help="Privacy ceiling: epsilon per dataset.")
    ] = DEFAULT_CEILING,
) -> None:
    """Create a site folder with its store and keystore (idempotent for the same name)."""
    with _boundary():
        site = init_site_dir(site_dir, name=name, ceiling=ceiling)
        open_or_create_vault(site, passphrase_from_environment())
        with SiteStore.open(site) as store:
            current = store.ceiling()
    typer.echo(f"site {site.name} ready in {site.root} (privacy ceiling {current:g})")


@app.command()
def approve(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption = "operator", note: NoteOption = "",
) -> None:
    """Approve a study plan by its hash (64 hex characters); the agent then runs it."""
    with _site_store(site_dir) as store:
        store.approve(_plan_hash(plan_hash), actor=actor, note=note)
    typer.echo(f"approved plan {plan_hash.lower()}")


@app.command()
def reject(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption = "operator", note: NoteOption = "",
) -> None:
    """Reject a study plan by its hash (64 hex characters)."""
    with _site_store(site_dir) as store:
        store.reject(_plan_hash(plan_hash), actor=actor, note=note)
    typer.echo(f"rejected plan {plan_hash.lower()}")


@app.command()
def revoke(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption = "operator", note: NoteOption = "",
) -> None:
    """Revoke an earlier approval; the agent refuses further rounds of that plan."""
    with _site_store(site_dir) as store:
        store.revoke(_plan_hash(plan_hash), actor=actor, note=note)
    typer.echo(f"revoked plan {plan_hash.lower()}")


@app.command()
def approvals(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """List every approval decision, oldest first (the latest per plan wins)."""
    with _site_store(site_dir) as store:
        records = store.approvals()
    if as_json:
        _print_json([r.to_json() for r in records])
        return
    table = Table("at", "decision", "plan hash", "actor", "note", title="Approvals")
    for r in records:
        table.add_row(
            *_cells(r.at.isoformat(timespec="seconds"), r.decision, r.plan_hash, r.actor, r.note)
        )
    Console().print(table)


@app.command()
def budget(
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only this dataset id.")
    ] = None,
) -> None:
    """Show the privacy ledger: every DP-SGD run and the cumulative epsilon per dataset."""
    with _site_store(site_dir) as store:
        entries = store.ledger(dataset_id=dataset)
        ceiling = store.ceiling()
    if as_json:
        _print_json([e.to_json() for e in entries])
        return
    table = Table(
        title="Privacy ledger", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
    )
    for header in ("date (UTC)", "study, round", "dataset"):
        table.add_column(header, overflow="fold")
    for header in ("noise", "rate", "steps", "eps run", "eps total"):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for e in entries:
        table.add_row(*_cells(
            e.at.strftime("%Y-%m-%d"), f"{e.study} r{e.round}",
            f"{e.dataset_id}@{e.dataset_version}", f"{e.noise_multiplier:.3g}",
            f"{e.sample_rate:.3g}", str(e.steps), f"{e.epsilon:.3f}",
            f"{e.epsilon_cumulative:.3f}",
        ))
    console = Console()
    console.print(table)
    console.print(f"privacy ceiling: {ceiling:g} (epsilon per dataset)")
    latest = {e.dataset_id: e for e in entries}
    for dataset_id, e in sorted(latest.items()):
        console.print(
            f"dataset {dataset_id}: cumulative epsilon {e.epsilon_cumulative:.3f} "
            f"(delta {e.delta:.0e}), remaining {max(ceiling - e.epsilon_cumulative, 0.0):.3f}",
            markup=False,
        )
    if not latest:
        console.print("no DP-SGD runs recorded yet")


@app.command()
def ceiling(
    site_dir: SiteDirOption,
    value: Annotated[
        float | None, typer.Argument(help="New ceiling (epsilon per dataset); omit to show.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm raising the ceiling.")] = False,
    actor: ActorOption = "operator",
) -> None:
    """Show the privacy ceiling, or set it to VALUE (epsilon per dataset); raising needs --yes."""
    with _site_store(site_dir) as store:
        before = store.ceiling()
        if value is not None:
            try:
                store.set_ceiling(value, actor=actor, confirm_raise=yes)
            except TesseraError as err:
                if err.code is ErrorCode.PERMISSION_DENIED:
                    raise TesseraError(err.code, f"{err.message}; pass --yes") from None
                raise
        after = store.ceiling()
    if value is None:
        typer.echo(f"privacy ceiling: {after:g} (epsilon per dataset)")
    else:
        typer.echo(f"privacy ceiling: {after:g} (was {before:g})")


@app.command()
def events(
    site_dir: SiteDirOption,
    as_json: JsonOption = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Only events of this kind.")] = None,
) -> None:
    """List site events (the input of the audit trail), oldest first."""
    with _site_store(site_dir) as store:
        records = store.events(kind=kind)
    if as_json:
        _print_json([r.to_json() for r in records])
        return
    table = Table("id", "at", "kind", "plan hash", "details", title="Site events")
    for r in records:
        table.add_row(*_cells(
            str(r.id), r.at.isoformat(timespec="seconds"), r.kind, (r.plan_hash or "")[:12],
            json.dumps(r.details, sort_keys=True),
        ))
    Console().print(table)


@app.command("import-kit")
def import_kit(
    kit: Annotated[Path, typer.Argument(
        help="The site kit from the coordinator (folder or .tar.gz).")],
    site_dir: SiteDirOption,
    coordinator_key: Annotated[str | None, typer.Option(
        "--coordinator-key",
        help="Refuse unless the manifest is signed by this coordinator key (hex).")] = None,
) -> None:
    """Verify a site kit (signature, keys) and install it into the site folder."""
    with _boundary():
        identity = import_site_kit(kit, site_dir, expected_coordinator_key=coordinator_key)
    manifest = identity.manifest
    typer.echo(f"site {identity.site} of federation {manifest.name} imported into "
               f"{identity.root.parent}")
    typer.echo(f"  superlink       {identity.entry.superlink_address}:{manifest.superlink_port}")
    typer.echo(f"  coordinator key {manifest.coordinator_signing_key}")
    typer.echo(f"  sites           {', '.join(manifest.site_names)}")


cli_vault.register(app, _boundary)
cli_datasets.register(app, _boundary)
cli_consent.register(app, _boundary)
cli_studies.register(app, _boundary)
cli_sharing.register(app, _boundary)
