"""Developer benchmark of the ``tessera`` command's start-up: seconds to print help.

Usage: python scripts/bench_cli_start.py [--repeat 5] [--source DIR] [--out FILE]

Each measured command runs as a fresh process, exactly as the console script would run it
(``tessera.cli:main`` with the given arguments); the wall time includes the interpreter's
own start. ``--source DIR`` measures another checkout of the code (its folder goes first on
the import path), e.g. an older revision exported with ``git archive``, for a before/after.
The measured processes run with ``-P``: the current folder is not put on the import path, so
run from a checkout's root the script still measures DIR (or the installed code), not the
files around it; ``imported_from`` in the report names the folder the code came from.
Also reported: the heavy libraries a bare ``import tessera.cli`` loads (none is the goal).
Prints one JSON document (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("site", "--help"),
    ("--version",),
)
HEAVY = ("torch", "opacus", "tenseal", "PySide6", "flwr", "sklearn", "scipy", "dp_accounting")
_RUN = "import sys; from tessera.cli import main; sys.argv[0] = 'tessera'; main()"
_PROBE = ("import json, os, sys, tessera.cli; "
          f"print(json.dumps({{'heavy': [m for m in {list(HEAVY)!r} if m in sys.modules], "
          "'imported_from': os.path.dirname(os.path.dirname(tessera.cli.__file__))}))")
#: ``-P``: no current folder (``-c`` would put it first on the import path) on sys.path.
_PYTHON = (sys.executable, "-P")


def _env(source: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source),
                                                          env.get("PYTHONPATH", "")]))
    return env


def time_command(args: tuple[str, ...], *, repeat: int, source: Path | None) -> dict[str, object]:
    """Wall seconds of ``tessera ARGS`` over ``repeat`` fresh processes (plus one warm-up),
    and the CPU seconds (user + system) each used: on a shared, loaded machine the wall time
    also counts the waits for a core, the CPU time does not."""
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    exit_code = 0
    for index in range(repeat + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([*_PYTHON, "-c", _RUN, *args], env=_env(source),
                              capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        exit_code = done.returncode
        if index:  # the first run warms the file cache
            seconds.append(elapsed)
            cpu_seconds.append(after.ru_utime - before.ru_utime
                               + after.ru_stime - before.ru_stime)
    return {"command": " ".join(("tessera", *args)), "exit_code": exit_code,
            "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3), "max_s": round(max(seconds), 3),
            "median_cpu_s": round(statistics.median(cpu_seconds), 3),
            "runs": [round(s, 3) for s in seconds]}


def probe(source: Path | None) -> dict[str, object] | None:
    """The heavy libraries ``import tessera.cli`` loads and the file it came from (None if
    the import fails)."""
    done = subprocess.run([*_PYTHON, "-c", _PROBE], env=_env(source),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    found: dict[str, object] = json.loads(done.stdout)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs per command.")
    parser.add_argument("--source", type=Path, help="Measure the code in this folder.")
    parser.add_argument("--out", type=Path, help="Also write the JSON document here.")
    args = parser.parse_args()
    source = args.source.resolve() if args.source else None
    found = probe(source)
    document = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "source": str(source) if source else "installed",
        "imported_from": None if found is None else found["imported_from"],
        "heavy_modules_on_import": None if found is None else found["heavy"],
        "commands": [time_command(c, repeat=args.repeat, source=source) for c in COMMANDS],
    }
    text = json.dumps(document, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
