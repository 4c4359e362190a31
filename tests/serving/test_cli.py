"""The serving commands' own wiring: what their help promises matches the service."""

from __future__ import annotations

from typer.testing import CliRunner

from serving.cli import MAX_BATCH_HELP
from serving.validation import DEFAULT_MAX_BATCH
from tessera.cli import app


def test_serve_help_names_the_services_own_batch_limit() -> None:
    # serving/cli.py keeps numpy (serving.validation) out of --help, so it spells the number
    assert f"default: the service's limit, {DEFAULT_MAX_BATCH})" in MAX_BATCH_HELP
    result = CliRunner().invoke(app, ["model", "serve", "--help"])
    assert result.exit_code == 0 and "--max-batch" in result.stdout
