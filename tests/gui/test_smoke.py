"""``tessera-site-gui --smoke-test``: every page of a real site rendered offscreen, exit 0.

Run as a process through the installed entry point, as an operator (or a bundle check) would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from client_app.store.folder import SiteDir
from privacy.passphrase import PASSPHRASE_ENV_VAR
from tests.conftest import TEST_PASSPHRASE

GUI = str(Path(sys.executable).with_name("tessera-site-gui"))


def _smoke(site: Path, passphrase: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV_VAR}
    if passphrase is not None:
        env[PASSPHRASE_ENV_VAR] = passphrase
    return subprocess.run([GUI, "--site-dir", str(site), "--smoke-test"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_smoke_test_renders_every_page_of_a_study_site(study_site) -> None:
    done = _smoke(study_site.site.root, study_site.passphrase)
    assert done.returncode == 0, done.stdout + done.stderr
    pages = [line for line in done.stdout.splitlines() if line.startswith("page ")]
    assert len(pages) == 8
    assert all(": rendered " in line for line in pages)
    assert "smoke test passed" in done.stdout


def test_the_smoke_test_fails_on_a_wrong_passphrase_without_waiting(site: SiteDir) -> None:
    done = _smoke(site.root, TEST_PASSPHRASE + " wrong")
    assert done.returncode != 0
    assert "passphrase" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_the_smoke_test_needs_the_passphrase_in_the_environment(site: SiteDir) -> None:
    done = _smoke(site.root, None)
    assert done.returncode == 2
    assert PASSPHRASE_ENV_VAR in done.stdout
