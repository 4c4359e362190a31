"""scripts/gui_screenshots.py: one filled PNG per page of the real window."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtGui import QImage

from gui.pages.evaluation import EvaluationPage
from gui.window import MainWindow
from tests.gui.conftest import StudySite
from tests.gui.test_audit import _write_log

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gui_screenshots.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gui_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # uses the session's in-process study
def test_the_screenshot_script_saves_every_page_filled(
    qtbot, study_window: MainWindow, study_site: StudySite, tmp_path: Path,
) -> None:
    if not (study_site.site.audit_dir / "site.log").exists():
        _write_log(study_site.site)  # an unprovisioned site keeps no audit log of its own
    script = _script()
    saved = script.capture(study_window, tmp_path / "shots")
    assert script.problems == []
    assert [p.name for p in saved] == [
        "01-overview.png", "02-datasets.png", "03-studies.png", "04-consent.png",
        "05-privacy-budget.png", "06-evaluation.png", "07-audit.png"]
    for path in saved:
        image = QImage(str(path))
        assert (image.width(), image.height()) == (1280, 800), path.name
    evaluation = study_window.page(EvaluationPage)
    assert isinstance(evaluation, EvaluationPage) and evaluation.result is not None
    assert study_window.pages[-1].result.text().startswith("INTACT")  # type: ignore[attr-defined]
