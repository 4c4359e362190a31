"""The desktop app's smoke test: ``tessera-site-gui --site-dir DIR --smoke-test``.

Checks an installed app or a frozen bundle on a machine without a display: it opens the site
folder offscreen with the passphrase from ``TESSERA_SITE_PASSPHRASE`` (no dialog is shown),
shows and draws every page in turn, waiting for each page's background work, and collects
every error a page would show in a message box. Exit status 0 only when every page rendered
without an error; one line per page on stdout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

from PySide6.QtWidgets import QApplication, QWidget

from client_app.facade import SiteOperator
from common.errors import TesseraError
from common.roles import Policy
from gui import dialogs
from gui.theme import apply_theme
from gui.window import MainWindow
from privacy.passphrase import PASSPHRASE_ENV_VAR

#: Seconds a page's background work may take before the smoke test gives up on it.
PAGE_TIMEOUT = 60.0
SMOKE_ACTOR = "smoke-test"


def _settle(app: QApplication, window: MainWindow, *, timeout: float) -> bool:
    """Process events until no page has work in flight; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if not any(page.runner.busy for page in window.pages):
            app.processEvents()
            return True
        time.sleep(0.02)
    return False


def run_smoke_test(site_dir: Path, *, policy: Policy, kit: Path | None = None,
                   out: TextIO = sys.stdout) -> int:
    """Open ``site_dir``, render every page, report; the exit status."""
    app = QApplication.instance() or QApplication([sys.argv[0], "-platform", "offscreen"])
    assert isinstance(app, QApplication)
    apply_theme(app)
    errors: list[str] = []

    def collect(parent: QWidget | None, message: str, *, title: str = "Tessera") -> None:
        errors.append(f"{title}: {message}")

    dialogs.show_error = collect  # a message box would wait for a click that never comes
    passphrase = os.environ.get(PASSPHRASE_ENV_VAR)
    if not passphrase:
        print(f"smoke test: set {PASSPHRASE_ENV_VAR} (no dialog is shown)", file=out)
        return 2
    started = time.perf_counter()
    try:
        operator = SiteOperator.open(site_dir, passphrase=passphrase, actor=SMOKE_ACTOR,
                                     policy=policy, kit=kit)
    except TesseraError as err:
        print(f"smoke test: {err.message}", file=out)
        return err.exit_code
    window = MainWindow(operator)
    window.resize(1280, 800)
    window.show()
    for number, page in enumerate(window.pages):
        window.show_page(number)
        settled = _settle(app, window, timeout=PAGE_TIMEOUT)
        image = window.grab()
        state = "rendered" if settled and not image.isNull() else "did not settle"
        if state != "rendered":
            errors.append(f"{page.title}: {state}")
        print(f"page {number + 1} {page.title}: {state} {image.width()}x{image.height()}",
              file=out)
    window.close()
    _settle(app, window, timeout=PAGE_TIMEOUT)
    for error in errors:
        print(f"error: {error}", file=out)
    print(f"smoke test {'failed' if errors else 'passed'}: {len(window.pages)} pages in "
          f"{time.perf_counter() - started:.1f} s", file=out)
    return 1 if errors else 0
