"""A coordinator killed mid-study on a real federation (coordinator, three sites, real
processes, TLS), started again and the run resumed.

The coordinator (its process, the SuperLink and the ServerApp) is SIGKILLed once round 1 of
two is complete; after ``tessera coordinator start`` the run reads as interrupted with one
round done, and ``tessera study resume`` completes it: rounds 1 and 2 in its report, every
site takes part in every round (a site that trained round 2 before the kill sends that
update again) and every site's ledger holds exactly one DP-SGD entry per round. A completed
run does not resume again.

No process started under the test's folder outlives the test. Nothing here is timed (the
round timeout is never waited out when every site answers), so it runs beside other tests.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_app.node.procfs import cmdline
from tests.cli_federation import (
    SITES,
    Federation,
    dp_sgd_rounds,
    invoke,
    running_federation,
    signal_tree,
    submit,
    tessera,
    wait_for,
)

pytestmark = pytest.mark.slow

#: Generous: no site is meant to miss a round here, so it only bounds a failing run.
ROUND_TIMEOUT = 300


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    with running_federation(tmp_path / "resume", rounds=2) as federation:
        yield federation


def test_a_killed_coordinator_resumes_from_the_last_completed_round_without_spending_twice(
        fed: Federation) -> None:
    run_id = submit(fed, round_timeout=ROUND_TIMEOUT)
    wait_for(fed, run_id, "round_completed", 1)
    pid = int((fed.coord.process_dir / "coordinator.pid").read_text())
    killed = signal_tree(pid, signal.SIGKILL)
    assert any("flower-superlink" in line for line in killed.values()), killed
    assert any("serverapp" in line for line in killed.values()), killed
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{p}") and cmdline(p) for p in killed):
        assert time.monotonic() < deadline, "the killed coordinator is still there"
        time.sleep(0.2)
    tessera("coordinator", "start", "--coordinator-dir", fed.coord.root, kit=fed.kit)
    status = json.loads(tessera("study", "status", run_id, "--coordinator-dir",
                                fed.coord.root, "--json", kit=fed.kit))
    assert status["state"] == "interrupted", status
    assert status["rounds_done"] == 1
    code, output = invoke("study", "resume", run_id, "--coordinator-dir", fed.coord.root,
                          "--follow", kit=fed.kit)
    assert code == 0, output
    result = json.loads(fed.coord.run(run_id).result_path.read_text())
    assert result["status"] == "completed", result.get("error")
    assert result["resumed_after_round"] == 1
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert sorted(result["rounds"][0]["participating_sites"]) == list(SITES)
    for rnd in result["rounds"][1:]:
        # A site that trained round 2 just before the kill sends the same update again when
        # the resumed run asks for it with the same inputs: every site takes part.
        assert sorted(rnd["participating_sites"]) == list(SITES), rnd
        assert not rnd["refused_sites"], rnd
    for site in SITES:
        assert dp_sgd_rounds(fed, site, run_id) == [1, 2], site
    assert result["model"]["version"] >= 1
    report = tessera("study", "report", run_id, "--coordinator-dir", fed.coord.root,
                     kit=fed.kit)
    assert "report written" in report
    doc = json.loads((fed.coord.run(run_id).root / "report.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    again = invoke("study", "resume", run_id, "--coordinator-dir", fed.coord.root, kit=fed.kit)
    assert again[0] != 0 and "only an interrupted run resumes" in again[1]
