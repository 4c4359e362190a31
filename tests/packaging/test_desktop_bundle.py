"""The frozen desktop app opens a real site offscreen and renders every page: its
``--smoke-test`` exits 0. The bundle is built first (``packaging/desktop/build.py``, the
command ``make bundle`` runs) when it is missing or older than what it freezes; that build
takes minutes. Skipped only where PyInstaller is not installed (it is in the dev extra)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_app.custody.vault import open_or_create_vault
from client_app.governance.studies import receive_plan
from client_app.store.folder import init_site_dir
from common.plan import bundled_plan_path
from privacy.passphrase import PASSPHRASE_ENV_VAR

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "desktop" / "build.py"
BUNDLE = ROOT / "dist" / "desktop" / "tessera-site" / "tessera-site"
PASSPHRASE = "bundle smoke passphrase"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # the first test builds the bundle (minutes)
    pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None,
                       reason="PyInstaller is not installed (pip install -e '.[dev]')"),
]


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle's executable, built now if it is missing or out of date."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BUILD), "--if-stale"], cwd=ROOT,
                          capture_output=True, text=True, timeout=3000, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    print(done.stdout.strip().splitlines()[-1], f"({time.perf_counter() - started:.0f} s)")
    assert BUNDLE.is_file()
    return BUNDLE


def _smoke(command: list[str], site: Path, cwd: Path) -> tuple[list[str], float]:
    """The page lines of ``COMMAND --site-dir SITE --smoke-test`` (asserted to pass); seconds."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           PASSPHRASE_ENV_VAR: PASSPHRASE}
    started = time.perf_counter()
    done = subprocess.run([*command, "--site-dir", str(site), "--smoke-test"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke test passed" in done.stdout
    return [line for line in done.stdout.splitlines() if line.startswith("page ")], seconds


def test_the_bundle_renders_every_page_the_app_has(bundle: Path, tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "site-1", name="site-1")
    open_or_create_vault(site, PASSPHRASE)
    receive_plan(site, bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    pages, seconds = _smoke([str(bundle)], site.root, tmp_path)
    assert pages and all(": rendered " in line for line in pages)
    # The same pages, in the same order, as the app run from this checkout's code.
    gui = str(Path(sys.executable).with_name("tessera-site-gui"))
    unfrozen, _ = _smoke([gui], site.root, tmp_path)
    assert [line.split(":")[0] for line in pages] == [line.split(":")[0] for line in unfrozen]
    print(f"bundle smoke test: {seconds:.1f} s for {len(pages)} pages")


def test_the_build_leaves_the_bundle_current(bundle: Path) -> None:
    done = subprocess.run([sys.executable, str(BUILD), "--if-stale"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.startswith("bundle up to date"), done.stdout
