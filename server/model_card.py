"""Model cards: a registered model's intended use, data, training, metrics and limits.

:func:`write_card` gathers a model version from the registry, its run's ``result.json`` and
its study plan, and writes ``card.md``, ``card.html`` and PNG plots (``roc.png``,
``calibration.png`` and, when the run has them, ``fairness.png`` and ``importance.png``;
see :mod:`server.card_plots`) into one folder. Besides intended use, data (sites, example
counts, dataset versions, schema and the plan's data dictionary), training and metrics, the
card shows the federated feature importance, the leave-one-site-out results ("not run" when
the run has none) and the registry's release verdict with the KPI gates behind it.
Both documents are rendered from the same sections (:func:`card_sections`), so they always
say the same thing; every metric is printed with four decimals, an undefined one as
``n/a``, and all text is HTML-escaped in ``card.html``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, TesseraError
from common.plan import ColumnSpec, StudyPlan, load_plan, plan_hash
from common.workdir import CoordinatorDir
from server.card_plots import fmt, ranked_importance, render_plots
from server.registry import DriftCheck, ModelExport, ModelRegistry, ModelVersion

CAUTION = ("This is a research model trained in a federated study. It is not a medical "
           "device and must not be used for clinical decisions without independent "
           "validation on the deployment population.")
LIMITATIONS = (
    "Metrics are federated: each site reports binned score counts on its held-out rows and "
    "the coordinator combines them, so ROC, calibration and ranking metrics are computed "
    "from histograms (bin resolution), not from individual predictions.",
    "Each site trained with differentially private SGD: the added noise lowers accuracy "
    "compared with non-private training, and the privacy guarantee holds only within the "
    "stated epsilon and delta.",
    "The sites' data may differ from the population where the model would be deployed "
    "(case mix, measurement practice, time period); performance there is unknown.",
    "Feature importance is measured on small held-out splits (with DP, through noise): it "
    "describes what this model relies on, not causes, and correlated features share (and "
    "can hide) each other's importance.",
)
METRICS = ("auc", "accuracy", "f1", "precision", "recall", "specificity", "brier", "log_loss",
           "ece", "average_precision")


@dataclass(frozen=True)
class CardContext:
    """Everything a card shows: the model version, its run's result, its plan, its plots."""

    model: ModelVersion
    result: dict[str, Any]
    plan: StudyPlan
    plots: list[str] = field(default_factory=list)
    exports: list[ModelExport] = field(default_factory=list)
    drift: list[DriftCheck] = field(default_factory=list)


@dataclass(frozen=True)
class Block:
    """One piece of a section: ``text``, ``bullets``, ``table`` (header + rows) or ``image``."""

    kind: str
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _text(value: str) -> Block:
    return Block("text", [value])


def _table(header: list[str], rows: list[list[str]]) -> Block:
    return Block("table", header, rows)


