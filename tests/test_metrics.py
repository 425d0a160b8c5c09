"""Numbers a reviewer can quote (issue 18): the bounded headline, robust accuracy against ε from
minimal distances (per backend and best across backends), intervals on every rate, per-class
robust accuracy, and the tables a CI pipeline gates on.

The metric functions are checked against hand computations on small arrays; the rest on the
quickstart run that the report tests use too (``quickstart_run`` in conftest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unified_adv.adapters import backends_with
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate import metrics
from unified_adv.evaluate.findings import _rate_difference

INF = math.inf

# --------------------------------------------------------------------------- hand computations


def test_the_curve_matches_a_hand_computation() -> None:
    """Five attacked rows (one fooled at 0.3, one at 0.1, one never, one tied at 0.2, one a
    clean mistake) and one correct sample not attacked, of six evaluated."""
    d = metrics.robust_distances(
        distance=np.array([0.3, 0.1, 0.5, 0.2, 0.4]),
        fooled=np.array([True, True, False, False, True]),
        tie=np.array([False, False, False, True, False]),
        clean_correct=np.array([True, True, True, True, False]),
    )
    assert d.tolist() == [0.3, 0.1, INF, 0.2, 0.0]
    curve = metrics.robust_curve(d, n_total=6, extra_robust=1)
    # robust at ε: distance > ε, plus the unattacked correct sample.
    assert curve["eps"] == [0.0, 0.1, 0.2, 0.3]
    assert curve["robust_accuracy"] == [5 / 6, 4 / 6, 3 / 6, 2 / 6]
    assert metrics.curve_value(curve, 0.05) == 5 / 6
    assert metrics.curve_value(curve, 0.1) == 4 / 6  # a perturbation of norm exactly ε counts
    assert metrics.curve_value(curve, 0.15) == 4 / 6
    assert metrics.curve_value(curve, 7.0) == 2 / 6
    assert curve["robust_accuracy_ci"][0] == pytest.approx(metrics.proportion_ci(5, 6))


def test_best_across_backends_is_never_above_a_backend() -> None:
    a = np.array([1.0, 2.0, INF, 3.0, 0.0, 0.7])
    b = np.array([1.0, 1.0, 2.0, INF, 0.0, 0.9])
    best = metrics.best_across({"a": a, "b": b})
    assert best.tolist() == [1.0, 1.0, 2.0, 3.0, 0.0, 0.7]
    curves = {k: metrics.robust_curve(v, 8) for k, v in {"a": a, "b": b, "best": best}.items()}
    for eps in np.linspace(0, 4, 81):
        top = metrics.curve_value(curves["best"], eps)
        assert top <= metrics.curve_value(curves["a"], eps)
        assert top <= metrics.curve_value(curves["b"], eps)
    # ... and strictly below both somewhere: the union finds what neither finds alone
    # (samples 2 and 3: only one backend found each).
    assert metrics.curve_value(curves["best"], 3.5) == 0.0
    assert metrics.curve_value(curves["a"], 3.5) == metrics.curve_value(curves["b"], 3.5) == 1 / 8


def test_optimality_by_hand() -> None:
    a = np.array([1.0, 2.0, INF, 3.0])
    b = np.array([1.0, 1.0, 2.0, INF])
    out = metrics.optimality({"a": a, "b": b})  # best = [1, 1, 2, 3]
    assert out["a"]["n_best"] == 2 and out["a"]["share_best"] == 0.5  # samples 0 and 3
    assert out["a"]["median_ratio_to_best"] == 1.0  # ratios 1, 2, 1
    assert out["a"]["n_not_found"] == 1
    assert out["b"]["n_best"] == 3 and out["b"]["median_ratio_to_best"] == 1.0
    assert out["b"]["share_best_ci"] == metrics.proportion_ci(3, 4)


def test_the_interval_is_clopper_pearson() -> None:
    # k = 0: the upper bound is 1 - (α/2)^(1/n) in closed form.
    assert metrics.proportion_ci(0, 10) == pytest.approx([0.0, 1 - 0.025 ** (1 / 10)])
    assert metrics.proportion_ci(10, 10) == pytest.approx([0.025 ** (1 / 10), 1.0])
    lo, hi = metrics.proportion_ci(316, 531)  # the quickstart's FGSM 59.6 %: about ±4 points
    assert lo == pytest.approx(stats.beta.ppf(0.025, 316, 216))
    assert hi == pytest.approx(stats.beta.ppf(0.975, 317, 215))
    assert 0.03 < 316 / 531 - lo < 0.05 and 0.03 < hi - 316 / 531 < 0.05
    ks = np.arange(41)
    assert np.allclose(metrics.proportion_cis(ks, 40), [metrics.proportion_ci(k, 40) for k in ks])
    assert metrics.proportion_ci(0, 0) is None


def test_per_class_counts_by_hand() -> None:
    rows = metrics.per_class(np.array([0, 0, 1, 2, 2, 2]), np.array([1, 0, 1, 0, 0, 1]), 4)
    assert [(r["n"], r["n_robust"]) for r in rows] == [(2, 1), (1, 1), (3, 1), (0, 0)]
    assert rows[3]["robust_accuracy"] is None and rows[3]["robust_accuracy_ci"] is None


def test_findings_quote_a_backend_difference_only_when_significant() -> None:
    counts = {"both_fooled": 300, "neither": 200, "only_first": 14, "only_second": 17}
    pair: dict[str, Any] = {
        "success_rates": [0.592, 0.598], "mcnemar_p": 0.6, "distance_test": None, "ties": [0, 0],
        **counts,
    }  # fmt: skip
    text = _rate_difference(pair, 0.05)
    assert "not significantly different" in text and "59.2%" not in text
    text = _rate_difference({**pair, "mcnemar_p": 0.001}, 0.05)
    assert "59.2% vs 59.8%" in text and "significant" in text
    # Ties are no successes: rates that differ through ties alone are compared without them.
    text = _rate_difference({**pair, "success_rates": [1.0, 0.158], "ties": [0, 16]}, 0.05)
    assert "on the 531 samples tied in neither" in text
    assert "ties on the decision boundary 0 vs 16" in text


# --------------------------------------------------------------------------- the quickstart


def test_the_headline_is_the_worst_bounded_attack(quickstart_run: Any) -> None:
    s = quickstart_run.summary
    bounded = [
        w
        for w in s["crosscheck"]["worst_case"]
        if ATTACKS[
            next(a["attack"] for a in s["attacks"] if a["attack_id"] == w["attack_id"])
        ].threat
        == "ball"
    ]
    worst = min(bounded, key=lambda w: w["robust_accuracy_worst_case"])
    head = s["headline"]
    assert head["robust_accuracy"] == worst["robust_accuracy_worst_case"]
    assert head["robust_accuracy_ci"] == worst["robust_accuracy_ci"]
    assert (head["attack_id"], head["eps"]) == (worst["attack_id"], worst["eps"])
    assert head["attack_id"] not in ("deepfool", "cw_l2")
    assert f"under {head['attack_id']} at ε = {head['eps_text']}" in head["text"]
    # The minimal attacks' 0 % is what the old headline quoted; it is not the headline now.
    minimal = [w for w in s["crosscheck"]["worst_case"] if w["attack_id"] in ("deepfool", "cw_l2")]
    assert min(w["robust_accuracy_worst_case"] for w in minimal) < head["robust_accuracy"]
    html = quickstart_run.report.read_text(encoding="utf-8")
    assert f"{100 * head['robust_accuracy']:.1f} %" in html
    assert f"{head['attack_id']} at ε = {head['eps_text']}" in html


def test_deepfool_and_cw_have_curves_per_backend_and_best(quickstart_run: Any) -> None:
    s = quickstart_run.summary
    entries = {m["attack_id"]: m for m in s["minimal_perturbation"]}
    assert set(entries) == {"deepfool", "cw_l2"}
    for m in entries.values():
        assert m["backends"] == sorted(backends_with(m["attack"]))  # every backend with it
        for norm in ("linf", "l2"):
            curves = m["curves"][norm]
            assert set(curves["backends"]) == set(m["backends"])
            grid = sorted({e for c in curves["backends"].values() for e in c["eps"]})
            for eps in grid:
                best = metrics.curve_value(curves["best"], eps)
                for c in curves["backends"].values():
                    assert best <= metrics.curve_value(c, eps)
            d = m["distances"][norm]["best"]
            assert d["quantiles"]["0.1"] <= d["median"] <= d["quantiles"]["0.9"]
        assert set(m["optimality"]) == set(m["backends"])
        # Some backend found the best perturbation of every sample any backend found one for.
        assert max(o["n_best"] for o in m["optimality"].values()) > 0
    html = quickstart_run.report.read_text(encoding="utf-8")
    for attack_id in entries:
        assert (
            f'alt="robust accuracy against epsilon from the minimal distances of {attack_id}"'
            in html
        )


def test_the_curve_at_infinity_is_the_robust_accuracy(quickstart_run: Any) -> None:
    """The curves end where robust_accuracy is: a tie counts at its distance, as the table
    counts it as not robust."""
    s = quickstart_run.summary
    for m in s["minimal_perturbation"]:
        for backend, c in m["curves"][m["norm"]]["backends"].items():
            entry = next(
                a
                for a in s["attacks"]
                if a["attack_id"] == m["attack_id"] and a["backend"] == backend
            )
            assert c["robust_accuracy"][-1] == pytest.approx(entry["robust_accuracy"])


#: Each rate unified-adv reports, and the key of its interval beside it.
RATE_KEYS = {
    "robust_accuracy": "robust_accuracy_ci",
    "robust_accuracy_worst_case": "robust_accuracy_ci",
    "success_rate": "success_rate_ci",
    "success_rates": "success_rates_ci",
    "success_rate_any_backend": "success_rate_any_backend_ci",
    "success_rate_per_backend": "success_rate_per_backend_ci",
    "clean_accuracy": "clean_accuracy_ci",
    "share_best": "share_best_ci",
    "bounded_robust_accuracy": "bounded_robust_accuracy_ci",
    "curve_robust_accuracy": "curve_robust_accuracy_ci",
    "accuracy": "accuracy_ci",
    "clean": "clean_ci",
}


def _rates(doc: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, rate, interval) for every rate in a summary (the analyses' own are not
    unified-adv's attack rates and are left out; the held-out accuracy is the model's)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in RATE_KEYS and v is not None and not path.startswith((".analyses", ".monitor")):
                yield f"{path}.{k}", v, doc.get(RATE_KEYS[k], "missing")
            yield from _rates(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _rates(v, f"{path}[{i}]")


def _inside(value: Any, ci: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(ci, dict) and all(_inside(v, ci.get(k)) for k, v in value.items())
    if isinstance(value, list):
        return isinstance(ci, list) and len(ci) == len(value) and all(map(_inside, value, ci))
    return isinstance(ci, list) and len(ci) == 2 and ci[0] - 1e-12 <= value <= ci[1] + 1e-12


def test_every_rate_in_the_summary_has_an_interval(quickstart_run: Any) -> None:
    """Walk summary.json as written (what a pipeline reads)."""
    summary = json.loads((quickstart_run.out_dir / "summary.json").read_text(encoding="utf-8"))
    found = list(_rates(summary))
    assert len(found) > 50  # attacks, worst cases, pairs, curves, per class, data
    assert {p.rsplit(".", 1)[-1] for p, _, _ in found} >= {
        "robust_accuracy", "robust_accuracy_worst_case", "success_rate", "success_rates",
        "success_rate_any_backend", "clean_accuracy", "share_best", "curve_robust_accuracy",
    }  # fmt: skip
    bad = [p for p, value, ci in found if not _inside(value, ci)]
    assert bad == []
    assert summary["intervals"]["method"] == "clopper-pearson"


def test_the_walk_finds_a_missing_interval() -> None:
    doc = {
        "attacks": [
            {"robust_accuracy": 0.5, "robust_accuracy_ci": [0.4, 0.6]},
            {"success_rate": 0.2},
        ]
    }
    assert [p for p, v, ci in _rates(doc) if not _inside(v, ci)] == [".attacks[1].success_rate"]


def test_per_class_adds_up_to_the_worst_case(quickstart_run: Any) -> None:
    s = quickstart_run.summary
    worst = {(w["attack_id"], w["eps"]): w for w in s["crosscheck"]["worst_case"]}
    assert len(s["per_class"]) == 7  # FGSM and PGD L∞ at 3 ε each, PGD L2 at 1
    for row in s["per_class"]:
        w = worst[(row["attack_id"], row["eps"])]
        assert sum(c["n_robust"] for c in row["classes"]) == w["n_robust"]
        assert sum(c["n"] for c in row["classes"]) == w["n_evaluated"]
    html = quickstart_run.report.read_text(encoding="utf-8")
    assert 'alt="robust accuracy per class, worst case across backends"' in html


def test_a_pipeline_can_gate_on_the_lower_bound(quickstart_run: Any) -> None:
    """The README's recipe: read attacks.csv, take the worst-case row of PGD at ε 0.1."""
    out = quickstart_run.out_dir
    table = pd.read_csv(out / "attacks.csv", dtype={"eps_text": str})  # "0.1" stays text
    row = table[
        (table.attack_id == "pgd") & (table.eps_text == "0.1") & (table.backend == "worst_case")
    ]
    assert len(row) == 1
    w = next(
        w
        for w in quickstart_run.summary["crosscheck"]["worst_case"]
        if w["attack_id"] == "pgd" and w["eps"] == 0.1
    )
    assert row.robust_accuracy_ci_low.iloc[0] == pytest.approx(w["robust_accuracy_ci"][0])
    for stem in ("attacks", "per_class", "curves"):
        parquet, csv = pd.read_parquet(out / f"{stem}.parquet"), pd.read_csv(out / f"{stem}.csv")
        assert len(parquet) == len(csv) > 0
        assert np.allclose(parquet.robust_accuracy, csv.robust_accuracy, equal_nan=True)
