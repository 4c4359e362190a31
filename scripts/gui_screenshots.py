"""Screenshots of the site operator's desktop app: one PNG per page, on a real site folder,
plus the first-run wizard and the first page of a participation report.

Usage::

    python scripts/gui_screenshots.py --site-dir DIR --out DIR [--theme light|dark]
                                      [--operator NAME] [--kit KIT]

Opens the real main window offscreen (1280x800) on the site folder, selects each page and
fills it the way an operator would: the approved study is selected, the newest global model
is evaluated through the page's worker, the audit log is verified. Each page is saved as
``NN-<page>.png`` in ``--out`` and its path printed. The site passphrase comes from
``TESSERA_SITE_PASSPHRASE``, else the demo's default (a folder made by ``tessera demo``).
``--theme`` picks the app's light (default) or dark theme (:mod:`gui.theme`). The wizard is
shown on an empty temporary folder (with ``--kit``, the kit is checked so that its
fingerprint shows); the report is written for the first approved study and its pages
rendered to ``report-page-N.png``. ``QT_QPA_PLATFORM`` chooses offscreen (the default) or
a real window (``xcb`` under Xvfb).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication, QWidget

from client_app.facade import SiteOperator
from gui import dialogs
from gui.app import default_policy
from gui.pages.audit import AuditPage
from gui.pages.dashboard import DashboardPage
from gui.pages.evaluation import EvaluationPage
from gui.pages.studies import StudiesPage
from gui.theme import THEMES, apply_theme
from gui.window import MainWindow
from gui.wizard import FirstRunWizard
from privacy.passphrase import PASSPHRASE_ENV_VAR
from tessera.demo import DEMO_PASSPHRASE

SIZE = (1280, 800)
WAIT_MS = 120_000
problems: list[str] = []


def wait_for(signal: SignalInstance, start: object) -> bool:
    """Call ``start()`` and run the event loop until ``signal`` fires (False on time-out)."""
    loop = QEventLoop()
    fired: list[bool] = []

    def stop(*_args: object) -> None:
        fired.append(True)
        loop.quit()

    signal.connect(stop)
    QTimer.singleShot(WAIT_MS, loop.quit)
    start()  # type: ignore[operator]
    if not fired:
        loop.exec()
    signal.disconnect(stop)
    return bool(fired)


def record_error(parent: QWidget | None, message: str, *, title: str = "") -> None:
    problems.append(message)


def ignore_info(parent: QWidget | None, message: str, *, title: str = "") -> None:
    """Information messages need no answer."""


def answer_no(parent: QWidget | None, title: str, text: str) -> bool:
    return False


def settle(app: QApplication) -> None:
    for _ in range(5):
        app.processEvents()


def fill(window: MainWindow, number: int) -> None:
    """Make page ``number`` show what an operator would look at."""
    page = window.pages[number]
    if page.loader.busy or page.reload_pending:
        wait_for(page.loaded, lambda: None)
        if page.reload_pending:
            wait_for(page.loaded, lambda: None)
    if isinstance(page, DashboardPage) and page.board is None:
        wait_for(page.loaded, page.refresh)
    if isinstance(page, StudiesPage):
        approved = [p for p in page.model.rows if p.status == "approved"]
        if approved:
            page.select_hash(approved[0].plan_hash)
    elif isinstance(page, EvaluationPage):
        if page.run_button.isEnabled():
            wait_for(page.runner.done, page.run_button.click)
        if page.result is None:
            problems.append("evaluation: no result")
    elif isinstance(page, AuditPage):
        if not wait_for(page.runner.done, page.verify_button.click):
            problems.append(f"audit: {page.result.text()}")


def capture(window: MainWindow, out: Path) -> list[Path]:
    """Show, fill and save every page of ``window`` as ``out/NN-<page>.png``; print each path."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for number, page in enumerate(window.pages):
        window.show_page(number)
        settle(app)
        fill(window, number)
        settle(app)
        path = out / f"{number + 1:02d}-{page.title.lower().replace(' ', '-')}.png"
        if not window.grab().save(str(path)):
            problems.append(f"could not write {path}")
            continue
        print(path)
        saved.append(path)
    return saved


def capture_wizard(out: Path, *, kit: Path | None) -> list[Path]:
    """The wizard's kit step (checked, if ``kit``) and its passphrase step with a rating."""
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tessera-wizard-") as tmp:
        wizard = FirstRunWizard(Path(tmp) / "new-site", policy=default_policy(),
                                actor="operator")
        wizard.show()
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        if kit is not None:
            wizard.kit_step.path_edit.setText(str(kit))
            if not wait_for(wizard.kit_step.runner.done, wizard.kit_step.check):
                problems.append(f"wizard: {wizard.kit_step.message.text()}")
            wizard.kit_step.confirm.setChecked(True)
        settle(app)
        for name in ("kit", "passphrase"):
            if name == "passphrase":
                wizard.removePage(wizard.pageIds()[0])
                wizard.restart()
                wizard.passphrase_step.first.setText("copper lantern orbit")
                wizard.passphrase_step.second.setText("copper lantern orbit")
                settle(app)
            path = out / f"00-wizard-{name}.png"
            if wizard.grab().save(str(path)):
                print(path)
                saved.append(path)
        wizard.close()
    return saved


def capture_report(window: MainWindow, out: Path) -> list[Path]:
    """The participation report of the first approved study, and each of its pages as PNG."""
    plans = window.operator.received_plans()
    chosen = [p for p in plans if p.status == "approved"] or plans
    if not chosen:
        problems.append("report: no study received")
        return []
    pdf_path = window.operator.write_report(chosen[0].plan_hash, out / "report.pdf")
    import pypdfium2 as pdfium  # a development dependency

    pdf = pdfium.PdfDocument(pdf_path)
    pngs = []
    for number in range(len(pdf)):
        png = out / f"report-page-{number + 1}.png"
        pdf[number].render(scale=1.5).to_pil().save(png)
        pngs.append(png)
    pdf.close()
    print(pdf_path)
    for png in pngs:
        print(png)
    return [pdf_path, *pngs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--operator", default="operator")
    parser.add_argument("--kit", type=Path, help="A site kit to show in the wizard.")
    args = parser.parse_args()

    app = QApplication(sys.argv[:1])
    apply_theme(app, THEMES[args.theme])
    # No one answers modal dialogs here: errors are printed, questions answered "no".
    dialogs.show_error = record_error
    dialogs.show_info = ignore_info
    dialogs.confirm = answer_no

    passphrase = os.environ.get(PASSPHRASE_ENV_VAR) or DEMO_PASSPHRASE
    operator = SiteOperator.open(args.site_dir, passphrase=passphrase, actor=args.operator,
                                 policy=default_policy())
    window = MainWindow(operator)
    window.resize(*SIZE)
    window.show()
    capture(window, args.out)
    capture_report(window, args.out)
    window.close()
    capture_wizard(args.out, kit=args.kit)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
