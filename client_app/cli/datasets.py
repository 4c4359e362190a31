"""``tessera site dataset check|register|list|show`` and ``tessera site add-data``: checking
data files and registering them as dataset versions.

The checks, the policy and the versions are :mod:`client_app.datasets.versions`' (the desktop
app calls the same functions). ``check`` exits 0 when the default policy would register the
file as it is (no issue, or only issues it keeps: outliers, label balance) and 3 (DATA_INVALID)
otherwise, and prints the same issue counts ``show`` prints for a registered version;
``register`` validates before it asks for the passphrase, so a refused file needs none and
changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from client_app.cli.options import (
    ActorOption,
    JsonOption,
    SiteDirOption,
    cells,
    print_json,
    site_vault_with_kit,
)
from client_app.datasets.validation import (
    POLICY_CHOICES,
    POLICY_FIELD,
    Policy,
    ValidationReport,
)
from common.cli_boundary import cli_boundary
from common.cli_options import input_file
from common.errors import ErrorCode, TesseraError, exit_status

if TYPE_CHECKING:
    from client_app.datasets.versions import DatasetVersion
    from client_app.store.folder import SiteDir

FileArgument = Annotated[Path, typer.Argument(help="The data file (CSV or Parquet).")]
PlanOption = Annotated[Path, typer.Option("--plan", help="The study plan (TOML) to check against.")]
NameOption = Annotated[str | None, typer.Option(
    "--name", help="Dataset name (default: the plan's dataset name).")]


def _choice(field: str, what: str) -> object:
    return typer.Option(f"--{field.replace('_', '-')}",
                        help=f"{what}: {' | '.join(POLICY_CHOICES[field])}.")


def _version_line(v: DatasetVersion) -> str:
    applied = v.report.get("applied", {})
    done = ", ".join(f"{key.replace('_', ' ')} {applied[key]}"
                     for key in ("dropped_rows", "imputed_values", "clipped_values")
                     if applied.get(key))
    parent = v.parent_version[:12] if v.parent_version else "none"
    return (f"dataset {v.dataset}: version {v.version[:12]} (parent {parent}), {v.rows} rows"
            f"{'; ' + done if done else ''}")


def _register(site_dir: Path, data_file: Path, plan_file: Path, *, policy: Policy, actor: str,
              name: str | None) -> DatasetVersion:
    from client_app.datasets.versions import prepare_dataset, store_dataset
    from client_app.store.folder import open_site_dir
    from common.plan import load_plan

    site = open_site_dir(site_dir)
    prepared = prepare_dataset(data_file, plan=load_plan(input_file(plan_file, "--plan")),
                               policy=policy)
    return store_dataset(site_vault_with_kit(site), prepared, actor=actor, name=name)


def _legacy_names(site: SiteDir) -> list[str]:
    return sorted(p.stem for p in site.data_dir.glob("*.enc"))


def _counts_text(counts: dict[str, int]) -> str:
    """Issue counts as ``check`` and ``show`` both print them (affected rows or cells)."""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"


@dataclass(frozen=True)
class DefaultPolicyVerdict:
    """What registering with the default policy (``add-data``) would do with a file."""

    accepts: bool
    kept: tuple[str, ...]  # issue kinds it registers as they are (outliers, label balance)
    refused: tuple[str, ...]  # issue kinds it refuses

    def to_json(self) -> dict[str, object]:
        return {"accepts": self.accepts, "kept": list(self.kept), "refused": list(self.refused)}


def default_policy_verdict(report: ValidationReport) -> DefaultPolicyVerdict:
    """Whether the default policy registers ``report``'s file unchanged, and why (not)."""
    policy = Policy()
    decisions = {i.kind: policy.decision(i.kind) if i.kind in POLICY_FIELD else "keep"
                 for i in report.issues if not i.blocking}
    kept = tuple(sorted(k for k, d in decisions.items() if d == "keep"))
    refused = tuple(sorted(k for k, d in decisions.items() if d == "refuse"))
    accepts = not report.blocking and set(decisions.values()) <= {"keep"}
    return DefaultPolicyVerdict(accepts, kept, refused)


def check(
    data_file: FileArgument, plan: PlanOption, as_json: JsonOption = False,
    site_dir: Annotated[Path | None, typer.Option(
        "--site-dir", help="Your site folder (only says who runs the check).")] = None,
) -> None:
    """Validate a file against a study plan and print the report; changes nothing. Exits 0
    when the default policy would register the file as it is (no issue, or only issues it
    keeps, such as outliers), 3 otherwise."""
    from client_app.datasets.versions import check_dataset  # here: --help stays light
    from common.plan import load_plan

    with cli_boundary():
        report = check_dataset(data_file, plan=load_plan(input_file(plan, "--plan")))
    verdict = default_policy_verdict(report)
    if as_json:
        print_json({**report.to_json(), "issue_counts": report.issue_counts(),
                    "default_policy": verdict.to_json()})
    else:
        typer.echo(report.to_text())
        typer.echo(f"  issue counts: {_counts_text(report.issue_counts())}")
        if verdict.accepts and not report.ok:
            typer.echo(f"the default policy keeps these ({', '.join(verdict.kept)}): "
                       "'tessera site add-data' registers the file as it is")
        elif report.blocking:
            typer.echo("blocking issues: no policy can register this file; fix it and check "
                       "again")
        else:
            typer.echo(f"the default policy refuses {', '.join(verdict.refused)}: "
                       "choose what to do with 'tessera site dataset register' (--missing, "
                       "--out-of-range, --outliers, --duplicates)")
    if not verdict.accepts:
        raise typer.Exit(exit_status(ErrorCode.DATA_INVALID))


