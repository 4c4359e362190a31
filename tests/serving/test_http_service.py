"""The prediction service as a real process on 127.0.0.1, answered by an HTTP client.

One module-wide service (``tessera model serve`` in a subprocess) serves a model registered
by a real in-process study; the tests call it with httpx, scrape ``/metrics`` with the
Prometheus text parser, and run releases against it from the command line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from common.cli_options import login_name
from common.models import predict_scores
from server.predict import explain_file, load_model, parse_model_document
from server.registry import ModelRegistry
from serving.catalog import REFRESH_S
from tessera.access import KIT_ENV_VAR, POLICY_ENV_VAR
from tessera.cli import app
from tests.registered import (
    RegisteredStudy,
    raw_rows,
    register_variant,
    registered_study,
)

SECRET = 987654.321  # a value that must never come back in an error or a log


@dataclass
class Service:
    study: RegisteredStudy
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    tokens: dict[str, str]

    def client(self, role: str = "site_operator") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0,
                            headers={"Authorization": f"Bearer {self.tokens[role]}"})


def _tessera(study: RegisteredStudy, *args: str | Path) -> Any:
    result = CliRunner().invoke(app, ["--kit", str(study.kit), *[str(a) for a in args]])
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    study = registered_study(tmp_path_factory.mktemp("serve"))
    tokens = {}
    for role in ("coordinator", "site_operator", "auditor"):
        result = _tessera(study, "model", "token", "create", "--coordinator-dir",
                          study.coordinator_dir, "--name", f"{role}-client", "--role", role)
        assert result.exit_code == 0, result.output
        tokens[role] = result.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = study.workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in (KIT_ENV_VAR, POLICY_ENV_VAR)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", "--kit", str(study.kit), "model", "serve",
             "--coordinator-dir", str(study.coordinator_dir), "--port", str(port),
             "--access-log"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.3)
        yield Service(study=study, url=url, process=process, log=log, tokens=tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _rows(study: RegisteredStudy, X: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(study.features, map(float, row), strict=True)) for row in X]


def _doc(study: RegisteredStudy, version: int = 1) -> dict[str, Any]:
    with ModelRegistry.open(study.coordinator_dir) as registry:
        return parse_model_document(registry.load_bytes(registry.get("breast_cancer",
                                                                     version)))


def test_served_model_answers_with_the_registered_models_scores(service: Service) -> None:
    X = raw_rows(service.study, 64, seed=1)
    with service.client() as client:
        response = client.post("/v1/models/breast_cancer/predict",
                               json={"rows": _rows(service.study, X)})
    assert response.status_code == 200, response.text
    body = response.json()
    model, _, mean, std = load_model(_doc(service.study))
    expected = predict_scores(model, (X - mean) / std)
    assert body["version"] == 1 and body["model_sha256"] == service.study.model.sha256
    np.testing.assert_allclose(body["scores"], expected, atol=1e-5)
    assert body["labels"] == [int(s >= 0.5) for s in body["scores"]]
    assert 0 < sum(body["labels"]) < len(X)


def test_explain_returns_what_model_predict_explain_gives(service: Service) -> None:
    X = raw_rows(service.study, 5, seed=2)
    with service.client() as client:
        response = client.post("/v1/models/breast_cancer/predict", params={"explain": "true"},
                               json={"rows": _rows(service.study, X)})
    assert response.status_code == 200, response.text
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["patient_id", *service.study.features])
    writer.writerows([[f"p{i}", *map(repr, map(float, row))] for i, row in enumerate(X)])
    _, _, _, explanation = explain_file(_doc(service.study), out.getvalue().encode(),
                                        source_name="rows.csv")
    got = response.json()["explanations"]
    for i, row in enumerate(got):
        assert row["top_features"] == explanation.top(3)[i]
        np.testing.assert_allclose([row["contributions"][f] for f in explanation.features],
                                   explanation.contributions[i], rtol=1e-9, atol=1e-12)


def test_bad_rows_get_422_naming_row_and_field_and_the_service_keeps_serving(
        service: Service) -> None:
    rows = _rows(service.study, raw_rows(service.study, 3))
    rows[1]["mean_radius"] = str(SECRET)
    del rows[2]["worst_area"]
    with service.client() as client:
        bad = client.post("/v1/models/breast_cancer/predict", json={"rows": rows})
        broken = client.post("/v1/models/breast_cancer/predict", content=b"{\"rows\": [",
                             headers={"Content-Type": "application/json"})
        good = client.post("/v1/models/breast_cancer/predict", json={"rows": rows[:1]})
    assert bad.status_code == 422
    errors = bad.json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(1, "mean_radius"), (2, "worst_area")]
    assert str(SECRET) not in bad.text
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "body"
    assert good.status_code == 200
    assert str(SECRET) not in service.log.read_text()


def test_tokens_and_roles_decide_who_may_call(service: Service) -> None:
    rows = {"rows": _rows(service.study, raw_rows(service.study, 1))}
    assert httpx.post(f"{service.url}/v1/models/breast_cancer/predict", json=rows
                      ).status_code == 401
    with service.client("auditor") as auditor:
        assert auditor.get("/v1/models").status_code == 200
        assert auditor.post("/v1/models/breast_cancer/predict", json=rows).status_code == 403
    with service.client() as operator:
        assert operator.get("/metrics").status_code == 403
        assert operator.post("/v1/models/unknown/predict", json=rows).status_code == 404
    result = _tessera(service.study, "model", "token", "create", "--coordinator-dir",
                      service.study.coordinator_dir, "--name", "short-lived")
    token = result.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{service.url}/v1/models/breast_cancer/predict"
    assert httpx.post(url, json=rows, headers=headers).status_code == 200
    token_id = token.split("_")[1]
    revoked = _tessera(service.study, "model", "token", "revoke", token_id,
                       "--coordinator-dir", service.study.coordinator_dir, "--json")
    assert revoked.exit_code == 0, revoked.output
    record = json.loads(revoked.stdout)
    assert (record["name"], record["role"]) == ("short-lived", "site_operator")
    assert record["token_id"] == token_id and record["revoked_at"] is not None
    assert httpx.post(url, json=rows, headers=headers).status_code == 401


def _metrics(service: Service) -> dict[str, list[Any]]:
    with service.client("coordinator") as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def _sample(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_requests_latency_and_scores_per_version(service: Service) -> None:
    before = _metrics(service)
    with service.client() as client:
        for seed in range(3):
            client.post("/v1/models/breast_cancer/predict",
                        json={"rows": _rows(service.study, raw_rows(service.study, 4,
                                                                    seed=seed))})
    after = _metrics(service)
    ok = {"study": "breast_cancer", "version": "1", "outcome": "ok"}
    assert _sample(after["tessera_predict_requests"], "tessera_predict_requests_total", **ok) \
        - _sample(before.get("tessera_predict_requests", []),
                  "tessera_predict_requests_total", **ok) == 3
    assert _sample(after["tessera_predict_latency_seconds"],
                   "tessera_predict_latency_seconds_count", version="1") >= 3
    scores = _sample(after["tessera_prediction_score"], "tessera_prediction_score_count",
                     version="1")
    assert scores >= 12
    assert _sample(after["tessera_errors"], "tessera_errors_total", kind="invalid") >= 1


def test_openapi_document_and_docs_are_served(service: Service) -> None:
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert "/v1/models/{study}/predict" in spec["paths"]
    assert httpx.get(f"{service.url}/docs").status_code == 200
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}


def _versions(service: Service, keys: list[str], **extra: Any) -> list[int]:
    rows = {"rows": _rows(service.study, raw_rows(service.study, 5, seed=11))}
    out = []
    with service.client() as client:
        for key in keys:
            response = client.post("/v1/models/breast_cancer/predict", json=rows,
                                   headers={"X-Request-Key": key, **extra})
            assert response.status_code == 200, response.text
            out.append(response.json()["version"])
    return out


def _audit_events(study: RegisteredStudy) -> list[str]:
    log = study.coordinator_dir / "audit" / "coordinator.log"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line["header"]["event"] for line in lines if line.get("type") == "record"]


def test_a_degrading_canary_is_rolled_back_automatically(service: Service) -> None:
    study = service.study
    register_variant(study, lambda values: -values)  # v2 scores every patient the other way
    result = _tessera(study, "model", "release", "breast_cancer", "--coordinator-dir",
                      study.coordinator_dir, "--canary", "2", "--percent", "50",
                      "--min-requests", "20")
    assert result.exit_code == 0, result.output
    time.sleep(REFRESH_S * 2)
    seen = _versions(service, [f"k{i}" for i in range(120)])
    assert 2 in seen, "the canary took traffic before it was rolled back"
    assert seen[-20:] == [1] * 20
    state = json.loads(_tessera(study, "model", "releases", "breast_cancer",
                                "--coordinator-dir", study.coordinator_dir, "--json").stdout)
    assert state["state"]["candidate"] is None and state["state"]["stable"] == 1
    last = state["events"][-1]
    assert last["action"] == "model_rolled_back" and last["actor"] == "prediction-service"
    assert "score PSI" in last["details"]["reason"]
    assert _audit_events(study)[-2:] == ["model_release", "model_rolled_back"]
    assert _sample(_metrics(service)["tessera_release_rollbacks"],
                   "tessera_release_rollbacks_total", study="breast_cancer") == 1


def test_canary_is_sticky_then_promoted_and_blue_green_waits_for_promotion(
        service: Service) -> None:
    study = service.study
    v3 = register_variant(study, lambda values: values * 1.0001)
    released = _tessera(study, "model", "release", "breast_cancer", "--coordinator-dir",
                        study.coordinator_dir, "--canary", str(v3.version), "--percent", "30",
                        "--json")
    assert released.exit_code == 0, released.output
    doc = json.loads(released.stdout)
    assert (doc["study"], doc["action"], doc["actor"]) == ("breast_cancer", "released",
                                                           login_name())
    assert (doc["state"]["stable"], doc["state"]["candidate"], doc["state"]["mode"],
            doc["state"]["percent"]) == (1, v3.version, "canary", 30.0)
    time.sleep(REFRESH_S * 2)
    keys = [f"patient-{i}" for i in range(60)]
    first = _versions(service, keys)
    assert first == _versions(service, keys)
    assert set(first) == {1, v3.version}
    promoted = _tessera(study, "model", "promote", "breast_cancer", "--coordinator-dir",
                        study.coordinator_dir, "--actor", "dr-lee", "--json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["state"]["stable"] == v3.version
    time.sleep(REFRESH_S * 2)
    assert set(_versions(service, keys[:10])) == {v3.version}
    assert _tessera(study, "model", "release", "breast_cancer", "--coordinator-dir",
                    study.coordinator_dir, "--blue-green", "1").exit_code == 0
    time.sleep(REFRESH_S * 2)
    assert set(_versions(service, keys[:10])) == {v3.version}
    assert set(_versions(service, keys[:3], **{"X-Model-Version": "1"})) == {1}
    rolled = _tessera(study, "model", "rollback", "breast_cancer", "--coordinator-dir",
                      study.coordinator_dir, "--json")
    assert rolled.exit_code == 0, rolled.output
    assert {k: v for k, v in json.loads(rolled.stdout).items() if k != "state"} == {
        "study": "breast_cancer", "action": "rolled_back", "actor": login_name()}
    time.sleep(REFRESH_S * 2)
    with service.client() as client:
        pinned = client.post("/v1/models/breast_cancer/predict", headers={
            "X-Model-Version": "1"}, json={"rows": _rows(study, raw_rows(study, 1))})
    assert pinned.status_code == 404
    history = json.loads(_tessera(study, "model", "releases", "breast_cancer",
                                  "--coordinator-dir", study.coordinator_dir, "--json"
                                  ).stdout)["events"]
    assert [e["actor"] for e in history[-4:]] == [login_name(), "dr-lee", login_name(),
                                                   login_name()]
    events = [e["action"] for e in history]
    assert events == ["model_release", "model_rolled_back", "model_release", "model_promoted",
                      "model_release", "model_rolled_back"]
    assert _audit_events(study)[-4:] == ["model_release", "model_promoted", "model_release",
                                         "model_rolled_back"]
