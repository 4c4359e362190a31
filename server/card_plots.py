"""The model card's PNG plots: ROC, calibration, rates per group and feature importance.

:func:`render_plots` draws from a run's ``result.json`` (``final`` and
``feature_importance``) with matplotlib's Agg backend (no display needed) and writes each
plot as a PNG into the card folder; the card references them by file name. :func:`fmt` is
the card's one number format (four decimals, ``n/a`` when undefined), shared with the text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
    """A number with four decimals; ``n/a`` for a missing or undefined one."""
    if value is None or isinstance(value, bool | int):
        return "n/a" if value is None else str(value)
    number = float(value)
    return "n/a" if math.isnan(number) else f"{number:.4f}"


def ranked_importance(importance: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Feature importance entries, most important first (by ``rank``, then AUC drop)."""
    entries = [(name, v) for name, v in importance.items() if isinstance(v, dict)]

    def key(item: tuple[str, dict[str, Any]]) -> tuple[float, float, str]:
        rank, drop = item[1].get("rank"), item[1].get("auc_drop")
        return (float(rank) if isinstance(rank, int | float) else math.inf,
                -float(drop) if isinstance(drop, int | float) else math.inf, item[0])

    return sorted(entries, key=key)


def _points(xs: list[Any], ys: list[Any]) -> tuple[list[float], list[float]]:
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=False)
             if x is not None and y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def render_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write roc.png, calibration.png and, when the run has them, fairness.png (groups) and
    importance.png (feature importance); return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final, written = result.get("final") or {}, []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        written.append(path)

    roc = final.get("roc") or {}
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr = _points(roc.get("fpr") or [], roc.get("tpr") or [])
    ax.plot(fpr, tpr, label=f"model (AUC {fmt(final.get('auc'))})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    save(fig, "roc.png")

    cal = final.get("calibration") or {}
    fig, ax = plt.subplots(figsize=(5, 5))
    pred, obs = _points(cal.get("mean_predicted") or [], cal.get("observed_rate") or [])
    ax.plot(pred, obs, marker="o", label=f"model (ECE {fmt(cal.get('ece'))})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed positive rate",
           title="Calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    groups = (final.get("fairness") or {}).get("groups") or {}
    if groups:
        names = sorted(groups)
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, rate in enumerate(("selection_rate", "tpr", "fpr")):
            values = [float(groups[g].get(rate) or 0.0) for g in names]  # undefined: no bar
            ax.bar([j + (i - 1) * 0.25 for j in range(len(names))], values, 0.25, label=rate)
        ax.set_xticks(range(len(names)), names)
        ax.set(xlabel="Group", ylabel="Rate", title="Rates per group", ylim=(0, 1))
        ax.legend()
        save(fig, "fairness.png")

    importance = result.get("feature_importance") or {}
    entries = ranked_importance(importance)
    # Permutation importance carries AUC drops; the differentially private release carries
    # only (noisy) log-loss rises when a feature is replaced by its federation mean.
    key = "auc_drop" if any(isinstance(v.get("auc_drop"), int | float)
                            for _, v in entries) else "log_loss_increase"
    ranked = [(name, float(v[key])) for name, v in entries
              if isinstance(v.get(key), int | float)]
    if ranked:
        names = [name for name, _ in ranked][::-1]  # most important at the top
        drops = [drop for _, drop in ranked][::-1]
        fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(names) + 1.2)))
        ax.barh(names, drops, color=["tab:blue" if d >= 0 else "tab:grey" for d in drops])
        ax.axvline(0, color="black", linewidth=0.8)
        if key == "auc_drop":
            ax.set(xlabel="Mean drop in AUC when the feature is shuffled",
                   title="Feature importance (federated permutation)")
        else:
            ax.set(xlabel="Rise in log loss when the feature is set to its mean (noisy)",
                   title="Feature importance (federated, differentially private)")
        save(fig, "importance.png")
    return written
