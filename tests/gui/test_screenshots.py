"""scripts/gui_screenshots.py: one filled PNG per page of the real window, the wizard and the
participation report's first page; offscreen, and in a real X window under Xvfb."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtGui import QImage

from gui.pages.audit import AuditPage
from gui.pages.dashboard import DashboardPage
from gui.pages.evaluation import EvaluationPage
from gui.window import MainWindow
from tests.gui.conftest import StudySite
from tests.gui.test_audit import _write_log

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gui_screenshots.py"
PAGES = ["01-dashboard.png", "02-datasets.png", "03-studies.png", "04-consent.png",
         "05-privacy-budget.png", "06-evaluation.png", "07-audit.png", "08-drift.png"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gui_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_log(study_site: StudySite) -> None:
    if not (study_site.site.audit_dir / "site.log").exists():
        _write_log(study_site.site)  # an unprovisioned site keeps no audit log of its own


@pytest.mark.slow  # uses the session's in-process study
def test_the_screenshot_script_saves_every_page_filled(
    qtbot, study_window: MainWindow, study_site: StudySite, tmp_path: Path,
) -> None:
    _with_log(study_site)
    script = _script()
    out = tmp_path / "shots"
    saved = script.capture(study_window, out)
    saved += script.capture_report(study_window, out)
    saved += script.capture_wizard(out, kit=None)
    assert script.problems == []
    names = [p.name for p in saved]
    reports = [n for n in names if n.startswith("report-page-")]
    assert reports[0] == "report-page-1.png"  # one PNG per page of the report
    assert names == [*PAGES, "report.pdf", *reports, "00-wizard-kit.png",
                     "00-wizard-passphrase.png"]
    for path in saved[:len(PAGES)]:
        image = QImage(str(path))
        assert (image.width(), image.height()) == (1280, 800), path.name
    assert QImage(str(out / "report-page-1.png")).height() > 1000
    evaluation = study_window.page(EvaluationPage)
    assert isinstance(evaluation, EvaluationPage) and evaluation.result is not None
    assert evaluation.confusion.index(0, 0).data() == "actually benign (1)"
    audit = study_window.page(AuditPage)
    assert isinstance(audit, AuditPage) and audit.result.text().startswith("INTACT")
    dashboard = study_window.page(DashboardPage)
    assert isinstance(dashboard, DashboardPage) and dashboard.attention  # the node is stopped


def _xcb_usable() -> str | None:
    """Why a real X window cannot be opened here, or None."""
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (Debian: apt-get install -y xvfb)"
    return None


@pytest.mark.slow  # uses the session's in-process study and a real X server
def test_the_app_runs_in_a_real_window_under_xvfb(study_site: StudySite, tmp_path: Path) -> None:
    reason = _xcb_usable()
    if reason is not None:
        pytest.skip(reason)
    _with_log(study_site)
    display = f":{90 + os.getpid() % 9}"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "1400x900x24", "-nolisten",
                               "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
               "TESSERA_SITE_PASSPHRASE": study_site.passphrase}
        probe = subprocess.run(
            [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; "
             "app = QApplication([]); print(app.platformName())"],
            env=env, capture_output=True, text=True, timeout=60)
        if probe.returncode != 0 or probe.stdout.strip() != "xcb":
            pytest.skip("Qt's xcb platform cannot start here (its X libraries are missing: "
                        "libxcb-icccm4, libxcb-keysyms1, libxcb-cursor0...)")
        out = tmp_path / "xvfb"
        result = subprocess.run([sys.executable, str(SCRIPT), "--site-dir",
                                 str(study_site.site.root), "--out", str(out)],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=10)
    reports = sorted(p.name for p in out.glob("report-page-*.png"))
    assert "report-page-1.png" in reports
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [*PAGES, *reports, "00-wizard-kit.png", "00-wizard-passphrase.png"])
    assert QImage(str(out / "01-dashboard.png")).width() == 1280
