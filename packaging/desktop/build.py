"""Builds the desktop bundle, ``dist/desktop/tessera-site/``, with PyInstaller: the one build
command, used by ``make bundle`` and by the bundle's smoke test.

Usage: python packaging/desktop/build.py [--if-stale]

With ``--if-stale`` the bundle is rebuilt only when it is missing or older than what it
freezes: the packages it collects, its spec, entry script and this build command,
``pyproject.toml`` and the environment's installed packages (a folder whose time changes
when a package is installed or removed). Prints one line saying what it did and how long it
took.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC = HERE / "tessera-site.spec"
DIST = ROOT / "dist" / "desktop"
WORK = ROOT / "build" / "desktop"
EXECUTABLE = DIST / "tessera-site" / "tessera-site"

#: The packages the spec collects (the app, the site services and their resources).
FROZEN_PACKAGES = ("common", "protos", "privacy", "client_app", "gui", "tessera")
#: The files of those packages that end up in the bundle (compiled caches do not count).
FROZEN_SUFFIXES = frozenset({".py", ".pyi", ".toml", ".ini", ".mako", ".proto", ".csv"})


def frozen_sources() -> Iterator[Path]:
    """Every file whose change makes the bundle out of date."""
    yield from (HERE / "tessera-site.spec", HERE / "tessera_site.py", Path(__file__).resolve(),
                ROOT / "pyproject.toml")
    yield Path(sysconfig.get_paths()["purelib"])  # its time moves on every (un)install
    for package in FROZEN_PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.suffix in FROZEN_SUFFIXES and "__pycache__" not in path.parts:
                yield path


def stale_sources(executable: Path = EXECUTABLE) -> list[Path]:
    """The sources newer than ``executable`` (all of them when it does not exist)."""
    built = executable.stat().st_mtime if executable.is_file() else float("-inf")
    return [path for path in frozen_sources() if path.stat().st_mtime > built]


def build() -> float:
    """Build the bundle from scratch (PyInstaller's cache cleared); the seconds it took."""
    started, started_at = time.perf_counter(), time.time()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean",
                    "--log-level", "WARN", "--distpath", str(DIST), "--workpath", str(WORK),
                    str(SPEC)], cwd=ROOT, check=True)
    # Dated when the build began: a source changed while it ran makes the bundle stale.
    os.utime(EXECUTABLE, (started_at, started_at))
    return time.perf_counter() - started


def bundle_size(folder: Path = EXECUTABLE.parent) -> int:
    """Bytes of every file in the bundle's folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true",
                        help="Build only when the bundle is missing or out of date.")
    args = parser.parse_args()
    if args.if_stale:
        stale = stale_sources()
        if not stale:
            print(f"bundle up to date: {EXECUTABLE.relative_to(ROOT)}")
            return
        print(f"bundle out of date ({len(stale)} newer sources, e.g. {stale[0]}): building",
              flush=True)
    seconds = build()
    print(f"bundle built in {seconds:.0f} s: {EXECUTABLE.relative_to(ROOT)}, "
          f"{bundle_size() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
