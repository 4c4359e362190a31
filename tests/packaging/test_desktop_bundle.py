"""The frozen desktop app (``make bundle``) opens a real site offscreen and renders every
page: its ``--smoke-test`` exits 0. Skipped until the bundle is built (it takes minutes)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from client_app.custody.vault import open_or_create_vault
from client_app.governance.studies import receive_plan
from client_app.store.folder import init_site_dir
from common.plan import bundled_plan_path
from privacy.passphrase import PASSPHRASE_ENV_VAR

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "desktop" / "tessera-site" / "tessera-site"
PASSPHRASE = "bundle smoke passphrase"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BUNDLE.is_file(), reason="no desktop bundle: run make bundle"),
]


def test_the_bundle_renders_every_page_of_a_site(tmp_path: Path) -> None:
    site = init_site_dir(tmp_path / "site-1", name="site-1")
    open_or_create_vault(site, PASSPHRASE)
    receive_plan(site, bundled_plan_path("breast_cancer").read_text(encoding="utf-8"))
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           PASSPHRASE_ENV_VAR: PASSPHRASE}
    started = time.perf_counter()
    done = subprocess.run([str(BUNDLE), "--site-dir", str(site.root), "--smoke-test"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    pages = [line for line in done.stdout.splitlines() if line.startswith("page ")]
    assert len(pages) == 7 and all(": rendered " in line for line in pages)
    print(f"bundle smoke test: {seconds:.1f} s")
