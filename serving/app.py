"""The HTTP face of the prediction service (FastAPI); the logic is in :mod:`serving.service`.

Endpoints (OpenAPI document at ``/openapi.json``, browsable at ``/docs``):

* ``GET /healthz``: the process answers; ``GET /readyz``: every served study has a model;
* ``GET /v1/models``: served versions, hashes, release role and promotable flag;
* ``POST /v1/models/{study}/predict[?explain=true]``: scores, labels and model version for
  ``rows`` of raw feature values; ``X-Request-Key`` keeps a caller on one side of a canary,
  ``X-Model-Version`` names a served version (e.g. a blue-green candidate);
* ``GET /metrics``: Prometheus text format.

Bad input gets 422 with one entry per problem naming the row and field, never the value:
FastAPI's own validation errors (which echo the input) are rewritten the same way.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from serving.mtls import PEER_STATE_KEY, ClientIdentity
from serving.service import PredictionService, RefusedError
from serving.validation import InvalidRequestError, Problem

_bearer = HTTPBearer(auto_error=False, description="An API token: tessera model token create")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


class PredictRequest(BaseModel):
    """Rows of raw feature values, by feature name (other fields are ignored)."""

    rows: list[dict[str, Any]] = Field(description="One object per patient: feature -> number.")
    request_key: str | None = Field(default=None, max_length=256, description=(
        "Keeps this caller on one side of a canary (same as the X-Request-Key header)."))


class Explanation(BaseModel):
    method: str
    logit: float
    baseline_logit: float
    contributions: dict[str, float]
    top_features: list[str]


class PredictResponse(BaseModel):
    study: str
    version: int
    model_sha256: str
    precision: str
    threshold: float
    scores: list[float]
    labels: list[int]
    explanations: list[Explanation] | None = None


def _problems(status: int, problems: tuple[Problem, ...] | list[Problem]) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "detail": "the request cannot be scored", "errors": [p.to_json() for p in problems]})


def _from_validation(exc: RequestValidationError) -> list[Problem]:
    """FastAPI's errors as problems: location and message only (no ``input``, no ``ctx``)."""
    problems = []
    for error in exc.errors():
        loc = [part for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            problems.append(Problem(None, "body", "is not valid JSON"))
        elif len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int):
            field = str(loc[2]) if len(loc) > 2 else "*"
            problems.append(Problem(loc[1], field, str(error.get("msg", "is not valid"))))
        else:
            where = ".".join(str(p) for p in loc) or "body"
            problems.append(Problem(None, where, str(error.get("msg", "is not valid"))))
    return problems


def create_app(service: PredictionService) -> FastAPI:
    """The FastAPI application of ``service``."""
    app = FastAPI(title="Tessera prediction service", version="1",
                  description="Scores patients with registered Tessera models (ONNX Runtime).")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        service.metrics.errors.labels("invalid").inc()
        return _problems(422, _from_validation(exc))

    @app.exception_handler(InvalidRequestError)
    async def _invalid_rows(_: Request, exc: InvalidRequestError) -> JSONResponse:
        return _problems(422, exc.problems)

    @app.exception_handler(RefusedError)
    async def _refused(_: Request, exc: RefusedError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(status_code=exc.status, content={"detail": exc.message},
                            headers=headers)

    def token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
        return credentials.credentials if credentials is not None else None

    def peer(request: Request) -> ClientIdentity | None:
        """The verified client certificate of the connection (mutual TLS only)."""
        found = request.scope.get("state", {}).get(PEER_STATE_KEY)
        return found if isinstance(found, ClientIdentity) else None

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Every served study has a loaded model")
    def readyz() -> JSONResponse:
        ready = service.ready()
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "not ready"})

    @app.get("/v1/models", summary="Served model versions")
    def models(request: Request, credentials: Bearer) -> dict[str, Any]:
        service.authorize(token(credentials), "api models", peer=peer(request))
        return {"models": service.models()}

    @app.post("/v1/models/{study}/predict", response_model=PredictResponse,
              response_model_exclude_none=True, summary="Score rows of raw feature values")
    def predict(request: Request, study: str, body: PredictRequest, credentials: Bearer,
                explain: Annotated[bool, Query(
                    description="Add each feature's contribution to the logit.")] = False,
                x_request_key: Annotated[str | None, Header(max_length=256)] = None,
                x_model_version: Annotated[int | None, Header(ge=1)] = None,
                ) -> dict[str, Any]:
        service.authorize(token(credentials), "api predict", peer=peer(request))
        return service.predict(study, body.rows, key=x_request_key or body.request_key,
                               pinned=x_model_version, explain=explain)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics(request: Request, credentials: Bearer) -> Response:
        service.authorize(token(credentials), "api metrics", peer=peer(request))
        return Response(content=service.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return app
