"""The numbers a reviewer quotes, built from a run: the bounded headline, the
minimal-perturbation attacks' distances and robust-accuracy-against-ε curves (per backend and
best across backends, with each backend's optimality), and per-class robust accuracy.

The arithmetic is in :mod:`unified_adv.evaluate.metrics`; this module only picks the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate import metrics
from unified_adv.evaluate.results import WORST_CASE, robust_by_sample
from unified_adv.run.prepared import AttackPlan, Prepared

#: The norms a minimal attack's curves are drawn in: any successful perturbation of L∞ (or
#: L2) norm ≤ ε shows a sample is not robust in that ball, whatever norm the attack minimised.
CURVE_NORMS = ("linf", "l2")


def _bounded(plan: AttackPlan) -> bool:
    """An attack with an ε (a norm ball); noise, minimal and pixel-budget attacks are not."""
    return ATTACKS[plan.spec.name].threat == "ball"


def _bounded_rows(
    prep: Prepared, attacks: list[dict[str, Any]]
) -> Iterator[tuple[AttackPlan, float | None, list[dict[str, Any]]]]:
    """Each attack with an ε, at each of its ε: (plan, ε, its rows in ``attacks``)."""
    for plan in prep.plans:
        if not _bounded(plan):
            continue
        label = plan.spec.label
        for eps in plan.spec.eps_values:
            yield plan, eps, [a for a in attacks if a["attack_id"] == label and a["eps"] == eps]


def bounded_points(
    prep: Prepared, attacks: list[dict[str, Any]], worst_case: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every attack with an ε, at each ε: its worst case across backends (the cross-check's
    row, or the one backend's entry), with interval, attack and ε; complete ones only."""
    out = []
    for plan, eps, mine in _bounded_rows(prep, attacks):
        label = plan.spec.label
        w = [r for r in worst_case if r["attack_id"] == label and r["eps"] == eps]
        if w:
            value, ci, backends = (
                w[0]["robust_accuracy_worst_case"],
                w[0]["robust_accuracy_ci"],
                w[0]["backends"],
            )
        elif len(mine) == 1 and mine[0]["robust_accuracy"] is not None:
            value, ci, backends = (
                mine[0]["robust_accuracy"],
                mine[0]["robust_accuracy_ci"],
                [mine[0]["backend"]],
            )
        else:
            continue
        out.append(
            {
                "attack_id": label,
                "attack": plan.spec.name,
                "norm": plan.spec.norm,
                "eps": eps,
                "eps_text": plan.spec.eps_text(eps),
                "robust_accuracy": value,
                "robust_accuracy_ci": ci,
                "backends": backends,
                "n_evaluated": plan.scope,
            }
        )
    return out


