"""``tessera model ...``: list, show, card, export and use the models in a coordinator's registry.

Commands only translate options into :class:`server.registry.ModelRegistry` and
:mod:`server.predict` calls and print a summary; errors pass through the one CLI boundary
(:func:`common.cli_boundary.cli_boundary`). ``predict`` validates the whole
input before it writes anything; it prints counts, never patient ids or scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.cli_boundary import cli_boundary
from common.errors import ErrorCode, TesseraError
from common.files import atomic_write_bytes
from common.workdir import CoordinatorDir as CoordinatorLayout

if TYPE_CHECKING:
    from server.explain import Explanation
    from server.registry import ModelRegistry, ModelVersion

app = typer.Typer(
    name="model",
    help="Registered models: list, show, and score patients with one.",
    no_args_is_help=True,
    add_completion=False,
)

CoordinatorDir = Annotated[Path, typer.Option(
    "--coordinator-dir", help="The coordinator folder (holds coordinator.db and models/).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_SHOWN_METRICS = ("auc", "accuracy", "f1", "brier", "ece")


@app.callback()
def _group() -> None:
    """Registered models: list, show, and score patients with one."""


def open_registry(coordinator_dir: Path) -> ModelRegistry:
    """Open an existing coordinator folder's registry (never creates one by accident)."""
    from server.registry import ModelRegistry  # here: the database layer, not at --help

    if not CoordinatorLayout(Path(coordinator_dir)).db_path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"--coordinator-dir {coordinator_dir}: no coordinator.db there "
                           "(not a coordinator folder)")
    return ModelRegistry.open(coordinator_dir)


def _metric_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in _SHOWN_METRICS if k in metrics)


def promotion_text(mv: ModelVersion) -> str:
    """``promotable``, ``NOT promotable`` or ``promotion not assessed`` (older models)."""
    if mv.promotable is None:
        return "promotion not assessed"
    return "promotable" if mv.promotable else "NOT promotable"


@app.command("list")
def list_models(
    coordinator_dir: CoordinatorDir,
    study: Annotated[str | None, typer.Option("--study", help="Only this study.")] = None,
    as_json: AsJson = False,
) -> None:
    """List registered models, oldest first."""
    with cli_boundary(), open_registry(coordinator_dir) as registry:
        versions = registry.list(study=study)
        retrain = {mv.id for mv in versions if registry.retraining_recommended(mv)}
    if as_json:
        typer.echo(json.dumps([{**mv.to_json(), "retraining_recommended": mv.id in retrain}
                               for mv in versions], indent=1, sort_keys=True))
        return
    if not versions:
        typer.echo("no models registered")
        return
    for mv in versions:
        typer.echo(f"{mv.study} v{mv.version}  {mv.at:%Y-%m-%d %H:%M}  rounds {mv.rounds}  "
                   f"plan {mv.plan_hash[:12]}  {promotion_text(mv)}  "
                   f"{_metric_text(mv.metrics)}"
                   + ("  RETRAINING RECOMMENDED (drift)" if mv.id in retrain else ""))


def _resolve(registry: ModelRegistry, study: str, version: int | None) -> ModelVersion:
    return registry.latest(study) if version is None else registry.get(study, version)


@app.command("show")
def show(
    study: Annotated[str, typer.Argument(help="The study name.")],
    version: Annotated[int, typer.Argument(min=1, help="The model version.")],
    coordinator_dir: CoordinatorDir,
    as_json: AsJson = False,
) -> None:
    """Show one model: hashes, metrics, privacy spent per site, lineage and its inputs."""
    from server.predict import parse_model_document

    with cli_boundary(), open_registry(coordinator_dir) as registry:
        mv = registry.get(study, version)
        doc = parse_model_document(registry.load_bytes(mv))
        checks = registry.drift_checks(study, version)
    drift = checks[-1].to_json() if checks else None
    details = {**mv.to_json(), "features": doc.get("features"), "label": doc.get("label"),
               "model": doc.get("model"), "drift": drift}
    if as_json:
        typer.echo(json.dumps(details, indent=1, sort_keys=True))
        return
    typer.echo(f"{mv.study} v{mv.version} (registered {mv.at.isoformat(timespec='seconds')})")
    typer.echo(f"  plan hash  {mv.plan_hash}")
    typer.echo(f"  sha256     {mv.sha256}  ({mv.path}, verified)")
    typer.echo(f"  rounds     {mv.rounds}")
    typer.echo(f"  release    {promotion_text(mv)}")
    for reason in mv.promotion_reasons:
        typer.echo(f"             {reason}")
    if checks:
        last = checks[-1]
        verdict = "RETRAINING RECOMMENDED" if last.retraining_recommended else "within threshold"
        typer.echo(f"  drift      {verdict}: worst PSI {last.worst_psi:.3f} (threshold "
                   f"{last.threshold:g}, {last.at:%Y-%m-%d %H:%M})"
                   + (f"; next plan drafted: {last.draft_plan}" if last.draft_plan else ""))
    typer.echo(f"  model      {json.dumps(doc.get('model'), sort_keys=True)}")
    features = doc.get("features") or []
    typer.echo(f"  inputs     patient_id and {len(features)} features: {', '.join(features)}")
    for name, value in sorted(mv.metrics.items()):
        typer.echo(f"  {name:<10} {value:.4f}")
    for site, epsilon in sorted(mv.epsilon_per_site.items()):
        typer.echo(f"  epsilon    {site}: {epsilon:.3f}")
    typer.echo(f"  lineage    {json.dumps(mv.lineage, sort_keys=True)}")


