"""What a coordinator run reports: progress events (JSON lines) and the run result.

The launcher (``tessera demo``) tails the progress file to show rounds as they happen and
reads the result file when the ServerApp ends. Only counts, ids, sizes and metrics are
written here: never patient data, never key material.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.files import atomic_write_bytes
from common.workdir import CoordinatorDir, RunDir


def run_folder(coordinator_dir: Path, run_id: str) -> Path:
    """Where one run's files live."""
    return CoordinatorDir(coordinator_dir).run(run_id).root


@dataclass
class RoundLog:
    """Accumulates one round's facts."""

    round: int
    started: float = field(default_factory=time.perf_counter)
    participating: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    aggregation_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Report form of the round."""
        return {
            "round": self.round,
            "participating_sites": sorted(self.participating),
            "refused_sites": self.refused,
            "rejected_envelopes": self.rejected,
            "bytes_up": dict(sorted(self.bytes_up.items())),
            "bytes_down": dict(sorted(self.bytes_down.items())),
            "site_metrics": self.site_metrics,
            "seconds": round(self.seconds, 3),
            "aggregation_seconds": round(self.aggregation_seconds, 4),
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RoundLog:
        """A round back from its report form (a resumed run reports its earlier rounds)."""
        return cls(
            round=int(doc["round"]), participating=list(doc.get("participating_sites", [])),
            refused=list(doc.get("refused_sites", [])),
            rejected=list(doc.get("rejected_envelopes", [])),
            bytes_up=dict(doc.get("bytes_up", {})), bytes_down=dict(doc.get("bytes_down", {})),
            site_metrics=dict(doc.get("site_metrics", {})), metrics=dict(doc.get("metrics", {})),
            seconds=float(doc.get("seconds", 0.0)),
            aggregation_seconds=float(doc.get("aggregation_seconds", 0.0)),
        )


class RunRecorder:
    """Writes progress events and collects the round logs of one run."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder = folder
        self.rounds: dict[int, RoundLog] = {}
        self._progress = RunDir(folder).progress_path

    def event(self, kind: str, **data: Any) -> None:
        """Append one progress event (durably, so a crash keeps what was reported)."""
        line = json.dumps({"t": time.time(), "event": kind, **data}, sort_keys=True)
        with self._progress.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def round(self, number: int) -> RoundLog:
        """The log of a round, created on first use."""
        if number not in self.rounds:
            self.rounds[number] = RoundLog(number)
        return self.rounds[number]

    def write_result(self, result: dict[str, Any]) -> Path:
        """Write the run result atomically (mode 0600, fsync'd, then renamed into place)."""
        path = RunDir(self.folder).result_path
        atomic_write_bytes(path, json.dumps(result, indent=2, sort_keys=True).encode("utf-8"))
        return path
