"""How fast the site app opens, and how long the GUI thread is held: numbers as JSON.

Usage::

    python scripts/bench_gui_start.py --out bench.json [--runs 3]

Each run starts a fresh Python process that makes a site folder (outside the timing), then
measures from the process's start: importing the app, unlocking the site, and the main
window shown; and on the GUI thread, the longest a page switch held it (the page loads in
the background), and whether torch, Opacus or TenSEAL were loaded when the window
showed. Prints and writes the JSON; the median over runs is ``median``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, os, sys, time
t0 = time.perf_counter()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication
from gui.app import default_policy
from gui.window import MainWindow
from client_app.facade import SiteOperator
imported = time.perf_counter() - t0
app = QApplication(sys.argv[:1])
operator = SiteOperator.open(__SITE__, passphrase=__PASS__, actor="bench",
                             policy=default_policy())
unlocked = time.perf_counter() - t0
window = MainWindow(operator)
window.resize(1280, 800)
window.show()
app.processEvents()
shown = time.perf_counter() - t0
heavy = sorted(m for m in ("torch", "opacus", "tenseal") if m in sys.modules)
held = []
for number in range(len(window.pages)):
    started = time.perf_counter()
    window.show_page(number)
    held.append(time.perf_counter() - started)
    app.processEvents()
window.close()
print(json.dumps({"import_s": imported, "unlock_s": unlocked, "window_shown_s": shown,
                  "longest_page_switch_s": max(held), "heavy_modules_at_window": heavy}))
'''

PASSPHRASE = "bench passphrase for the app"


def make_site(root: Path) -> Path:
    """A site folder with the bundled plan received (not timed)."""
    code = ("from pathlib import Path\n"
            "from client_app.store.folder import init_site_dir\n"
            "from client_app.custody.vault import open_or_create_vault\n"
            "from client_app.governance.studies import receive_plan\n"
            "from common.plan import bundled_plan_path\n"
            f"site = init_site_dir(Path({str(root)!r}), name='bench')\n"
            f"open_or_create_vault(site, {PASSPHRASE!r})\n"
            "receive_plan(site, bundled_plan_path('breast_cancer').read_text())\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        site = make_site(Path(tmp) / "site")
        child = CHILD.replace("__SITE__", repr(str(site))).replace("__PASS__", repr(PASSPHRASE))
        for _ in range(max(1, args.runs)):
            out = subprocess.run([sys.executable, "-c", child], check=True,
                                 capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("import_s", "unlock_s", "window_shown_s", "longest_page_switch_s")
    result = {"runs": runs,
              "median": {k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
              "heavy_modules_at_window": sorted({m for r in runs
                                                 for m in r["heavy_modules_at_window"]})}
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
