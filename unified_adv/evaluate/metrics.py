"""Pure metric code: intervals on rates, robust accuracy against ε from minimal distances,
each backend's optimality, per-class robust accuracy and distance quantiles.

Nothing here knows about a run: every function takes plain arrays and returns plain values,
so that each can be checked against a hand computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

#: Every rate unified-adv reports carries this interval (summary.json ``intervals``).
CI_METHOD = "clopper-pearson"
CI_LEVEL = 0.95
CI_TEXT = (
    "95 % Clopper–Pearson (exact binomial) interval: "
    "scipy.stats.binomtest(k, n).proportion_ci(0.95, method='exact')"
)
#: Quantiles of the smallest perturbation found, for a minimal-perturbation attack.
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
#: A backend "found the best" perturbation of a sample when its distance is within this
#: relative tolerance of the smallest any backend found (float32 images: ~1e-7 per pixel).
BEST_RTOL = 1e-6


def proportion_ci(k: int, n: int) -> list[float] | None:
    """The 95 % Clopper–Pearson interval ``[lo, hi]`` for ``k`` successes in ``n`` trials
    (scipy's exact binomial interval); None when ``n`` is 0 (no rate, no interval)."""
    if n <= 0:
        return None
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=CI_LEVEL, method="exact")
    return [float(ci.low), float(ci.high)]


def proportion_cis(k: np.ndarray, n: int) -> list[list[float]]:
    """:func:`proportion_ci` for many counts of the same ``n`` at once, from the beta
    quantiles that define the Clopper–Pearson interval (what scipy's ``binomtest`` computes
    for ``method="exact"``), with exact 0 and 1 at the ends."""
    k = np.asarray(k, np.float64)
    half = (1 - CI_LEVEL) / 2
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(half, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - half, k + 1, n - k), 1.0)
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def mean_interval(counts: list[int], n: int) -> list[float] | None:
    """An interval for the mean of several backends' rates on the same ``n`` samples (noise:
    draws are not unioned): from the lowest lower bound to the highest upper bound of the
    backends' own intervals, conservative because the draws are not independent."""
    cis = [ci for ci in (proportion_ci(k, n) for k in counts) if ci is not None]
    return [min(c[0] for c in cis), max(c[1] for c in cis)] if cis else None


def count_of(rate: float | None, n: int) -> int:
    """The count behind a rate of ``n`` trials (rates here are always ``k / n``)."""
    return 0 if rate is None or n <= 0 else int(round(rate * n))


def robust_distances(
    distance: np.ndarray, fooled: np.ndarray, tie: np.ndarray, clean_correct: np.ndarray
) -> np.ndarray:
    """Per row: the smallest ε at which the row is no longer robust.

    0 for a clean mistake (not robust at any ε, as ``robust_accuracy`` counts it); the
    perturbation's norm for a row the attack fooled or left on the decision boundary (a tie:
    any larger ε crosses it, and ``robust_accuracy`` counts ties as not robust); infinity
    when the attack found nothing (robust at every ε, as far as this run shows).
    """
    found = np.asarray(fooled, bool) | np.asarray(tie, bool)
    out = np.where(found, np.asarray(distance, np.float64), np.inf)
    return np.where(np.asarray(clean_correct, bool), out, 0.0)


def robust_accuracy_at(
    distances: np.ndarray, eps: float, n_total: int, extra_robust: int = 0
) -> float:
    """Robust accuracy at ``eps``: a sample is robust when no perturbation of norm ≤ ``eps``
    was found (its distance is above ``eps``). ``n_total``: the samples evaluated (the
    denominator); ``extra_robust``: those evaluated but not attacked that count as robust."""
    return (int((np.asarray(distances) > eps).sum()) + extra_robust) / n_total


def robust_curve(
    distances: np.ndarray, n_total: int, extra_robust: int = 0
) -> dict[str, Any]:
    """robust_accuracy(ε) from per-sample distances, exactly, as the breakpoints of a step
    function (as Foolbox's ``epsilons`` and AttackBench's curves): ``eps[0] = 0`` and then
    every distinct finite distance; ``robust_accuracy[i]`` holds on ``[eps[i], eps[i+1])``,
    ``robust_accuracy_ci[i]`` is its interval. The curve never rises and ends at the share
    robust to everything found."""
    d = np.asarray(distances, np.float64)
    eps = np.unique(np.concatenate([[0.0], d[np.isfinite(d)]]))
    robust = [robust_accuracy_at(d, float(e), n_total, extra_robust) for e in eps]
    counts = np.array([count_of(r, n_total) for r in robust])
    return {
        "eps": [float(e) for e in eps],
        "robust_accuracy": robust,
        "robust_accuracy_ci": proportion_cis(counts, n_total),
    }


def curve_value(curve: Mapping[str, Any], eps: float) -> float:
    """The step curve of :func:`robust_curve` read at ``eps``."""
    i = int(np.searchsorted(np.asarray(curve["eps"]), eps, side="right")) - 1
    return float(curve["robust_accuracy"][max(i, 0)])


def best_across(per_backend: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per sample, the smallest distance any backend found (arrays aligned sample by
    sample): the tightest upper bound on each sample's true minimal perturbation."""
    return np.min(np.stack([np.asarray(v, np.float64) for v in per_backend.values()]), axis=0)


def optimality(per_backend: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """AttackBench's optimality, per sample because the backends ran on the same samples.

    Over the samples some backend found a perturbation for (finite best, above 0): per
    backend, the share where it found the best one (within :data:`BEST_RTOL`), with its
    interval, and the median ratio of its distance to the best over the samples it found
    one for (1 is optimal); ``n_not_found``: samples another backend found and it did not.
    """
    best = best_across(per_backend)
    scored = np.isfinite(best) & (best > 0)
    out = {}
    for name, values in per_backend.items():
        d = np.asarray(values, np.float64)[scored]
        b = best[scored]
        found = np.isfinite(d)
        is_best = found & (d <= b * (1 + BEST_RTOL))
        n = int(scored.sum())
        out[name] = {
            "n_compared": n,
            "n_best": int(is_best.sum()),
            "share_best": float(is_best.mean()) if n else None,
            "share_best_ci": proportion_ci(int(is_best.sum()), n),
            "median_ratio_to_best": float(np.median(d[found] / b[found])) if found.any() else None,
            "n_not_found": int((~found).sum()),
        }
    return out


def distance_quantiles(distances: np.ndarray) -> dict[str, Any]:
    """Median and :data:`QUANTILES` of the finite, positive distances (the perturbations
    found), with their count; quantiles None when there is none."""
    d = np.asarray(distances, np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    values = np.quantile(d, QUANTILES) if len(d) else [None] * len(QUANTILES)
    return {
        "n": int(len(d)),
        "median": float(np.median(d)) if len(d) else None,
        "quantiles": {
            f"{q:g}": (None if v is None else float(v))
            for q, v in zip(QUANTILES, values, strict=True)
        },
    }


def per_class(labels: np.ndarray, robust: np.ndarray, classes: int) -> list[dict[str, Any]]:
    """Robust accuracy per true class with its counts and interval: ``labels`` and
    ``robust`` are per evaluated sample (robust: not fooled by any backend, clean-correct)."""
    labels = np.asarray(labels)
    robust = np.asarray(robust, bool)
    out = []
    for c in range(classes):
        mine = labels == c
        n, k = int(mine.sum()), int(robust[mine].sum())
        out.append(
            {
                "class": c,
                "n": n,
                "n_robust": k,
                "robust_accuracy": k / n if n else None,
                "robust_accuracy_ci": proportion_ci(k, n),
            }
        )
    return out