def register_file(
    data_file: FileArgument, plan: PlanOption, site_dir: SiteDirOption, actor: ActorOption,
    name: NameOption = None,
    missing: Annotated[str, _choice("missing", "Missing values")] = "refuse",
    out_of_range: Annotated[str, _choice("out_of_range", "Out-of-range values")] = "refuse",
    outliers: Annotated[str, _choice("outliers", "Outliers")] = "keep",
    duplicates: Annotated[str, _choice("duplicates", "Duplicate rows and ids")] = "refuse",
    as_json: JsonOption = False,
) -> None:
    """Validate a file, apply the policy and store the result as a new dataset version."""
    with cli_boundary():
        policy = Policy(missing=missing, out_of_range=out_of_range,  # type: ignore[arg-type]
                        outliers=outliers, duplicates=duplicates)  # type: ignore[arg-type]
        version = _register(site_dir, data_file, plan, policy=policy, actor=actor, name=name)
    typer.echo(json.dumps(version.to_json(), indent=2) if as_json else _version_line(version))


def list_datasets(site_dir: SiteDirOption, as_json: JsonOption = False) -> None:
    """List the site's datasets with their current version."""
    from client_app.datasets.versions import dataset_versions
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        site = open_site_dir(site_dir)
        versions = dataset_versions(site)
    by_name: dict[str, list[DatasetVersion]] = {}
    for v in versions:
        by_name.setdefault(v.dataset, []).append(v)
    legacy = [n for n in _legacy_names(site) if n not in by_name]
    if as_json:
        rows: list[dict[str, object]] = [
            {"dataset": n, "versions": len(vs), "current": vs[-1].to_json(), "legacy": False}
            for n, vs in sorted(by_name.items())]
        rows += [{"dataset": n, "versions": 0, "current": None, "legacy": True}
                 for n in legacy]
        print_json(rows)
        return
    table = Table("dataset", "current version", "rows", "versions", "registered (UTC)",
                  "by", title="Datasets")
    for n, vs in sorted(by_name.items()):
        c = vs[-1]
        table.add_row(*cells(n, c.version[:12], str(c.rows), str(len(vs)),
                             c.at.strftime("%Y-%m-%d %H:%M"), c.actor))
    for n in legacy:
        table.add_row(*cells(n, "legacy file", "", "0", "", ""))
    Console().print(table)


def show(
    name: Annotated[str, typer.Argument(help="The dataset name.")],
    site_dir: SiteDirOption, as_json: JsonOption = False,
) -> None:
    """Show every version of a dataset, oldest first, with its lineage and validation."""
    from client_app.datasets.versions import dataset_versions
    from client_app.store.folder import open_site_dir

    with cli_boundary():
        versions = dataset_versions(open_site_dir(site_dir), name)
        if not versions:
            raise TesseraError(ErrorCode.NOT_FOUND, f"no versions of dataset {name!r}")
    if as_json:
        print_json([v.to_json() for v in versions])
        return
    for v in versions:
        typer.echo(_version_line(v))
        report = v.report
        typer.echo(f"  registered {v.at.isoformat(timespec='seconds')} by {v.actor}")
        typer.echo(f"  source {v.source_name} ({v.source_format}, sha256 "
                   f"{v.source_hash[:12]}), plan {(v.plan_hash or 'none')[:12]}")
        typer.echo(f"  policy {', '.join(f'{k}={x}' for k, x in v.policy.items())}")
        typer.echo(f"  issue counts: {_counts_text(dict(report.get('issues') or {}))}; "
                   f"labels {report.get('label_counts', {})}")


def add_data(
    data_file: FileArgument, site_dir: SiteDirOption, plan: PlanOption,
    actor: ActorOption, name: NameOption = None, as_json: JsonOption = False,
) -> None:
    """Register a file against a study plan with the default policy (refuse any issue
    but outliers); `site dataset register` chooses the policy."""
    with cli_boundary():
        version = _register(site_dir, data_file, plan, policy=Policy(), actor=actor, name=name)
    typer.echo(json.dumps(version.to_json(), indent=2) if as_json else _version_line(version))


def register(app: typer.Typer) -> None:
    """Add ``dataset check|register|list|show`` and ``add-data`` to the site CLI."""
    group = typer.Typer(name="dataset", no_args_is_help=True, add_completion=False,
                        help="Check data files, register them as versions, list versions.\n\n"
                        "Example: tessera site dataset check cohort.csv --plan plan.toml")
    group.command("check")(check)
    group.command("register")(register_file)
    group.command("list")(list_datasets)
    group.command("show")(show)
    app.add_typer(group, name="dataset")
    app.command("add-data")(add_data)
