"""What the site CLI tests share: invoking the site app and a fresh site folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from client_app.cli.main import app

#: A well-formed plan hash no plan has.
PLAN = "c0ffee" + "0" * 58


def invoke(*args: str) -> Result:
    """Run ``tessera site ARGS`` (the site app itself, without the access policy)."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A site folder ``h1`` with a privacy ceiling of 5, made by ``site init``."""
    root = tmp_path / "sites" / "h1"
    result = invoke("init", "--site-dir", str(root), "--name", "h1", "--ceiling", "5")
    assert result.exit_code == 0, result.output
    return root
