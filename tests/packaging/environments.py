"""Python environments for the packaging tests, made without downloading anything.

:func:`recreate_console_scripts` writes the console scripts of an installed distribution
(Flower's ``flower-supernode``, ``flwr``...) into another environment's bin folder, as
installing that distribution there would. :func:`shared_environment` gives a bin folder
whose Python every account can run: this interpreter's when every folder above it is
world-traversable, else a new virtual environment on a system Python 3.11 that reaches this
environment's packages and this checkout through a ``.pth`` file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """#!{python}
import sys
from {module} import {attr}
sys.exit({call}())
"""


def recreate_console_scripts(bin_dir: Path, *, distribution: str = "flwr") -> None:
    """Write ``distribution``'s console scripts into ``bin_dir``, run by its ``python``."""
    python = bin_dir / "python"
    for entry in metadata.distribution(distribution).entry_points:
        if entry.group == "console_scripts":
            module, _, call = entry.value.partition(":")
            script = bin_dir / entry.name
            script.write_text(_SCRIPT.format(python=python, module=module,
                                             attr=call.split(".")[0], call=call),
                              encoding="utf-8")
            script.chmod(0o755)


def _reachable_by_everyone(path: Path) -> bool:
    path = path.resolve()
    folders_ok = all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    return folders_ok and bool(path.stat().st_mode & stat.S_IXOTH)


def shared_environment(base: Path) -> Path | None:
    """A bin folder whose ``python`` (this checkout, these packages) any account can run;
    None when there is none to be had."""
    here = Path(sys.executable).parent
    if _reachable_by_everyone(Path(sys.executable)) and _reachable_by_everyone(ROOT):
        return here
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = next((Path(p) for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}")
                   if Path(p).exists() and _reachable_by_everyone(Path(p))), None)
    if system is None or not _reachable_by_everyone(ROOT):
        return None
    venv = base / "shared-venv"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    query = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", query], check=True,
                                  capture_output=True, text=True, timeout=60).stdout.strip())
    (purelib / "project.pth").write_text(
        f"{sysconfig.get_path('purelib')}\n{ROOT}\n", encoding="utf-8")
    recreate_console_scripts(venv / "bin")
    os.chmod(venv, 0o755)
    return venv / "bin"
