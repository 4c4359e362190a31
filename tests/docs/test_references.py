"""The documents name only tests and modules that exist: a renamed test or moved module must
take its documentation with it (docs are how outsiders check the product's claims)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")
_MODULE = re.compile(r"`((?:client_app|server|privacy|common|tessera|gui|protos|scripts)"
                     r"/[\w/]+\.py)")


def _missing(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    missing, last = [], None
    for match in _REF.finditer(text):
        path, name, continued = match.groups()
        if path:
            last = path
            if not (ROOT / path).is_file():
                missing.append(path)
                continue
        elif last is None:
            continue
        name = name or continued
        if name and f"def {name}(" not in (ROOT / last).read_text(encoding="utf-8"):
            missing.append(f"{last}::{name}")
    missing += [m.group(1) for m in _MODULE.finditer(text) if not (ROOT / m.group(1)).is_file()]
    return missing


def test_every_test_and_module_the_documents_name_exists() -> None:
    problems = {doc.name: _missing(doc) for doc in DOCS}
    assert {name: refs for name, refs in problems.items() if refs} == {}
