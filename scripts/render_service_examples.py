"""Write the example systemd units of ``packaging/systemd/`` from the one renderer.

Usage: python scripts/render_service_examples.py [--out packaging/systemd]

The examples are what ``tessera site install-service`` writes for site ``site-a`` with its
folder in ``/srv/tessera/site-a``, Tessera installed in ``/opt/tessera/venv`` and the default
accounts; tests/packaging/test_systemd_examples.py fails when they drift from the renderer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from client_app.node.services import ServiceLayout, render_units
from common.workdir import SiteDir

ROOT = Path(__file__).resolve().parent.parent


def example_layout() -> ServiceLayout:
    """The layout the examples show."""
    return ServiceLayout(
        site=SiteDir(root=Path("/srv/tessera/site-a"), name="site-a"),
        superlink="superlink.example.org:9092",
        node_home=Path("/var/lib/tessera-node/site-a"),
        credential=Path("/etc/tessera/site-a/site-passphrase.cred"),
        bin_dir=Path("/opt/tessera/venv/bin"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "packaging" / "systemd")
    args = parser.parse_args()
    for name, text in render_units(example_layout()).items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
