"""A run's checkpoint: what the coordinator needs to resume a study after it was killed.

Written atomically (0600, fsync'd, renamed into place) into the run's folder after the
federation statistics (round 0) and after every completed round: the last completed round,
the sites still training, each site's released example count, dataset version and reported
study epsilon, the report form of every round so far, and the two contribution sets the next
steps build on (the round-0 statistics and the last round's weights). A resumed run starts
from it at the next round, under the same run id, so every site's schedule (one statistics
step, rounds in increasing order, each at most once) keeps refusing what it already did:
no site spends its budget twice for a completed round.

Only ids, counts, metrics and the signed, encrypted contributions the coordinator already
holds are written: never patient data, never key material.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from protos.tessera.v1 import agent_pb2
from server.run_record import RoundLog
from server.study_run import SetKey, StudyRun

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "tessera-checkpoint/1"


def checkpoint_path(run_folder: Path) -> Path:
    """Where a run's checkpoint lives."""
    return run_folder / CHECKPOINT_FILE


@dataclass(frozen=True)
class Checkpoint:
    """The state of a run after its last completed round."""

    run_id: str
    plan_hash: str
    #: The last completed round (0: the federation statistics are summed).
    round: int
    trainers: tuple[str, ...]
    evaluators: tuple[str, ...]
    site_examples: dict[str, int]
    dataset_versions: dict[str, str]
    site_epsilon: dict[str, float]
    #: Report form of each round so far (round 0 is the statistics step).
    rounds: dict[int, dict[str, Any]]
    admission_refused: list[dict[str, Any]]
    sets: dict[SetKey, bytes]

    def to_json(self) -> dict[str, Any]:
        """The file form (contribution sets as base64 of their protobuf bytes)."""
        return {
            "format": CHECKPOINT_FORMAT, "run_id": self.run_id, "plan_hash": self.plan_hash,
            "round": self.round, "trainers": list(self.trainers),
            "evaluators": list(self.evaluators), "site_examples": self.site_examples,
            "dataset_versions": self.dataset_versions, "site_epsilon": self.site_epsilon,
            "rounds": {str(k): v for k, v in sorted(self.rounds.items())},
            "admission_refused": self.admission_refused,
            "sets": [{"kind": kind, "round": round_,
                      "set": base64.b64encode(data).decode("ascii")}
                     for (kind, round_), data in sorted(self.sets.items())],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Checkpoint:
        """Read the file form (CONFIG_INVALID naming what is wrong)."""
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"checkpoint: format is not {CHECKPOINT_FORMAT}")
        try:
            return cls(
                run_id=str(doc["run_id"]), plan_hash=str(doc["plan_hash"]),
                round=int(doc["round"]), trainers=tuple(map(str, doc["trainers"])),
                evaluators=tuple(map(str, doc["evaluators"])),
                site_examples={str(k): int(v) for k, v in doc["site_examples"].items()},
                dataset_versions={str(k): str(v) for k, v in doc["dataset_versions"].items()},
                site_epsilon={str(k): float(v) for k, v in doc["site_epsilon"].items()},
                rounds={int(k): dict(v) for k, v in doc["rounds"].items()},
                admission_refused=list(doc["admission_refused"]),
                sets={(int(s["kind"]), int(s["round"])): base64.b64decode(s["set"],
                                                                          validate=True)
                      for s in doc["sets"]},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"checkpoint: malformed ({type(err).__name__})") from None


def save_checkpoint(run: StudyRun, round_: int) -> Path:
    """Write the checkpoint of ``run`` after round ``round_`` completed (atomically)."""
    keep: list[SetKey] = [(agent_pb2.ENVELOPE_STATS, 0)]
    if round_ >= 1:
        keep.append((agent_pb2.ENVELOPE_WEIGHTS, round_))
    missing = [key for key in keep if key not in run.sets]
    if missing:
        raise TesseraError(ErrorCode.INTERNAL, f"checkpoint: no contribution set {missing}")
    point = Checkpoint(
        run_id=run.run_id, plan_hash=run.plan_hash, round=round_,
        trainers=tuple(sorted(set(run.trainers.values()))),
        evaluators=tuple(sorted(set(run.evaluators.values()))),
        site_examples=dict(run.site_examples), dataset_versions=dict(run.dataset_versions),
        site_epsilon=dict(run.site_epsilon),
        rounds={r: log.to_json() for r, log in run.recorder.rounds.items() if r <= round_},
        admission_refused=list(run.admission_refused),
        sets={key: run.sets[key].SerializeToString() for key in keep},
    )
    path = checkpoint_path(run.recorder.folder)
    atomic_write_bytes(path, json.dumps(point.to_json(), sort_keys=True).encode("utf-8"))
    return path


def load_checkpoint(run_folder: Path) -> Checkpoint | None:
    """The run's checkpoint, or None when it wrote none."""
    path = checkpoint_path(run_folder)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"checkpoint: {path} is not JSON") from None
    if not isinstance(doc, dict):
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"checkpoint: {path} is not an object")
    return Checkpoint.from_json(doc)


def restore(run: StudyRun, point: Checkpoint) -> None:
    """Put a checkpoint's state back into a fresh run of the same plan and run id (the
    trainers are admitted again by the caller: node ids change when a coordinator restarts)."""
    if point.run_id != run.run_id or point.plan_hash != run.plan_hash:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "checkpoint: it belongs to another run or plan")
    run.admission_refused[:] = point.admission_refused
    run.site_examples.update(point.site_examples)
    run.dataset_versions.update(point.dataset_versions)
    run.site_epsilon.update(point.site_epsilon)
    for key, data in point.sets.items():
        cset = agent_pb2.ContributionSet()
        cset.ParseFromString(data)
        run.sets[key] = cset
    for number, doc in point.rounds.items():
        run.recorder.rounds[number] = RoundLog.from_json(doc)
