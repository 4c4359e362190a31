"""Mutual TLS: a real service on 127.0.0.1 that requires client certificates (made with the
``cryptography`` package) knows each caller's role from its certificate's OU, needs no token,
and completes no handshake without a certificate of its CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.mtls import ClientIdentity, identity_of
from tests.registered import RegisteredStudy, raw_rows, registered_study
from tests.serving.certificates import Pki
from tests.serving.service_process import free_port, serving

pytestmark = pytest.mark.slow


@dataclass
class MtlsService:
    study: RegisteredStudy
    url: str
    pki: Pki
    certs: dict[str, tuple[Path, Path]]

    def client(self, who: str | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if who is not None:
            cert, key = self.certs[who]
            context.load_cert_chain(str(cert), str(key))
        return httpx.Client(base_url=self.url, timeout=30.0, verify=context)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsService]:
    root = tmp_path_factory.mktemp("mtls")
    study = registered_study(root)
    pki = Pki(root / "pki")
    server_cert, server_key = pki.issue("server", common_name="127.0.0.1", server=True)
    certs = {"operator": pki.issue("operator", common_name="ehr-gateway",
                                   units=("site_operator",)),
             "auditor": pki.issue("auditor", common_name="audit-desk", units=("auditor",)),
             "nobody": pki.issue("nobody", common_name="no-role", units=("radiology",)),
             "stranger": Pki(root / "other", "Other CA").issue(
                 "stranger", common_name="x", units=("site_operator",))}
    port = free_port()
    state = MtlsService(study, f"https://127.0.0.1:{port}", pki, certs)

    def ready() -> bool:
        with state.client("operator") as client:
            return client.get("/readyz").status_code == 200

    with serving(["--kit", str(study.kit), "model", "serve", "--coordinator-dir",
                  str(study.coordinator_dir), "--port", str(port), "--tls-cert",
                  str(server_cert), "--tls-key", str(server_key), "--tls-client-ca",
                  str(pki.ca)], log=root / "serve.log", ready=ready):
        yield state


def _rows(study: RegisteredStudy) -> list[dict[str, float]]:
    X = raw_rows(study, 4, seed=3)
    return [dict(zip(study.features, map(float, row), strict=True)) for row in X]


def test_a_certificate_with_a_role_needs_no_token(service: MtlsService) -> None:
    with service.client("operator") as client:
        response = client.post("/v1/models/breast_cancer/predict",
                               json={"rows": _rows(service.study)})
    assert response.status_code == 200, response.text
    scores = np.asarray(response.json()["scores"])
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))


def test_the_access_policy_decides_what_the_certificate_role_may_call(
        service: MtlsService) -> None:
    with service.client("auditor") as client:
        assert client.get("/v1/models").status_code == 200
        refused = client.post("/v1/models/breast_cancer/predict",
                              json={"rows": _rows(service.study)})
    assert refused.status_code == 403 and "auditor" in refused.json()["detail"]


def test_a_certificate_without_a_role_is_refused(service: MtlsService) -> None:
    with service.client("nobody") as client:
        response = client.get("/v1/models")
    assert response.status_code == 403 and "no single role" in response.json()["detail"]


@pytest.mark.parametrize("who", [None, "stranger"])
def test_no_handshake_without_a_certificate_of_the_services_ca(service: MtlsService,
                                                                who: str | None) -> None:
    with pytest.raises(httpx.TransportError), service.client(who) as client:
        client.get("/v1/models")


def test_identity_reads_cn_and_ous_and_needs_exactly_one_role() -> None:
    cert = {"subject": ((("commonName", "gw"),), (("organizationalUnitName", "site_operator"),),
                        (("organizationalUnitName", "radiology"),))}
    identity = identity_of(cert)
    assert identity == ClientIdentity("gw", ("site_operator", "radiology"))
    assert identity is not None and identity.role is not None
    assert identity.role.value == "site_operator"
    assert ClientIdentity("x", ("auditor", "coordinator")).role is None
    assert identity_of(None) is None and identity_of({}) is None
