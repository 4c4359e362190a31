"""``tessera data split``: a bundled study's dataset as one CSV per site, to try a federation.

Each file has the patient ids and every column the study's data dictionary asks for, in the
form ``tessera site dataset register`` reads. Sites get disjoint rows: ``iid`` (near-equal
sizes and label mixes) or ``dirichlet`` (label skew of strength ``--alpha``), seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, print_json
from common.errors import ErrorCode, TesseraError

app = typer.Typer(help="Sample data for trying a federation.", no_args_is_help=True,
                  add_completion=False)
PARTITIONS = ("iid", "dirichlet")


@app.callback()
def _group() -> None:
    """Sample data for trying a federation."""


@app.command("split")
def split(
    study: Annotated[str, typer.Option(help="A bundled study plan, by name.")],
    sites: Annotated[str, typer.Option(help="Comma-separated site names, one CSV each.")],
    out: Annotated[Path, typer.Option(help="Folder to write <site>.csv into.")],
    partition: Annotated[str, typer.Option(help="iid or dirichlet.")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration (smaller: more "
                                               "label skew).")] = 0.5,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the plan's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write the study's bundled dataset as one CSV per site (disjoint rows, patient ids)."""
    from common.datasets import csv_bytes, load_bundled, partition_indices  # numpy: when run
    from common.plan import bundled_plan_path, load_plan

    with cli_boundary(f"cannot write into {out}"):
        names = [s.strip() for s in sites.split(",") if s.strip()]
        if not names or len(set(names)) != len(names):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "--sites: name at least one site, each once")
        if partition not in PARTITIONS:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--partition: must be one of {', '.join(PARTITIONS)}")
        if not alpha > 0:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--alpha: must be above 0")
        plan = load_plan(bundled_plan_path(study))
        data = load_bundled(plan.dataset.name)
        if out.exists() and not out.is_dir():
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"--out: {out} is not a folder")
        targets = [out / f"{name}.csv" for name in names]
        existing = [t.name for t in targets if t.exists()]
        if existing:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--out: {', '.join(existing)} already exist; choose a new folder")
        parts = partition_indices(data.y, len(names), seed=plan.seed if seed is None else seed,
                                  scheme=partition, alpha=alpha)
        out.mkdir(parents=True, exist_ok=True)
        for target, rows in zip(targets, parts, strict=True):
            target.write_bytes(csv_bytes(data, rows))
    if as_json:
        print_json({"study": plan.name, "partition": partition,
                    "files": [{"site": name, "path": str(target), "rows": len(rows)}
                              for name, target, rows in zip(names, targets, parts, strict=True)]})
        return
    for target, rows in zip(targets, parts, strict=True):
        typer.echo(f"{target}: {len(rows)} rows")
