"""Two runs compared row by row: ``comparison.json``.

Run A is the baseline, run B the candidate; every difference is B − A. On the same data (equal
data fingerprints and the same samples evaluated) the comparison is *paired*: per sample, the
flips robust → fooled and fooled → robust, McNemar's exact test (a two-sided binomial test on
the discordant samples, scipy), and Newcombe's hybrid score interval for the paired difference
of two proportions (Newcombe 1998, method 10: Wilson intervals of each side combined with the
correlation of the pairs). On different data it is *unpaired*: each side's Clopper–Pearson
interval and Newcombe's interval for the difference of independent proportions (method 10
with zero correlation).
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import binomtest

from unified_adv.compare.runs import CONFIDENCE, Row, RunFolder, all_rows, wilson_ci

SCHEMA = 1
#: Significance level of McNemar's test (and of an unpaired interval excluding 0).
ALPHA = 0.05
PAIRED_METHOD = (
    "paired: McNemar's exact test (two-sided binomial test on the discordant samples) and "
    "Newcombe's hybrid score interval for a paired difference (1998, method 10), 95 %"
)
UNPAIRED_METHOD = (
    "unpaired: each run's Clopper–Pearson interval; Newcombe's hybrid score interval for the "
    "difference of independent proportions (1998, method 10), 95 %"
)


def newcombe_interval(
    k_a: int, k_b: int, n: int, k_both: int | None = None, n_b: int | None = None
) -> list[float]:
    """95 % interval of p_B − p_A. ``k_both``: samples robust in both (paired, same ``n``);
    None: independent samples of sizes ``n`` (A) and ``n_b`` (B)."""
    n_b = n if n_b is None else n_b
    p_a, p_b = k_a / n, k_b / n_b
    l_a, u_a = wilson_ci(k_a, n)
    l_b, u_b = wilson_ci(k_b, n_b)
    phi = 0.0
    if k_both is not None:
        both, only_b, only_a = k_both, k_b - k_both, k_a - k_both
        neither = n - both - only_a - only_b
        denom = math.sqrt(
            (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
        )
        phi = (both * neither - only_a * only_b) / denom if denom else 0.0
    d = p_b - p_a
    lo2 = (p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2
    hi2 = (u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2
    return [max(-1.0, d - math.sqrt(max(lo2, 0.0))), min(1.0, d + math.sqrt(max(hi2, 0.0)))]


def _paired(a: Row, b: Row) -> dict[str, Any]:
    assert a.robust is not None and b.robust is not None
    index = sorted(set(a.robust.index) | set(b.robust.index))
    ra = a.robust.reindex(index, fill_value=False).astype(bool)
    rb = b.robust.reindex(index, fill_value=False).astype(bool)
    lost = [int(s) for s in ra.index[ra & ~rb]]
    gained = [int(s) for s in ra.index[~ra & rb]]
    discordant = len(lost) + len(gained)
    p = binomtest(len(lost), discordant, 0.5).pvalue if discordant else 1.0
    k_a, k_b, k_both = int(ra.sum()), int(rb.sum()), int((ra & rb).sum())
    return {
        "paired": True,
        "flips": {
            "robust_to_fooled": len(lost),
            "fooled_to_robust": len(gained),
            "robust_to_fooled_samples": lost[:50],
            "fooled_to_robust_samples": gained[:50],
        },
        "mcnemar_p": float(p),
        "difference_ci": newcombe_interval(k_a, k_b, a.scope, k_both=k_both),
        "significant": bool(p < ALPHA),
    }


def _unpaired(a: Row, b: Row) -> dict[str, Any]:
    assert a.robust_accuracy is not None and b.robust_accuracy is not None
    k_a, k_b = round(a.robust_accuracy * a.scope), round(b.robust_accuracy * b.scope)
    ci = newcombe_interval(k_a, k_b, a.scope, n_b=b.scope)
    return {"paired": False, "difference_ci": ci, "significant": bool(ci[0] > 0 or ci[1] < 0)}


def compare_rows(a: Row, b: Row, same_data: bool) -> dict[str, Any]:
    """One matched row: both sides, the difference B − A and its test."""
    out: dict[str, Any] = {
        "key": a.key,
        **a.describe(),
        "worst_case": a.worst,
        "statistic": a.statistic or None,
        "a": {"robust_accuracy": a.robust_accuracy, "ci": a.ci, "n": a.scope, **a.extra},
        "b": {"robust_accuracy": b.robust_accuracy, "ci": b.ci, "n": b.scope, **b.extra},
    }
    if a.robust_accuracy is None or b.robust_accuracy is None:
        return {**out, "difference": None, "paired": False, "note": "a side has no result"}
    out["difference"] = b.robust_accuracy - a.robust_accuracy
    if same_data and a.paired_ok and b.paired_ok and a.scope == b.scope:
        return {**out, **_paired(a, b)}
    return {**out, **_unpaired(a, b)}


def _regressions(rows: list[dict[str, Any]], points: float | None) -> list[str]:
    """Worst-case rows whose robust accuracy fell by more than ``points`` percentage points
    (and, when paired, significantly by McNemar's test)."""
    if points is None:
        return []
    return [
        r["key"]
        for r in rows
        if r["worst_case"]
        and r["difference"] is not None
        and -100 * r["difference"] > points
        and (r["significant"] or not r["paired"])
    ]


def compare_runs(
    a: RunFolder, b: RunFolder, fail_on_regression: float | None = None
) -> dict[str, Any]:
    """The whole comparison of baseline ``a`` and candidate ``b`` (``comparison.json``)."""
    rows_a, rows_b = all_rows(a), all_rows(b)
    same_data = a.fingerprint("data") == b.fingerprint("data") != ""
    matched = [compare_rows(rows_a[k], rows_b[k], same_data) for k in rows_a if k in rows_b]
    matched.sort(key=lambda r: (not r["worst_case"], r["attack_id"], r["eps"] or 0.0, r["backend"]))
    return {
        "schema_version": SCHEMA,
        "a": a.describe(),
        "b": b.describe(),
        "same_data": same_data,
        "same_model": a.fingerprint("model") == b.fingerprint("model") != "",
        "method": PAIRED_METHOD if same_data else UNPAIRED_METHOD,
        "confidence": CONFIDENCE,
        "alpha": ALPHA,
        "rows": matched,
        "only_in_a": sorted(k for k in rows_a if k not in rows_b),
        "only_in_b": sorted(k for k in rows_b if k not in rows_a),
        "fail_on_regression_points": fail_on_regression,
        "regressions": _regressions(matched, fail_on_regression),
    }


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The worst-case rows, one line each, and what is only in one run."""
    kind = "paired" if comparison["same_data"] else "unpaired"
    lines = [f"{comparison['a']['scenario']} (A) vs {comparison['b']['scenario']} (B), {kind}:"]
    for r in comparison["rows"]:
        if not r["worst_case"] or r["difference"] is None:
            continue
        test = f", McNemar p={r['mcnemar_p']:.2g}" if r["paired"] else ""
        lines.append(
            f"  {r['key']}: {100 * r['a']['robust_accuracy']:.1f} % -> "
            f"{100 * r['b']['robust_accuracy']:.1f} % ({100 * r['difference']:+.1f} points{test})"
        )
    for side in ("a", "b"):
        if comparison[f"only_in_{side}"]:
            lines.append(f"  only in {side.upper()}: " + "; ".join(comparison[f"only_in_{side}"]))
    return lines
