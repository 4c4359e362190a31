"""The coordinator's progress view prints undefined metrics as ``n/a`` and keeps following.

Under DP the federation's AUC comes from noisy counts; when the noise leaves one class empty
the AUC is undefined (``None``). A follower that crashed on it would end ``study follow``,
``study submit --follow`` and ``tessera demo`` with a traceback although the study ran on.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from tessera.progress import ProgressView, num


def _events(folder: Path, events: list[dict[str, object]]) -> None:
    folder.mkdir(parents=True)
    (folder / "progress.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


def test_num_formats_numbers_and_names_undefined_ones() -> None:
    assert num(0.98765) == "0.988"
    assert num(1) == "1.000"
    assert num(None) == "n/a"
    assert num(float("nan")) == "n/a"
    assert num("0.5") == "n/a"
    assert num(True) == "n/a"


def test_an_undefined_auc_is_shown_as_na_and_following_goes_on(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _events(runs / "run-1", [
        {"event": "round_evaluated", "round": 2, "seconds": 1.5,
         "metrics": {"accuracy": 0.87, "auc": None}},
        {"event": "loso_finished", "site": "site-2", "metrics": {"auc": None}},
        {"event": "run_cancelled"},
    ])
    out = io.StringIO()
    view = ProgressView(runs, Console(file=out, width=120), rounds=3, run_id="run-1")
    assert view.poll() is None
    text = out.getvalue()
    assert "round 2: accuracy 0.870  AUC n/a" in text
    assert "site-2 held out: AUC n/a  accuracy n/a" in text
    assert "run cancelled" in text
