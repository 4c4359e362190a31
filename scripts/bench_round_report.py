"""What the round benchmark (``scripts/bench_round.py``) reports besides its figures: the
machine it ran on, and the compact table of the runs and micro-benchmark headlines it prints.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

Json = dict[str, Any]


def machine() -> Json:
    """CPU, Python and library versions of this machine."""
    versions: dict[str, str | None] = {}
    for package in ("torch", "tenseal", "opacus", "flwr", "numpy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    usable: int
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }


# -- output -----------------------------------------------------------------------------
def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_summary(doc: Json) -> None:
    """A compact table of the runs and the micro-benchmark headlines."""
    header = ("config", "status", "s/round", "later", "KB up", "x fp32", "AUC", "acc",
              "base", "gap", "max eps")
    rows = []
    for run in doc["runs"] + doc.get("deployment", []):
        eps = list((run.get("epsilon_per_site") or {}).values())
        rows.append((
            run["config"], str(run.get("status")), _fmt(run.get("mean_round_seconds"), ".2f"),
            _fmt(run.get("mean_later_round_seconds"), ".2f"),
            _fmt((run.get("mean_bytes_up_per_site_round") or 0) / 1024, ".1f")
            if run.get("mean_bytes_up_per_site_round") is not None else "-",
            _fmt(run.get("bytes_up_vs_fp32"), ".0f"), _fmt(run.get("final_auc"), ".3f"),
            _fmt(run.get("final_accuracy"), ".3f"), _fmt(run.get("baseline_auc"), ".3f"),
            _fmt(run.get("auc_gap"), "+.3f"), _fmt(max(eps) if eps else None, ".2f"),
        ))
    micro = doc["micro"]
    enc, agg, train = micro["ckks"]["encrypt"], micro["ckks"]["aggregation"], micro["training"]
    lines = [
        f"encrypt {enc['model']['values']} values: {enc['model']['encrypt_seconds'] * 1e3:.1f} ms"
        f" ({enc['model']['ciphertext_bytes'] / 1024:.0f} KB); {enc['large']['values']} values:"
        f" {enc['large']['encrypt_seconds'] * 1e3:.0f} ms"
        f" ({enc['large']['ciphertext_bytes'] / 1e6:.1f} MB, {enc['large']['vs_fp32']:.1f}x fp32)",
        *(f"aggregate {a['sites']} sites: add_encrypted {a['add_encrypted_seconds'] * 1e3:.2f} ms"
          f" vs numpy {a['numpy_sum_seconds'] * 1e6:.1f} us (x{a['ratio']:.0f})"
          for a in agg.values()),
        f"decrypt model vector {enc['model']['decrypt_seconds'] * 1e3:.2f} ms;"
        f" max |error| of {micro['ckks']['mean_error']['contributors']}-site mean"
        f" {micro['ckks']['mean_error']['max_abs_error']:.1e}",
        f"local training: DP {train['dp_seconds']:.3f} s vs plain {train['plain_seconds']:.3f} s"
        f" (x{train['ratio']:.1f}); DP noise calibration"
        f" {train['noise_calibration_seconds']:.2f} s once per study and site",
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("  ".join(header))
        for row in rows:
            print("  ".join(row))
        print("\n".join(lines))
        return
    table = Table(title=f"Tessera round benchmark: {doc['study']['name']}, "
                        f"{doc['study']['sites']} sites, {doc['study']['rounds']} rounds")
    for column in header:
        table.add_column(column, justify="left" if column in ("config", "status") else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for line in lines:
        console.print(line, highlight=False)