def card_sections(ctx: CardContext) -> list[tuple[str, list[Block]]]:
    """The card's sections, in order, as (title, blocks)."""
    plan, mv, final = ctx.plan, ctx.model, ctx.result.get("final") or {}
    description = plan.study.description or "(the study plan gives no description)"
    sites = ctx.result.get("sites") or []
    versions = mv.lineage.get("dataset_versions") or {}
    privacy, he = plan.privacy, plan.he
    model_params = f"kind {plan.model.kind}"
    if plan.model.kind == "mlp":
        model_params += f", hidden {plan.model.hidden}, GroupNorm groups {plan.model.groups}"
    sections: list[tuple[str, list[Block]]] = [
        ("Intended use", [_text(description), _text(CAUTION)]),
        ("Study plan", [Block("bullets", [
            f"Study: {plan.name}", f"Plan hash: {mv.plan_hash}", f"Run: {ctx.result.get('run_id')}",
            f"Model file: {mv.path} (sha256 {mv.sha256})"])]),
        ("Data", [
            Block("bullets", [
                f"Dataset: {plan.dataset.name}",
                f"Features: {', '.join(plan.dataset.features)}",
                f"Label: {plan.dataset.label}",
                f"Sensitive attribute: {plan.dataset.sensitive or 'none'}",
                f"Held-out test fraction per site: {fmt(plan.dataset.test_fraction)}"]),
            _table(["Site", "Training examples", "Dataset version (sha256)"],
                   [[str(s.get("name")), fmt(s.get("examples")),
                     str(versions.get(s.get("name"), "n/a"))] for s in sites]),
            *_dictionary_blocks(plan)]),
        ("Training", [
            Block("bullets", [
                f"Model: {model_params}",
                f"Rounds: {mv.rounds} (planned {plan.training.rounds})",
                f"Local epochs: {plan.training.local_epochs}",
                f"Batch size: {plan.training.batch_size}",
                f"Learning rate: {fmt(plan.training.learning_rate)}",
                f"Differential privacy: {'on' if privacy.dp else 'off'}; target epsilon "
                f"{fmt(privacy.target_epsilon)}, delta {privacy.delta:g}, clip norm "
                f"{fmt(privacy.max_grad_norm)}, update clip {fmt(privacy.update_clip)}",
                "Homomorphic encryption (CKKS): " + (
                    f"on; poly modulus degree {he.poly_modulus_degree}, coefficient modulus "
                    f"bits {he.coeff_mod_bit_sizes}, scale 2^{he.global_scale_bits}"
                    if he.enabled else "off")]),
            _table(["Site", "Epsilon spent", "Delta"],
                   [[str(s.get("name")), fmt(s.get("epsilon_spent")),
                     f"{s['delta']:g}" if isinstance(s.get("delta"), int | float) else "n/a"]
                    for s in sites])]),
        ("Metrics", [
            _text(f"Federated evaluation on {fmt(final.get('n'))} held-out rows at threshold "
                  f"{fmt(final.get('threshold'))}."),
            _table(["Metric", "Value"], [[m, fmt(final.get(m))] for m in METRICS])]),
    ]
    if images := [Block("image", [n, t]) for n, t in (("roc.png", "ROC curve"),
                  ("calibration.png", "Calibration")) if n in ctx.plots]:
        sections.append(("Plots", images))
    fairness = final.get("fairness")
    if fairness:
        blocks = [
            _text(f"Rates per {plan.dataset.sensitive or 'group'} at threshold "
                  f"{fmt(fairness.get('threshold'))}."),
            _table(["Group", "n", "Selection rate", "TPR", "FPR"],
                   [[str(g), fmt(r.get("n")), fmt(r.get("selection_rate")), fmt(r.get("tpr")),
                     fmt(r.get("fpr"))] for g, r in sorted(fairness["groups"].items())]),
            _table(["Disparity", "Value"], [
                [k, fmt(fairness.get(k))] for k in ("demographic_parity_difference",
                                                    "demographic_parity_ratio",
                                                    "equalized_odds_difference")])]
        if "fairness.png" in ctx.plots:
            blocks.append(Block("image", ["fairness.png", "Rates per group"]))
        sections.append(("Fairness", blocks))
    sections += [("Feature importance", _importance_blocks(ctx)),
                 ("Leave-one-site-out evaluation", _loso_blocks(ctx)),
                 ("KPI gates", _gate_blocks(ctx)),
                 ("Exported artefacts", _export_blocks(ctx)),
                 ("Drift", _drift_blocks(ctx)),
                 ("Limitations", [Block("bullets", list(LIMITATIONS))])]
    return sections


def _drift_blocks(ctx: CardContext) -> list[Block]:
    if not ctx.drift:
        return [_text("No drift check yet (tessera study drift).")]
    last = ctx.drift[-1]
    verdict = "RETRAINING RECOMMENDED" if last.retraining_recommended else "within threshold"
    psi = last.details.get("psi") or {}
    scores = last.details.get("scores") or {}
    score_text = (f"; model scores PSI {fmt(scores['psi'])}, threshold "
                  f"{fmt(scores['threshold'])}" if scores.get("psi") is not None else "")
    return [_text(f"Newest check {last.at:%Y-%m-%d %H:%M}: {verdict} (worst PSI "
                  f"{last.worst_psi:.3f}, threshold {fmt(last.threshold)}{score_text})."
                  + (f" Next plan version drafted: {last.draft_plan}." if last.draft_plan
                     else "")),
            _table(["Feature", "PSI"], [[str(k), fmt(v)] for k, v in sorted(
                psi.items(), key=lambda kv: -float(kv[1]))])]


