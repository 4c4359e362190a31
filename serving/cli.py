"""``tessera model serve | token | release | promote | rollback | releases``: wiring only.

These commands join ``tessera model ...`` (:mod:`server.model_cli`): :data:`model_app` is
that group with the serving commands added, and the ``tessera`` command mounts it. Errors
pass through the one CLI boundary.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.cli_boundary import cli_boundary
from common.cli_options import ActorOption, JsonOption, print_json
from common.errors import ErrorCode, TesseraError
from common.roles import Role
from common.workdir import CoordinatorDir as CoordinatorLayout
from privacy.manifest import KIT_FILE
from server.model_cli import CoordinatorDir, open_registry
from server.model_cli import app as model_app

# The registry, release and token stores bring the database layer (SQLAlchemy, SQLModel,
# Alembic): imported inside the commands, so that --help stays light.
if TYPE_CHECKING:
    from server.registry import ModelRegistry, ModelVersion
    from serving.releases import Release
    from serving.tokens import TokenStore

__all__ = ["model_app"]

#: The help of ``serve --max-batch``: its default is the service's own limit,
#: ``serving.validation.DEFAULT_MAX_BATCH``, named here by value (that module loads numpy).
MAX_BATCH_HELP = "Most rows per request (default: the service's limit, 1024)."
#: The rollback guard's defaults, ``serving.releases.DEFAULT_*``, named here by value (that
#: module loads the database layer); tests/tessera/test_cli_start.py checks they agree.
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MAX_SCORE_PSI = 0.25
DEFAULT_MIN_REQUESTS = 50
token_app = typer.Typer(
    help="API tokens of the prediction service.\n\nExample: tessera model token create "
         "--name ehr-gateway --coordinator-dir coordinator", no_args_is_help=True)
model_app.add_typer(token_app, name="token")
Study = Annotated[str, typer.Argument(help="The study name.")]
AsJson = JsonOption
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


SiteDir = Annotated[Path | None, typer.Option(
    "--site-dir", help="A site folder: serve (or manage tokens of) the models this site kept.")]
OptionalCoordinatorDir = Annotated[Path | None, typer.Option(
    "--coordinator-dir", help="The coordinator folder (holds coordinator.db and models/).")]


def _one_folder(coordinator_dir: Path | None, site_dir: Path | None) -> None:
    if (coordinator_dir is None) == (site_dir is None):
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           "give exactly one of --coordinator-dir or --site-dir")


def _token_store(coordinator_dir: Path | None, site_dir: Path | None) -> TokenStore:
    """The token store of a coordinator's service or of a site's."""
    from serving.tokens import TokenStore
    _one_folder(coordinator_dir, site_dir)
    if site_dir is not None:
        from client_app.store.folder import open_site_dir

        return TokenStore.at_site(open_site_dir(site_dir).root)
    assert coordinator_dir is not None
    open_registry(coordinator_dir).close()
    return TokenStore(coordinator_dir)


def _check_tls(tls_cert: Path | None, tls_key: Path | None,
               tls_client_ca: Path | None) -> None:
    if (tls_cert is None) != (tls_key is None):
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--tls-client-ca needs --tls-cert")
    for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key),
                         ("--tls-client-ca", tls_client_ca)):
        if path is not None and not path.is_file():
            raise TesseraError(ErrorCode.NOT_FOUND, f"{option}: {path} is not a file")


@model_app.command("serve")
def serve(
    coordinator_dir: OptionalCoordinatorDir = None,
    site_dir: SiteDir = None,
    study: Annotated[str | None, typer.Option(help="Serve only this study.")] = None,
    version: Annotated[int | None, typer.Option(
        min=1, help="Serve this version (needs --study; default: the release state, else the "
        "newest promotable version; at a site: the newest kept model).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="Require client certificates signed by this CA (mutual TLS): the certificate's "
        "OU names the caller's role and no API token is needed.")] = None,
    precision: Annotated[str, typer.Option(help="'fp32' or 'int8' graphs.")] = "fp32",
    max_batch: Annotated[int | None, typer.Option(
        min=1, max=100_000, help=MAX_BATCH_HELP, show_default=False)] = None,
    allow_unpromotable: Annotated[bool, typer.Option(
        "--allow-unpromotable", help="Also serve models that missed their KPI gates (at a "
        "site, whose verdict it does not know: required).")] = False,
    access_log: Annotated[bool, typer.Option(
        "--access-log", help="Log one line per request (method, path, status).")] = False,
) -> None:
    """Serve registered models (or a site's kept models) over HTTP until stopped."""
    import uvicorn

    from client_app.custody.caller import load_access_policy
    from serving.app import create_app
    from serving.catalog import Catalog
    from serving.mtls import PeerCertProtocol
    from serving.service import PredictionService
    from serving.site_catalog import SiteCatalog
    from serving.tokens import TokenStore
    from serving.validation import DEFAULT_MAX_BATCH

    with cli_boundary():
        _one_folder(coordinator_dir, site_dir)
        _check_tls(tls_cert, tls_key, tls_client_ca)
        catalog: Catalog | SiteCatalog
        if site_dir is not None:
            from client_app.custody.vault import unlock_vault
            from client_app.store.folder import open_site_dir

            site = open_site_dir(site_dir)
            policy = load_access_policy(site_dir=site.root)
            catalog = SiteCatalog(unlock_vault(site), study=study, version=version,
                                  precision=precision, allow_unpromotable=allow_unpromotable)
            tokens = TokenStore.at_site(site.root)
        else:
            assert coordinator_dir is not None
            open_registry(coordinator_dir).close()
            kit = CoordinatorLayout(coordinator_dir).kit_dir
            policy = load_access_policy(kit=kit if (kit / KIT_FILE).is_file() else None)
            catalog = Catalog(coordinator_dir, study=study, version=version,
                              precision=precision, allow_unpromotable=allow_unpromotable)
            tokens = TokenStore(coordinator_dir)
        service = PredictionService(catalog, tokens, policy,
                                    max_batch=DEFAULT_MAX_BATCH if max_batch is None
                                    else max_batch,
                                    client_certs=tls_client_ca is not None)
    if tls_cert is None and host not in _LOOPBACK:
        typer.echo(f"WARNING: serving on {host} without TLS: tokens and patient rows cross "
                   "the network in clear text", err=True)
    scheme = "https" if tls_cert else "http"
    for model in service.models():
        typer.echo(f"serving {model['study']} v{model['version']} ({model['role']}, "
                   f"{model['precision']}, onnx sha256 {str(model['onnx_sha256'])[:16]})")
    who = "client certificates (OU = role)" if tls_client_ca else "API tokens"
    typer.echo(f"listening on {scheme}://{host}:{port} (API docs at /docs; callers known by "
               f"{who})", err=False)
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning",
                    access_log=access_log,
                    http=PeerCertProtocol if tls_client_ca else "auto",
                    ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None,
                    ssl_ca_certs=str(tls_client_ca) if tls_client_ca else None,
                    ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca else ssl.CERT_NONE)
    finally:
        service.close()


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses the token (e.g. ehr-gateway).")],
    role: Annotated[Role, typer.Option(help="The access-policy role the token acts in.")] =
        Role.SITE_OPERATOR,
    coordinator_dir: OptionalCoordinatorDir = None, site_dir: SiteDir = None,
) -> None:
    """Issue an API token; it is printed once and stored only as a hash."""
    with cli_boundary():
        with _token_store(coordinator_dir, site_dir) as tokens:
            issued = tokens.create(name=name, role=role)
    typer.echo(f"token {issued.record.token_id} for {name} ({role.value}); shown only once:",
               err=True)
    typer.echo(issued.token)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tsk_<id>_...).")],
    coordinator_dir: OptionalCoordinatorDir = None, site_dir: SiteDir = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API token: the service refuses it from its next request."""
    with cli_boundary():
        with _token_store(coordinator_dir, site_dir) as tokens:
            record = tokens.revoke(token_id)
    if as_json:
        print_json(record.to_json())
        return
    typer.echo(f"token {record.token_id} ({record.name}) revoked")


@token_app.command("list")
def token_list(coordinator_dir: OptionalCoordinatorDir = None, site_dir: SiteDir = None,
               as_json: AsJson = False) -> None:
    """List API tokens (ids, names, roles, revocation; never secrets)."""
    with cli_boundary():
        with _token_store(coordinator_dir, site_dir) as tokens:
            records = tokens.list()
    if as_json:
        print_json([r.to_json() for r in records], indent=1)
        return
    for r in records:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        typer.echo(f"{r.token_id}  {r.role.value:<13} {state:<24} {r.name}")


def _version(registry: ModelRegistry, study: str, version: int, *, allow: bool) -> ModelVersion:
    mv = registry.get(study, version)
    if mv.promotable is not True and not allow:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           f"{study} v{version} is not promotable (--allow-unpromotable to "
                           "release it anyway)")
    return mv


@model_app.command("release")
def release(
    study: Study,
    coordinator_dir: CoordinatorDir,
    actor: ActorOption,
    canary: Annotated[int | None, typer.Option(
        min=1, help="Send --percent of the traffic to this version.")] = None,
    percent: Annotated[float, typer.Option(help="The canary's share of traffic (0-100).")] =
        10.0,
    blue_green: Annotated[int | None, typer.Option(
        "--blue-green", min=1, help="Load this version beside the stable one, without "
        "traffic, until promoted.")] = None,
    stable: Annotated[int | None, typer.Option(
        min=1, help="The stable version (default: the current one, else the newest "
        "promotable version other than the candidate).")] = None,
    max_error_rate: Annotated[float, typer.Option(
        help="Roll back when the candidate's error rate exceeds this.")] =
        DEFAULT_MAX_ERROR_RATE,
    max_score_psi: Annotated[float, typer.Option(
        help="Roll back when the PSI of its scores against the stable version's exceeds "
        "this.")] = DEFAULT_MAX_SCORE_PSI,
    min_requests: Annotated[int, typer.Option(
        help="Requests the candidate answers before either check.")] = DEFAULT_MIN_REQUESTS,
    allow_unpromotable: Annotated[bool, typer.Option(
        "--allow-unpromotable", help="Also release (and keep as the stable one) versions that "
        "missed their KPI gates.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a canary or blue-green release of a study's model version."""
    from serving.releases import ReleaseStore, Thresholds

    with cli_boundary():
        if (canary is None) == (blue_green is None):
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "give exactly one of --canary V or --blue-green V")
        candidate = int(canary or blue_green or 0)
        thresholds = Thresholds(max_error_rate, max_score_psi, min_requests)
        with open_registry(coordinator_dir) as registry, ReleaseStore(coordinator_dir) as store:
            mv = _version(registry, study, candidate, allow=allow_unpromotable)
            current = store.get(study)
            base = stable or (current.stable if current else None)
            if base is None:
                others = [m.version for m in registry.list(study=study)
                          if m.version != candidate and m.promotable is True]
                if not others:
                    raise TesseraError(ErrorCode.NOT_FOUND, f"{study}: no promotable version "
                                       "to keep as the stable one (--stable V)")
                base = others[-1]
            _version(registry, study, base, allow=allow_unpromotable)
            from serving.catalog import load_version  # ONNX Runtime: only when run

            load_version(registry, mv, precision="fp32")  # exported and checked before traffic
            state = store.start(study, stable=base, candidate=candidate,
                                mode="canary" if canary else "blue_green",
                                percent=percent if canary else 0.0, thresholds=thresholds,
                                actor=actor)
    if as_json:
        print_json(_release_doc(study, "released", actor, state))
        return
    how = f"canary at {state.percent:g}%" if canary else "blue-green (no traffic until promoted)"
    typer.echo(f"{study}: v{candidate} released as {how} beside stable v{state.stable}")


