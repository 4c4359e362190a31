"""Suite-wide test settings."""

from __future__ import annotations

import pytest

#: Passphrase of site keystores made by tests (a test that needs none removes it).
TEST_PASSPHRASE = "test-suite passphrase"


@pytest.fixture(autouse=True)
def _site_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SITE_PASSPHRASE", TEST_PASSPHRASE)


#: Test files that take minutes, longest first (measured on a two-core machine). ``make
#: test`` hands whole files to its two workers in collection order
#: (``--dist loadfile --no-loadscope-reorder``), so these start first and the many short
#: files fill in at the end, where they keep both workers busy until the last one.
#: ``test_separated_site.py`` is left to the other slow files, away from
#: ``test_container_entrypoints.py``: the two take turns at adding OS accounts.
LONGEST_FILES = (
    "tests/packaging/test_desktop_bundle.py",  # builds the desktop bundle
    "tests/tessera/test_federation_faults.py",
    "tests/tessera/test_federation_by_hand.py",
    "tests/tessera/test_coordinator_resume.py",
    "tests/scripts/test_bench.py",
    "tests/tessera/test_demo_e2e.py",
    "tests/packaging/test_wheel.py",
    "tests/packaging/test_container_entrypoints.py",
)


def _file_rank(items: list[pytest.Item]) -> dict[str, int]:
    """Each test file's place: the longest files first, then any other file with a test
    marked slow, then the rest (each group in collection order)."""
    slow = {item.nodeid.split("::", 1)[0] for item in items
            if item.get_closest_marker("slow") is not None}
    rank = {path: place for place, path in enumerate(LONGEST_FILES)}
    return {path: rank.get(path, len(rank) + (0 if path in slow else 1))
            for path in {item.nodeid.split("::", 1)[0] for item in items}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run by file, longest files first; a file's tests stay together and in
    their order (the sort is stable)."""
    rank = _file_rank(items)
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])