@app.command("predict")
def predict(
    study: Annotated[str, typer.Option("--study", help="The study whose model to use.")],
    input_csv: Annotated[Path, typer.Option(
        "--input", help="CSV with patient_id and every model feature (extra columns ignored).")],
    output_csv: Annotated[Path, typer.Option(
        "--output", help="CSV to write: patient_id,score,label.")],
    coordinator_dir: CoordinatorDir,
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="The model version (default: the latest).")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add each feature's contribution to every patient's logit "
        "(relative to the average patient) and the top 3 features.")] = False,
) -> None:
    """Score patients with a registered model; writes nothing unless every row is valid."""
    from server.predict import explain_file, parse_model_document, predict_file, write_predictions

    with cli_boundary():
        if input_csv.resolve() == output_csv.resolve():
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               "--output must not be the --input file")
        if not output_csv.parent.is_dir():
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"--output: folder {output_csv.parent} does not exist")
        try:
            data = input_csv.read_bytes()
        except FileNotFoundError:
            raise TesseraError(ErrorCode.NOT_FOUND,
                               f"--input: {input_csv} does not exist") from None
        with open_registry(coordinator_dir) as registry:
            mv = _resolve(registry, study, version)
            doc = parse_model_document(registry.load_bytes(mv))
        explanation: Explanation | None = None
        if explain:
            ids, scores, labels, explanation = explain_file(doc, data,
                                                            source_name=input_csv.name)
        else:
            ids, scores, labels = predict_file(doc, data, source_name=input_csv.name)
        write_predictions(output_csv, ids, scores, labels, explanation)
    positives = int(labels.sum())
    typer.echo(f"scored {len(ids)} patients with {mv.study} v{mv.version}: "
               f"{positives} labelled 1, {len(ids) - positives} labelled 0 "
               f"(threshold 0.5); written to {output_csv}")
    if explanation is not None:
        typer.echo(f"explained with {explanation.method}: contributions sum to the logit "
                   f"minus the baseline logit within {explanation.max_gap:.2g}")


@app.command("card")
def card(
    study: Annotated[str, typer.Argument(help="The study name.")],
    version: Annotated[int, typer.Argument(min=1, help="The model version.")],
    coordinator_dir: CoordinatorDir,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder to write into (default: <coordinator-dir>/cards/<study>-v<n>).")
    ] = None,
) -> None:
    """Write a model card (card.md, card.html and PNG plots) for one registered model."""
    from server.model_card import write_card  # here: --help stays light

    with cli_boundary():
        open_registry(coordinator_dir).close()  # a coordinator folder, never created by accident
        folder = write_card(coordinator_dir, study, version, out)
    typer.echo(f"model card for {study} v{version} written to {folder} "
               "(card.md, card.html and plots)")


@app.command("export")
def export(
    study: Annotated[str, typer.Argument(help="The study name.")],
    version: Annotated[int, typer.Argument(min=1, help="The model version.")],
    coordinator_dir: CoordinatorDir,
    out: Annotated[Path, typer.Option("--out", help="The file to write (e.g. model.onnx).")],
    format: Annotated[str, typer.Option(
        "--format", help="The artefact format (only 'onnx').")] = "onnx",
    quantize: Annotated[str | None, typer.Option(
        "--quantize", help="'int8': dynamic int8 quantisation of the linear layers.")] = None,
) -> None:
    """Export a registered model to ONNX, standardisation included, after a parity check.

    The artefact is written to --out and kept in the registry with its sha256 and the parity
    check it passed; a failed parity check writes nothing and exits non-zero.
    """
    from server.onnx_export import export_onnx
    from server.predict import parse_model_document

    with cli_boundary():
        if format != "onnx":
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--format: only 'onnx' is supported")
        if quantize not in (None, "int8"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--quantize: only 'int8' is supported")
        if not out.parent.is_dir():
            raise TesseraError(ErrorCode.NOT_FOUND, f"--out: folder {out.parent} does not exist")
        if out.is_dir():
            raise TesseraError(ErrorCode.CONFIG_INVALID, f"--out: {out} is a folder")
        with open_registry(coordinator_dir) as registry:
            mv = registry.get(study, version)
            doc = parse_model_document(registry.load_bytes(mv))
            artefact = export_onnx(doc, quantize="int8" if quantize else None)
            recorded = registry.record_export(mv, artefact.data,
                                              precision=quantize or "fp32",
                                              parity=artefact.parity.to_json())
        atomic_write_bytes(out, artefact.data)
    parity = artefact.parity
    measured = (f"max |score difference| {parity.max_abs_diff:.2g}" if quantize is None else
                f"label agreement {parity.label_agreement:.4f}, AUC torch "
                f"{_auc_text(parity.auc_torch)} vs int8 {_auc_text(parity.auc_onnx)}")
    typer.echo(f"exported {study} v{version} to {out} ({recorded.precision}, "
               f"{recorded.size_bytes} bytes, sha256 {recorded.sha256})")
    typer.echo(f"parity on {parity.rows} {parity.source} rows: {measured}: passed")


def _auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
