"""The wheel works outside the repository: built, installed in a fresh environment, run.

The test builds the wheel from a copy of this checkout (``pip wheel --no-deps``, no build
isolation, so nothing is downloaded; the copy keeps stale build folders out), checks that it
carries every resource an installed copy reads, and installs it with ``--no-deps`` into a
new virtual environment outside the checkout. The dependencies are not installed again: a
``.pth`` file points the new environment at the current one's site-packages (and Flower's
console scripts are recreated from their entry points, as installing Flower would). Then
``tessera --version`` and a two-site, one-round ``tessera demo`` run from a folder outside
the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tessera import __version__
from tests.packaging.environments import recreate_console_scripts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: Resources an installed copy reads from its packages (never from the checkout).
RESOURCES = (
    "common/studies/breast_cancer.toml",
    "common/studies/diabetes.toml",
    "common/studies/digits.toml",
    "tessera/roles.toml",
    "client_app/store/migrations/env.py",
    "client_app/store/migrations/script.py.mako",
    "client_app/store/migrations/versions/0001_initial.py",
    "server/migrations/env.py",
    "server/migrations/script.py.mako",
    "server/migrations/versions/0001_initial.py",
    "protos/tessera/v1/agent.proto",
    "protos/tessera/v1/audit.proto",
)

def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "tessera"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "demo-work", "bench-out",
        "wheelhouse"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--quiet", "--wheel-dir", dist, source], cwd=dist)
    (built,) = dist.glob("tessera-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment holding the wheel; its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
          "--no-deps", "--no-index", wheel], cwd=venv)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=venv).stdout.strip())
    (purelib / "project_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    recreate_console_scripts(venv / "bin")
    return venv / "bin"


def _outside_env() -> dict[str, str]:
    drop = {"PYTHONPATH", "TESSERA_SITE_PASSPHRASE", "TESSERA_KIT", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_the_wheel_carries_every_resource_and_no_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [r for r in RESOURCES if r not in names]
    assert missing == []
    assert not [n for n in names if n.startswith("tests/")]
    assert wheel.name.startswith(f"tessera-{__version__}-")


def test_the_installed_copy_is_the_wheel_not_the_checkout(installed: Path,
                                                          tmp_path: Path) -> None:
    done = _run([installed / "python", "-c",
                 "import common.plan, tessera; print(tessera.__file__); "
                 "print(common.plan.bundled_plan_path('diabetes'))"],
                cwd=tmp_path, env=_outside_env())
    module, plan = (Path(line) for line in done.stdout.split())
    assert module.is_relative_to(installed.parent)
    assert plan.is_relative_to(installed.parent)
    assert not module.is_relative_to(ROOT)


def test_tessera_version_and_a_demo_run_from_outside_the_checkout(installed: Path,
                                                                  tmp_path: Path) -> None:
    version = _run([installed / "tessera", "--version"], cwd=tmp_path, env=_outside_env())
    assert version.stdout.strip() == f"tessera {__version__}"
    done = _run([installed / "tessera", "demo", "--num-sites", "2", "--rounds", "1",
                 "--workdir", "work", "--timeout", "600"],
                cwd=tmp_path, env=_outside_env(), timeout=900)
    assert "final accuracy" in done.stdout
    report = json.loads((tmp_path / "work" / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "completed", report.get("error")
    assert report["engine"]["supernodes"] == 2