def headline(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The worst robust accuracy over the attacks with an ε, at that ε, worst case across
    backends, named with its attack and ε; None when no attack has an ε."""
    if not points:
        return None
    worst = min(points, key=lambda p: p["robust_accuracy"])
    ci = worst["robust_accuracy_ci"]
    text = (
        f"{100 * worst['robust_accuracy']:.1f} % "
        + (f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] " if ci else "")
        + f"under {worst['attack_id']} at ε = {worst['eps_text'] or worst['eps']}"
    )
    return {**worst, "statistic": WORST_CASE, "text": text}


def _per_sample(rows: pd.DataFrame, norm: str) -> pd.Series:
    """Per sample id, the smallest ε at which it is not robust (over its rows: targets)."""
    d = metrics.robust_distances(
        rows[norm].to_numpy(),
        rows["success"].to_numpy(),
        rows["tie"].to_numpy(),
        (rows["clean_pred"] == rows["label"]).to_numpy(),
    )
    return pd.Series(d, index=rows["sample"].to_numpy()).groupby(level=0).min()


def _in_scope(prep: Prepared, plan: AttackPlan, per_sample: pd.Series, absent: float) -> np.ndarray:
    """A per-sample value over the attack's whole scope (the first ``scope`` samples): the
    attacked samples' own, else ``absent`` for a correct sample the attack did not run on
    and the value of a clean mistake (``per_sample``'s dtype decides: 0 / False)."""
    ids = prep.data.index[: plan.scope]
    attacked = np.isin(ids, per_sample.index.to_numpy())
    mistake = np.zeros(1, dtype=per_sample.dtype)[0]
    own = per_sample.reindex(ids).to_numpy()
    return np.where(attacked, own, np.where(prep.correct[: plan.scope], absent, mistake))


def _ok_backends(attacks: list[dict[str, Any]], label: str) -> list[str]:
    return sorted(a["backend"] for a in attacks if a["attack_id"] == label and a["status"] == "ok")


def worst_case_robust(
    prep: Prepared, plan: AttackPlan, samples: pd.DataFrame, eps: float
) -> np.ndarray:
    """Per sample of the attack's scope: robust at ``eps`` in every backend's rows (a
    sample not attacked counts by its clean prediction)."""
    rows = samples[(samples["attack_id"] == plan.spec.label) & (samples["eps"] == eps)]
    return _in_scope(prep, plan, robust_by_sample(rows).astype(bool), True).astype(bool)


def _at_eps(
    prep: Prepared,
    samples: pd.DataFrame,
    best: np.ndarray,
    points: list[dict[str, Any]],
    norm: str,
) -> list[dict[str, Any]]:
    """The best-across-backends curve read at each bounded attack's ε in this norm, beside
    that attack's worst case, both over the same samples (the first ``n_evaluated`` of the
    data, the smaller of the two scopes): does PGD at ε agree with DeepFool's curve at ε?"""
    plans = {p.spec.label: p for p in prep.plans}
    out = []
    for p in points:
        if p["norm"] != norm:
            continue
        n = min(len(best), p["n_evaluated"])
        robust = worst_case_robust(prep, plans[p["attack_id"]], samples, p["eps"])[:n]
        k_curve = int((best[:n] > p["eps"]).sum())
        out.append(
            {
                "attack_id": p["attack_id"],
                "eps": p["eps"],
                "eps_text": p["eps_text"],
                "n_evaluated": n,
                "bounded_robust_accuracy": float(robust.mean()),
                "bounded_robust_accuracy_ci": metrics.proportion_ci(int(robust.sum()), n),
                "curve_robust_accuracy": k_curve / n,
                "curve_robust_accuracy_ci": metrics.proportion_ci(k_curve, n),
            }
        )
    return out


def _minimal_entry(
    prep: Prepared,
    plan: AttackPlan,
    samples: pd.DataFrame,
    backends: list[str],
    points: list[dict[str, Any]],
) -> dict[str, Any]:
    rows = samples[samples["attack_id"] == plan.spec.label]
    distances: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    own: dict[str, np.ndarray] = {}
    for norm in CURVE_NORMS:
        mine = {
            b: _in_scope(prep, plan, _per_sample(rows[rows["backend"] == b], norm), np.inf)
            for b in backends
        }
        best = metrics.best_across(mine)
        if norm == plan.spec.norm:
            own = mine
        distances[norm] = {
            "best": metrics.distance_quantiles(best),
            "backends": {b: metrics.distance_quantiles(v) for b, v in mine.items()},
        }
        curves[norm] = {
            "best": metrics.robust_curve(best, plan.scope),
            "backends": {b: metrics.robust_curve(v, plan.scope) for b, v in mine.items()},
            "at_eps": _at_eps(prep, samples, best, points, norm),
        }
    return {
        "attack_id": plan.spec.label,
        "attack": plan.spec.name,
        "norm": plan.spec.norm,
        "backends": backends,
        "n_evaluated": plan.scope,
        "n_attacked": int(len(plan.positions)),
        "distances": distances,
        "curves": curves,
        "optimality": metrics.optimality(own) if len(backends) > 1 and own else None,
    }


def minimal_perturbation(
    prep: Prepared,
    samples: pd.DataFrame,
    attacks: list[dict[str, Any]],
    points: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Per minimal-perturbation attack: the smallest perturbation found (quantiles per norm,
    per backend and best across backends), robust accuracy against ε from those distances,
    each backend's optimality, and the curve read at the bounded attacks' ε."""
    out = []
    for plan in prep.plans:
        if ATTACKS[plan.spec.name].threat != "minimal":
            continue
        backends = _ok_backends(attacks, plan.spec.label)
        if backends:
            out.append(_minimal_entry(prep, plan, samples, backends, points))
    return out


def per_class(
    prep: Prepared, samples: pd.DataFrame, attacks: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per attack with an ε and per ε: robust accuracy per true class, worst case across
    backends (robust only if no backend fooled it), with counts and intervals."""
    names = prep.data.class_names
    out = []
    for plan, eps, mine in _bounded_rows(prep, attacks):
        label = plan.spec.label
        if eps is None or not mine or any(a["status"] != "ok" for a in mine):
            continue
        robust = worst_case_robust(prep, plan, samples, eps)
        classes = metrics.per_class(prep.data.y[: plan.scope], robust, prep.num_classes)
        for c in classes:
            c["name"] = names[c["class"]] if c["class"] < len(names) else str(c["class"])
        out.append(
            {
                "attack_id": label,
                "eps": eps,
                "eps_text": plan.spec.eps_text(eps),
                "backends": sorted(a["backend"] for a in mine),
                "statistic": WORST_CASE,
                "classes": classes,
            }
        )
    return out