def _export_blocks(ctx: CardContext) -> list[Block]:
    if not ctx.exports:
        return [_text("None yet (tessera model export).")]

    def parity(e: ModelExport) -> str:
        p = e.parity
        if e.precision == "fp32":
            diff = p.get("max_abs_diff")
            return "max |score difference| " + (
                f"{diff:.2g}" if isinstance(diff, int | float) else "n/a")
        return (f"label agreement {fmt(p.get('label_agreement'))}, AUC {fmt(p.get('auc_torch'))}"
                f" -> {fmt(p.get('auc_onnx'))}")

    return [_table(["File", "Format", "Bytes", "sha256", "Parity at export"],
                   [[e.path, f"{e.format} {e.precision}", str(e.size_bytes), e.sha256,
                     f"{parity(e)} on {e.parity.get('rows')} {e.parity.get('source')} rows"]
                    for e in ctx.exports])]


def _dictionary_blocks(plan: StudyPlan) -> list[Block]:
    """The plan's data dictionary (``dataset.columns``), when it has one."""
    columns = plan.dataset.columns or {}
    if not columns:
        return [_text("The study plan has no data dictionary.")]
    ds = plan.dataset

    def role(name: str) -> str:
        return "label" if name == ds.label else "sensitive" if name == ds.sensitive \
            else "feature"

    def allowed(column: ColumnSpec) -> str:
        if column.categories:
            return ", ".join(column.categories)
        if column.min is None and column.max is None:
            return "any"
        return f"{'' if column.min is None else f'{column.min:g}'} to " \
               f"{'' if column.max is None else f'{column.max:g}'}".strip()

    return [_text("Data dictionary:"), _table(
        ["Column", "Role", "Type", "Unit", "Allowed values", "Description"],
        [[name, role(name), c.type, c.unit or "-", allowed(c), c.description or "-"]
         for name, c in columns.items()])]


def _importance_blocks(ctx: CardContext) -> list[Block]:
    importance = ctx.result.get("feature_importance") or {}
    if not importance:
        return [_text("Feature importance was not computed for this run.")]
    rows = next(iter(importance.values())).get("n")
    if ctx.plan.privacy.dp:
        how = (f"Differentially private importance of the final model, released by each "
               f"site from its held-out rows (about {fmt(rows)} in all) with Gaussian noise "
               "and summed across sites: how much log loss rises when one feature is set "
               "to its federation mean. The noise is of the order the plan declares "
               "([evaluation] importance_noise_multiplier), so small differences mean "
               "nothing. ")
    else:
        how = (f"Permutation importance of the final model, measured by each site on its "
               f"held-out rows ({fmt(rows)} in all) and averaged across sites by row count: "
               "how much AUC drops and log loss rises when one feature's values are "
               "shuffled. ")
    blocks = [
        _text(how + "Most important first; a value near zero (or below) means the model "
              "does not rely on the feature."),
        _table(["Feature", "AUC drop", "Log-loss increase"],
               [[name, fmt(v.get("auc_drop")), fmt(v.get("log_loss_increase"))]
                for name, v in ranked_importance(importance)])]
    if "importance.png" in ctx.plots:
        blocks.append(Block("image", ["importance.png", "Feature importance"]))
    return blocks


def _loso_blocks(ctx: CardContext) -> list[Block]:
    loso = ctx.result.get("loso")
    if not loso:
        skipped = ctx.result.get("loso_skipped")
        return [_text("Not run." + (f" {skipped}" if skipped else ""))]
    rows = []
    for site, entry in sorted(loso.items()):
        trained_on = ", ".join(entry.get("training_sites") or []) or "n/a"
        if "error" in entry:
            failure = f"failed: {(entry.get('error') or {}).get('message', 'unknown error')}"
            rows.append([site, trained_on, failure, "", "", "", "", ""])
            continue
        rows.append([site, trained_on, fmt(entry.get("n")),
                     *[fmt(entry.get(m)) for m in ("auc", "accuracy", "f1", "brier", "ece")]])
    return [_text("Each site in turn is left out of training; the model the other sites "
                  "train is scored on the left-out site's held-out rows."),
            _table(["Held-out site", "Trained on", "n", "auc", "accuracy", "f1", "brier",
                    "ece"], rows)]


