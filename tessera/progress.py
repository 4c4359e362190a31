"""Follow a coordinator run's progress file and show each step with rich.

:func:`num` is the coordinator CLI's one metric format: three decimals, ``n/a`` when a metric
is undefined (under DP an AUC is ``None`` when the noisy counts leave one class empty).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common.workdir import RunDir


def num(value: Any) -> str:
    """A metric with three decimals; ``n/a`` for a missing or undefined (NaN) one."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return "n/a" if value != value else f"{value:.3f}"


class ProgressView:
    """Tails ``runs/<run>/progress.jsonl`` and prints rounds as they complete."""

    def __init__(self, runs_dir: Path, console: Console, *, rounds: int,
                 run_id: str | None = None) -> None:
        """Follow run ``run_id`` of ``runs_dir``, or (None) the newest run there."""
        self.runs_dir = runs_dir
        self.console = console
        self.rounds = rounds
        self._offset = 0
        self._folder: Path | None = runs_dir / run_id if run_id is not None else None

    def _current(self) -> Path | None:
        if self._folder is None and self.runs_dir.exists():
            folders = sorted(self.runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
            self._folder = folders[-1] if folders else None
        return self._folder

    def result_path(self) -> Path | None:
        """The result file, once the run has written it."""
        folder = self._current()
        path = RunDir(folder).result_path if folder else None
        return path if path and path.exists() else None

    def poll(self) -> dict[str, Any] | None:
        """Print new progress events; return the run result once it exists."""
        folder = self._current()
        if folder is None:
            return None
        progress = RunDir(folder).progress_path
        if progress.exists():
            with progress.open("r", encoding="utf-8") as handle:
                handle.seek(self._offset)
                for line in handle:
                    if line.endswith("\n"):
                        self._show(json.loads(line))
                        self._offset += len(line.encode("utf-8"))
        path = self.result_path()
        if path is None:
            return None
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def _show(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        c = self.console
        if kind == "nodes_connected":
            c.print(f"[cyan]{event['count']} SuperNode(s) connected[/]")
        elif kind == "sites_admitted":
            c.print(f"admitted: {', '.join(event['sites'])}")
            for item in event.get("refused", []):
                c.print(f"[yellow]refused {item['site']}: {item['reason']}[/]")
        elif kind == "stats_summed":
            c.print(f"round 0: encrypted federation statistics from {event['sites']} site(s)")
        elif kind == "round_started":
            c.print(f"[bold]round {event['round']}/{self.rounds}[/] training at "
                    f"{', '.join(event['sites'])}")
        elif kind == "round_trained":
            self._trained(event)
        elif kind == "round_evaluated":
            m = event["metrics"]
            c.print(f"  round {event['round']}: accuracy {num(m.get('accuracy'))}  "
                    f"AUC {num(m.get('auc'))}  ({event['seconds']:.1f} s)")
        elif kind == "model_released":
            c.print(f"final model released by {event['site']}")
        elif kind == "importance_measured":
            c.print(f"feature importance measured at {len(event['sites'])} site(s) "
                    f"on {event['rows']} held-out rows")
        elif kind == "run_resumed":
            c.print(f"[cyan]resumed after round {event['from_round']}[/] "
                    f"(Flower run {event.get('flower_run', '?')})")
        elif kind == "loso_skipped":
            c.print(f"[yellow]leave-one-site-out skipped: {event['reason']}[/]")
        elif kind == "loso_started":
            c.print(f"leave-one-site-out: training without {event['site']} ...")
        elif kind == "loso_finished":
            self._loso(event)
        elif kind == "run_failed":
            c.print(f"[bold red]run failed: {event['message']}[/]")
        elif kind == "run_cancelled":
            c.print("[yellow]run cancelled[/]")

    def _loso(self, event: dict[str, Any]) -> None:
        m = event.get("metrics", {})
        if "error" in m:
            self.console.print(f"  [yellow]{event['site']} held out: {m['error']['message']}[/]")
            return
        found = m.get("metrics", m)
        self.console.print(f"  {event['site']} held out: AUC {num(found.get('auc'))}"
                           f"  accuracy {num(found.get('accuracy'))}")

    def _trained(self, event: dict[str, Any]) -> None:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in ("site", "status", "epsilon", "bytes up"):
            table.add_column(col)
        for site in event["participating"]:
            eps = event.get("epsilon", {}).get(site)
            table.add_row(site, "[green]ok[/]", "-" if eps is None else f"{eps:.3f}",
                          str(event["bytes_up"].get(site, "-")))
        for item in event["refused"] + event["rejected"]:
            table.add_row(item["site"], f"[yellow]{item['code']}[/]", "-", "-")
        self.console.print(table)
        for item in event["refused"] + event["rejected"]:
            self.console.print(f"  [yellow]{item['site']}: {item['reason']}[/]")
