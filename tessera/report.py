"""Assemble ``report.json`` from the run result, the federation and the baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.plan import StudyPlan

if TYPE_CHECKING:  # the launcher's federation: TenSEAL and torch, not needed to report
    from tessera.local_federation import LocalFederation


def build_report(fed: LocalFederation, result: dict[str, Any], *, baseline: dict[str, Any],
                 timings: dict[str, float], superlink: str, tls: bool,
                 node_auth: bool) -> dict[str, Any]:
    """The run report of a local federation (``tessera demo``): the launcher plays every
    site, so it also scores the released model exactly on their held-out rows."""
    report = run_report(fed.plan, result, plan_digest=fed.plan_hash, custodian=fed.custodian,
                        supernodes=len(fed.sites), baseline=baseline, timings=timings,
                        superlink=superlink, tls=tls, node_auth=node_auth)
    from tessera.baseline import released_model_check  # torch and scikit-learn: when used

    report["released_model_check"] = released_model_check(fed, result)
    return report


def run_report(plan: StudyPlan, result: dict[str, Any], *, plan_digest: str, custodian: str,
               supernodes: int, baseline: dict[str, Any] | None, timings: dict[str, float],
               superlink: str | None, tls: bool, node_auth: bool) -> dict[str, Any]:
    """The run report (docs/report.md); ``baseline`` None where nobody holds all the data
    (a real coordinator)."""
    rounds = result.get("rounds", [])
    refused = [dict(item, round=0) for item in result.get("admission_refused", [])]
    return {
        "status": result.get("status", "failed"),
        "error": result.get("error"),
        "study": {"name": plan.name, "plan_hash": plan_digest,
                  "rounds": plan.training.rounds, "seed": plan.seed},
        "engine": {"kind": "deployment", "superlink": superlink,
                   "supernodes": supernodes, "tls": tls, "node_auth": node_auth,
                   "signed_envelopes": bool(result.get("signed_envelopes", False)),
                   "run_id": result.get("run_id")},
        "privacy": {
            "dp": plan.privacy.dp, "epsilon_target": plan.privacy.target_epsilon,
            "delta": plan.privacy.delta, "max_grad_norm": plan.privacy.max_grad_norm,
            "update_clip": plan.privacy.update_clip, "he": plan.he.enabled,
            "he_params": {"scheme": "CKKS",
                          "poly_modulus_degree": plan.he.poly_modulus_degree,
                          "coeff_mod_bit_sizes": list(plan.he.coeff_mod_bit_sizes),
                          "global_scale_bits": plan.he.global_scale_bits,
                          "key_custodian": custodian} if plan.he.enabled else None,
        },
        "admission_refused": refused,
        "stats_round": result.get("stats_round"),
        "rounds": rounds,
        "sites": result.get("sites", []),
        "final": result.get("final"),
        "baseline": baseline,
        "released_model_check": None,  # only a launcher holding every site's data has one
        "model": result.get("model"),
        "kpi_gates": result.get("kpi_gates"),
        "feature_importance": result.get("feature_importance"),
        "loso": result.get("loso"),
        "loso_skipped": result.get("loso_skipped"),
        "loso_epsilon": result.get("loso_epsilon"),
        "timings": {**{k: round(v, 3) for k, v in timings.items()},
                    "coordinator_seconds": round(float(result.get("seconds", 0.0)), 3)},
    }