def _gate_blocks(ctx: CardContext) -> list[Block]:
    gates = ctx.result.get("kpi_gates") or {}
    checks = gates.get("checks") or {}
    blocks = [_table(["Gate", "Metric", "Threshold", "Value", "Outcome"], [
        [name, str(c.get("metric")), fmt(c.get("threshold")), fmt(c.get("value")),
         "passed" if c.get("passed") else "failed"] for name, c in sorted(checks.items())])
    ] if checks else [_text("The study plan sets no KPI gates.")]
    mv = ctx.model
    promotable = mv.promotable if mv.promotable is not None else gates.get("promotable")
    reasons = list(mv.promotion_reasons) or list(gates.get("reasons") or [])
    verdict = "not assessed" if promotable is None else \
        "promotable" if promotable else "not promotable"
    blocks.append(_text(f"Release verdict (registry): {verdict}."
                        + "".join(f" {r}" for r in reasons)))
    return blocks


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def card_markdown(ctx: CardContext) -> str:
    """The card as Markdown."""
    lines = [f"# Model card: {ctx.model.study} v{ctx.model.version}", ""]
    for title, blocks in card_sections(ctx):
        lines += [f"## {title}", ""]
        for block in blocks:
            if block.kind == "text":
                lines += [block.items[0], ""]
            elif block.kind == "bullets":
                lines += [f"- {item}" for item in block.items] + [""]
            elif block.kind == "table":
                lines.append("| " + " | ".join(map(_md_cell, block.items)) + " |")
                lines.append("|" + "---|" * len(block.items))
                lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
                lines.append("")
            else:
                lines += [f"![{block.items[1]}]({block.items[0]})", ""]
    return "\n".join(lines)


def card_html(ctx: CardContext) -> str:
    """The card as a standalone HTML page (plots referenced by relative file name)."""
    esc = html.escape
    title = esc(f"Model card: {ctx.model.study} v{ctx.model.version}")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>'
             f"{title}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em}"
             "</style></head><body>", f"<h1>{title}</h1>"]
    for heading, blocks in card_sections(ctx):
        parts.append(f"<h2>{esc(heading)}</h2>")
        for block in blocks:
            if block.kind == "text":
                parts.append(f"<p>{esc(block.items[0])}</p>")
            elif block.kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items)
                             + "</ul>")
            elif block.kind == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in block.items)
                body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                               for row in block.rows)
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                parts.append(f'<p><img src="{esc(block.items[0])}" '
                             f'alt="{esc(block.items[1])}" width="480"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _read_result(coordinator_dir: Path, mv: ModelVersion) -> dict[str, Any]:
    run_id = str(mv.lineage.get("run_id", ""))
    path = CoordinatorDir(coordinator_dir).run(run_id).result_path
    if not run_id or not path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{mv.study} v{mv.version}: the result of run "
                           f"{run_id or '(unknown)'} is missing ({path})")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TesseraError(ErrorCode.DATA_INVALID, f"{path} is not valid JSON") from None
    if not isinstance(result, dict) or result.get("plan_hash") != mv.plan_hash:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{path} is not the result of {mv.study} v{mv.version}'s plan")
    return result


def _read_plan(coordinator_dir: Path, mv: ModelVersion) -> StudyPlan:
    path = CoordinatorDir(coordinator_dir).plan_path(mv.plan_hash)
    if not path.is_file():
        raise TesseraError(ErrorCode.NOT_FOUND, f"{mv.study} v{mv.version}: its study plan "
                           f"{path} is missing")
    if plan_hash(plan := load_plan(path)) != mv.plan_hash:
        raise TesseraError(ErrorCode.DATA_INVALID,
                           f"{path} does not match the model's plan hash {mv.plan_hash[:16]}")
    return plan


def write_card(coordinator_dir: Path, study: str, version: int,
               out_dir: Path | None = None) -> Path:
    """Write the card of ``study`` v``version``; returns the folder (default cards/<s>-v<n>)."""
    coordinator_dir = Path(coordinator_dir)
    with ModelRegistry.open(coordinator_dir) as registry:
        mv = registry.get(study, version)
        registry.load_bytes(mv)  # the model file must match its registered sha256
        exports = registry.exports(study, version)
        drift = registry.drift_checks(study, version)
    result, plan = _read_result(coordinator_dir, mv), _read_plan(coordinator_dir, mv)
    out = Path(out_dir) if out_dir is not None else (
        CoordinatorDir(coordinator_dir).card_dir(study, version))
    out.mkdir(parents=True, exist_ok=True)
    plots = [p.name for p in render_plots(result, out)]
    ctx = CardContext(model=mv, result=result, plan=plan, plots=plots, exports=exports,
                      drift=drift)
    (out / "card.md").write_text(card_markdown(ctx), encoding="utf-8")
    (out / "card.html").write_text(card_html(ctx), encoding="utf-8")
    return out