@model_app.command("promote")
def promote(study: Study, coordinator_dir: CoordinatorDir, actor: ActorOption,
            as_json: JsonOption = False) -> None:
    """Make the release candidate the stable version (all traffic)."""
    from serving.releases import ReleaseStore

    with cli_boundary(), ReleaseStore(_checked(coordinator_dir)) as store:
        state = store.promote(study, actor=actor)
    if as_json:
        print_json(_release_doc(study, "promoted", actor, state))
        return
    typer.echo(f"{study}: v{state.stable} promoted; it now takes all the traffic")


@model_app.command("rollback")
def rollback(
    study: Study, coordinator_dir: CoordinatorDir, actor: ActorOption,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] =
        "operator decision",
    as_json: JsonOption = False,
) -> None:
    """Drop the release candidate: all traffic back to the stable version."""
    from serving.releases import ReleaseStore

    with cli_boundary(), ReleaseStore(_checked(coordinator_dir)) as store:
        state = store.rollback(study, actor=actor, reason=reason)
    assert state is not None
    if as_json:
        print_json(_release_doc(study, "rolled_back", actor, state))
        return
    typer.echo(f"{study}: rolled back; v{state.stable} takes all the traffic")


@model_app.command("releases")
def releases(study: Study, coordinator_dir: CoordinatorDir, as_json: AsJson = False) -> None:
    """Show a study's release state and its history of release actions."""
    from serving.releases import ReleaseStore

    with cli_boundary(), ReleaseStore(_checked(coordinator_dir)) as store:
        state, events = store.get(study), store.events(study)
    if as_json:
        print_json({"state": state.to_json() if state else None,
                    "events": [e.to_json() for e in events]}, indent=1)
        return
    if state is None:
        typer.echo(f"{study}: never released (the service serves the newest promotable model)")
    else:
        extra = (f", candidate v{state.candidate} ({state.mode}, {state.percent:g}%)"
                 if state.candidate else "")
        typer.echo(f"{study}: stable v{state.stable}{extra}")
    for e in events:
        typer.echo(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.action:<18} {e.actor:<20} "
                   f"{json.dumps(e.details, sort_keys=True)}")


def _release_doc(study: str, action: str, actor: str, state: Release) -> dict[str, object]:
    return {"study": study, "action": action, "actor": actor, "state": state.to_json()}


def _checked(coordinator_dir: Path) -> Path:
    open_registry(coordinator_dir).close()
    return coordinator_dir
