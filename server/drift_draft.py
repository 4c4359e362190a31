"""The next version of a study plan, drafted when drift recommends retraining.

The draft is the same plan with ``study.version`` bumped and a note of why in its
description; it is written to the coordinator's studies folder under its own plan hash, like
any plan, and is only a draft: the coordinator reviews it (e.g. tightens the declared ranges
or the drift threshold) and submits it, and each site reviews and approves its hash as usual.
Nothing is sent to the sites here.
"""

from __future__ import annotations

from pathlib import Path

from common.files import atomic_write_bytes
from common.plan import StudyPlan, parse_plan, plan_hash, plan_to_toml
from common.workdir import CoordinatorDir


def next_version(plan: StudyPlan, *, reason: str) -> StudyPlan:
    """``plan`` with ``study.version`` + 1 and ``reason`` appended to its description."""
    raw = plan.model_dump(mode="json", exclude_none=True)
    raw["study"]["version"] = plan.study.version + 1
    note = f"Version {plan.study.version + 1}, drafted for retraining: {reason}."
    raw["study"]["description"] = f"{plan.study.description} {note}".strip()
    return parse_plan(plan_to_toml(StudyPlan.model_validate(raw, strict=False)))


def draft_next_plan(coordinator_dir: Path, plan: StudyPlan, *, reason: str) -> str:
    """Write the next version of ``plan``; its path relative to the coordinator folder."""
    draft = next_version(plan, reason=reason)
    layout = CoordinatorDir(Path(coordinator_dir))
    path = layout.plan_path(plan_hash(draft))
    if not path.exists():
        atomic_write_bytes(path, plan_to_toml(draft).encode("utf-8"))
    return path.relative_to(layout.root).as_posix()
