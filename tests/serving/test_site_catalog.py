"""A site serves the final models it kept (``tessera model serve --site-dir``): a real process
on 127.0.0.1 with the site's own API tokens, the ONNX graph checked at export on the site's
own rows and that check recorded at the site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from client_app.custody.vault import unlock_vault
from client_app.learning.local_eval import stored_models
from client_app.learning.site_data import load_split
from client_app.store.folder import open_site_dir
from client_app.store.site_store import SiteStore
from common.models import predict_scores
from common.plan import parse_plan
from privacy.passphrase import PASSPHRASE_ENV_VAR
from server.predict import load_model
from serving.site_catalog import model_document
from tessera.cli import app
from tests.registered import PASSPHRASE, RegisteredStudy, raw_rows, registered_study
from tests.serving.service_process import free_port, serving

pytestmark = pytest.mark.slow


@dataclass
class SiteService:
    study: RegisteredStudy
    site: Path
    url: str
    token: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteService]:
    root = tmp_path_factory.mktemp("site-serve")
    study = registered_study(root)
    site = study.sites[0]
    created = CliRunner().invoke(app, ["model", "token", "create", "--site-dir", str(site),
                                       "--name", "ward-app", "--role", "site_operator"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(["model", "serve", "--site-dir", str(site), "--port", str(port),
                  "--allow-unpromotable"], log=root / "site-serve.log",
                 ready=lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
                 env={PASSPHRASE_ENV_VAR: PASSPHRASE}):
        yield SiteService(study=study, site=site, url=url, token=token)


def _kept(site: Path) -> dict[str, Any]:
    vault = unlock_vault(open_site_dir(site), PASSPHRASE)
    newest = stored_models(vault)[0]
    doc = json.loads(vault.read_model(newest.name))
    assert isinstance(doc, dict)
    return doc


def test_the_site_serves_its_kept_model_with_its_scores(service: SiteService) -> None:
    X = raw_rows(service.study, 16, seed=5)
    rows = [dict(zip(service.study.features, map(float, r), strict=True)) for r in X]
    headers = {"Authorization": f"Bearer {service.token}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
        listed = client.get("/v1/models").json()["models"]
        response = client.post("/v1/models/breast_cancer/predict", json={"rows": rows})
    assert [(m["study"], m["version"], m["promotable"]) for m in listed] == [
        ("breast_cancer", 1, None)]
    assert response.status_code == 200, response.text
    model, _, mean, std = load_model(model_document(_kept(service.site)))
    np.testing.assert_allclose(response.json()["scores"], predict_scores(model, (X - mean) / std),
                               atol=1e-5)
    assert httpx.get(f"{service.url}/v1/models").status_code == 401  # tokens still required


def test_parity_on_the_sites_own_rows_is_recorded_at_export(service: SiteService) -> None:
    records = list((service.site / "serving" / "exports").glob("*.fp32.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    kept = _kept(service.site)
    vault = unlock_vault(open_site_dir(service.site), PASSPHRASE)
    split = load_split(vault, parse_plan(kept["plan_toml"]))
    assert record["parity"]["source"] == "site" and record["parity"]["passed"] is True
    assert record["parity"]["rows"] == len(split.train.y) + len(split.test.y)
    assert record["parity"]["max_abs_diff"] <= 1e-5
    assert record["dataset_version"] == split.dataset_version
    with SiteStore.open(open_site_dir(service.site)) as store:
        kinds = [e.kind for e in store.events()]
    assert "model_exported" in kinds


def test_a_site_refuses_to_serve_without_allow_unpromotable(service: SiteService) -> None:
    result = CliRunner().invoke(app, ["model", "serve", "--site-dir", str(service.site)],
                                env={PASSPHRASE_ENV_VAR: PASSPHRASE})
    assert result.exit_code != 0 and "--allow-unpromotable" in result.output


def test_serve_needs_exactly_one_folder(service: SiteService) -> None:
    result = CliRunner().invoke(app, ["--kit", str(service.study.kit), "model", "serve"])
    assert result.exit_code != 0 and "exactly one of --coordinator-dir or --site-dir" in \
        result.output


def test_a_site_that_kept_no_model_is_told_so(tmp_path: Path) -> None:
    from client_app.custody.vault import create_vault
    from client_app.store.folder import init_site_dir
    from common.errors import ErrorCode, TesseraError
    from serving.site_catalog import SiteCatalog

    vault = create_vault(init_site_dir(tmp_path / "site", name="site-x"), "pw")
    with pytest.raises(TesseraError) as err:
        SiteCatalog(vault, allow_unpromotable=True)
    assert err.value.code == ErrorCode.NOT_FOUND
    assert "kept no final model" in err.value.message
