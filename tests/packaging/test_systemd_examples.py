"""packaging/systemd/ holds exactly what the renderer writes for the example site."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "packaging" / "systemd"


def test_the_example_units_are_what_install_service_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "render_service_examples.py"),
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    rendered = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.service")}
    shipped = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLES.glob("*.service")}
    assert len(rendered) == 2
    assert shipped == rendered, ("packaging/systemd/ is stale: run "
                                 "python scripts/render_service_examples.py")
