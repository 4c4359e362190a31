"""``tessera site node start|stop|status`` through the real console script (no node is
started: a stopped node and a refused start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client_app.node.controller import NodeController
from client_app.store.folder import open_site_dir
from tessera.cli import app


def _invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    root = tmp_path / "h1"
    result = _invoke("site", "init", "--site-dir", root, "--name", "h1")
    assert result.exit_code == 0, result.output
    return root


def test_node_status_and_stop_of_a_stopped_node(site_dir: Path) -> None:
    status = _invoke("site", "node", "status", "--site-dir", site_dir, "--json")
    assert status.exit_code == 0, status.output
    doc = json.loads(status.stdout)
    assert doc["running"] is False and doc["agent_up"] is False and doc["pid"] is None
    text = _invoke("site", "node", "status", "--site-dir", site_dir)
    assert "node:          stopped" in text.stdout
    stopped = _invoke("site", "node", "stop", "--site-dir", site_dir)
    assert stopped.exit_code == 0 and "not running" in stopped.stdout


def test_node_start_refuses_a_bad_superlink(site_dir: Path) -> None:
    result = _invoke("site", "node", "start", "--site-dir", site_dir, "--insecure",
                     "--superlink", "not an address")
    assert result.exit_code == 2
    assert "superlink: expected HOST:PORT" in result.stderr
    assert not NodeController(open_site_dir(site_dir)).pid_path.exists()
