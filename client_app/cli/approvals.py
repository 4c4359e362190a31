"""``tessera site approve|reject|revoke|approvals``: the site's decisions on study plans, by
plan hash. The decisions live in :class:`client_app.store.site_store.SiteStore`; the agent
runs only approved plans. Approving and revoking go through
:func:`client_app.governance.studies.decide`, which approves only a plan the site received
and whose privacy terms it accepts, and revokes only an approved plan."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    NoteOption,
    PlanHashArgument,
    SiteDirOption,
    cells,
    checked_plan_hash,
    print_json,
    site_store,
)
from common.cli_boundary import cli_boundary


def approve(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption, note: NoteOption = "", as_json: JsonOption = False,
) -> None:
    """Approve a study plan received at this site (``site study receive``) by its hash (64
    hex characters); the agent then runs it.

    The plan is approved only if its privacy terms fit the site's (its delta not above the
    site's; differential privacy on unless the site allows non-private studies)."""
    from client_app.governance.studies import decide  # here: --help stays light
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        digest = checked_plan_hash(plan_hash)
        decide(open_site_dir(site_dir), digest, "approved", actor=actor, note=note)
    _decided(digest, "approved", actor, as_json=as_json)


def reject(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption, note: NoteOption = "", as_json: JsonOption = False,
) -> None:
    """Reject a study plan by its hash (64 hex characters)."""
    with site_store(site_dir) as store:
        digest = checked_plan_hash(plan_hash)
        store.reject(digest, actor=actor, note=note)
    _decided(digest, "rejected", actor, as_json=as_json)


def revoke(
    plan_hash: PlanHashArgument, site_dir: SiteDirOption,
    actor: ActorOption, note: NoteOption = "", as_json: JsonOption = False,
) -> None:
    """Revoke an earlier approval; the agent refuses further rounds of that plan."""
    from client_app.governance.studies import decide  # here: --help stays light
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        digest = checked_plan_hash(plan_hash)
        decide(open_site_dir(site_dir), digest, "revoked", actor=actor, note=note)
    _decided(digest, "revoked", actor, as_json=as_json)


def _decided(digest: str, decision: str, actor: str, *, as_json: bool) -> None:
    if as_json:
        print_json({"plan_hash": digest, "decision": decision, "actor": actor})
    else:
        typer.echo(f"{decision} plan {digest}")


def list_approvals(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """List every approval decision, oldest first (the latest per plan wins)."""
    with site_store(site_dir) as store:
        records = store.approvals()
    if as_json:
        print_json([r.to_json() for r in records])
        return
    table = Table("at", "decision", "plan hash", "actor", "note", title="Approvals")
    for r in records:
        table.add_row(
            *cells(r.at.isoformat(timespec="seconds"), r.decision, r.plan_hash, r.actor, r.note)
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``approve``, ``reject``, ``revoke`` and ``approvals`` to the site CLI."""
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("revoke")(revoke)
    app.command("approvals")(list_approvals)
