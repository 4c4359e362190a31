"""The serving commands' own wiring: what their help promises matches the service."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from serving import releases
from serving.cli import MAX_BATCH_HELP, release
from serving.validation import DEFAULT_MAX_BATCH
from tessera.cli import app


def test_serve_help_names_the_services_own_batch_limit() -> None:
    # serving/cli.py keeps numpy (serving.validation) out of --help, so it spells the number
    assert f"default: the service's limit, {DEFAULT_MAX_BATCH})" in MAX_BATCH_HELP
    result = CliRunner().invoke(app, ["model", "serve", "--help"])
    assert result.exit_code == 0 and "--max-batch" in result.stdout


def test_release_defaults_are_the_rollback_guards_own() -> None:
    # serving/cli.py keeps the database layer (serving.releases) out of --help, so it spells
    # the rollback guard's defaults; they must stay the guard's
    parameters = inspect.signature(release).parameters
    assert parameters["max_error_rate"].default == releases.DEFAULT_MAX_ERROR_RATE
    assert parameters["max_score_psi"].default == releases.DEFAULT_MAX_SCORE_PSI
    assert parameters["min_requests"].default == releases.DEFAULT_MIN_REQUESTS
    assert releases.Thresholds() == releases.Thresholds(
        parameters["max_error_rate"].default, parameters["max_score_psi"].default,
        parameters["min_requests"].default)
