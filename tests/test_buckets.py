"""Confidence buckets (Possas): exact boundaries, quantile mode, Table 1 end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unified_adv
from unified_adv.analyses.buckets import (
    assign_buckets,
    bucket_notes,
    log_confidence,
    paper_findings,
    table,
)


def test_paper_thresholds_are_assigned_exactly_as_documented() -> None:
    conf = np.array([1e-9, 0.1499999, 0.15, 0.2999999, 0.30, 0.31, 1.0])
    bucket, edges = assign_buckets(np.log(conf), "paper")
    assert edges == pytest.approx([0.15, 0.30], rel=1e-15)
    # low = conf < 0.15, medium = 0.15 <= conf < 0.30, high = conf >= 0.30
    assert bucket.tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_quantile_buckets_are_equal_sized_and_ties_go_up() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(300)
    bucket, edges = assign_buckets(np.log(conf), "quantile", count=3)
    assert np.bincount(bucket).tolist() == [100, 100, 100]
    assert len(edges) == 2 and edges[0] < edges[1]
    # A sample exactly on an inner edge goes to the upper bucket.
    on_edge, _ = assign_buckets(np.log([edges[0]]), "paper", (edges[0], edges[1]))
    assert on_edge.tolist() == [1]
    four, _ = assign_buckets(np.log(conf), "quantile", count=4)
    assert np.bincount(four).tolist() == [75, 75, 75, 75]


def test_table_counts_errors_and_intervals() -> None:
    labels = np.array([0, 1, 2, 3])
    logits = np.array(
        [
            [9, 1, 0, 0, 0, 0],  # still 0: no top-1 error
            [9, 1, 0, 0, 0, 0],  # top-1 wrong, label 1 still in top-5
            [9, 8, 7, 6, 5, 0],  # label 2 in top-5
            [9, 8, 7, 6, 5, 0],  # label 3 in top-5 (4th)
        ],
        dtype=np.float32,
    )
    logits[3] = [9, 8, 7, 1, 5, 6]  # label 3 now 6th: top-5 error
    rows = table({("fast", "inverse"): logits}, labels, np.array([0, 0, 1, 1]), ["low", "high"])
    (row,) = rows
    assert row["buckets"]["low"]["n"] == 2 and row["buckets"]["low"]["top1"] == 0.5
    assert row["buckets"]["low"]["top5"] == 0.0
    assert row["buckets"]["high"]["top1"] == 1.0 and row["buckets"]["high"]["top5"] == 0.5
    lo, hi = row["buckets"]["high"]["top5_ci"]
    assert lo < 0.5 < hi


def _row(method: str, gradient: str, low: float, high: float, top5: float) -> dict:
    cell = lambda e: {"n": 10, "top1": e, "top5": top5, "top1_ci": None, "top5_ci": None}  # noqa: E731
    return {
        "method": method,
        "gradient": gradient,
        "buckets": {"low": cell(low), "high": cell(high)},
        "top1_all": (low + high) / 2,
        "top5_all": top5,
    }


def test_paper_findings_are_judged_from_the_numbers() -> None:
    rows = [
        _row("fast", "inverse", 0.9, 0.8, 0.5),
        _row("fast", "least_likely", 0.8, 0.7, 0.2),
        _row("iterative", "inverse", 0.95, 0.85, 0.6),
        _row("iterative", "least_likely", 0.85, 0.75, 0.3),
    ]
    verdicts = {f["finding"]: f["holds"] for f in paper_findings(rows, ["low", "high"])}
    assert all(verdicts.values())
    rows[3] = _row("iterative", "least_likely", 0.5, 0.9, 0.3)  # breaks three of them
    verdicts = {f["finding"]: f["holds"] for f in paper_findings(rows, ["low", "high"])}
    assert verdicts["low confidence is more vulnerable"] is False
    assert verdicts["iterative is at least as strong as fast"] is False
    assert verdicts["top-5 error is well below top-1 error"] is True


def test_confidence_buckets_end_to_end(tmp_path: Path) -> None:
    text = """
name: buckets
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 150}
analyses:
  - {name: confidence_buckets, mode: quantile, buckets: 3, eps: 0.1, steps: 3}
"""
    result = unified_adv.run(unified_adv.scenario_from_text(text), tmp_path / "b")
    (entry,) = result.summary["analyses"]
    assert (
        sum(entry["bucket_counts"].values())
        == entry["n_samples"]
        == result.summary["data"]["n_correct"]
    )
    # Foolbox's FGSM cannot be targeted: fast least-likely runs on ART and torchattacks only.
    assert entry["backends_per_method"]["fast/least_likely"] == ["art", "torchattacks"]
    assert entry["backends_per_method"]["iterative/inverse"] == ["art", "foolbox", "torchattacks"]
    rows = entry["tables"][entry["primary_backend"]]
    assert [(r["method"], r["gradient"]) for r in rows] == [
        ("fast", "inverse"),
        ("fast", "least_likely"),
        ("iterative", "inverse"),
        ("iterative", "least_likely"),
    ]
    for r in rows:
        for cell in r["buckets"].values():
            lo, hi = cell["top1_ci"]
            assert lo <= cell["top1"] <= hi and cell["top5"] <= cell["top1"]
    assert entry["backend_spread"] == pytest.approx(0.0)  # FGSM/BIM agree bit for bit
    assert len(entry["paper_findings"]) == 4
    html = result.report.read_text()
    assert "Confidence buckets" in html and "the paper's finding" in html


def test_confidences_rank_in_float64_without_float32_ties() -> None:
    """Logits whose float32 softmax rounds to exactly 1.0 still rank apart in float64."""
    import torch

    margins = np.array([20.0, 22.0, 24.0, 26.0, 28.0, 30.0])
    logits = np.stack([margins, np.zeros(6)], 1).astype(np.float32)
    as_f32 = torch.softmax(torch.from_numpy(logits), 1).max(1).values.numpy()
    assert (as_f32 == 1.0).sum() >= 3  # the ties the float32 path had
    log_conf = log_confidence(logits)
    assert log_conf.dtype == np.float64 and len(np.unique(log_conf)) == 6
    assert np.all(np.diff(log_conf) > 0)  # a larger margin is more confident
    bucket, _ = assign_buckets(log_conf, "quantile", count=3)
    assert np.bincount(bucket).tolist() == [2, 2, 2]


def test_degenerate_and_empty_buckets_are_said_plainly() -> None:
    log_conf = np.log(np.array([0.99, 0.995, 0.999, 0.9999]))
    bucket, _ = assign_buckets(log_conf, "paper")
    notes = bucket_notes(log_conf, bucket, ["low", "medium", "high"], "paper")
    assert notes and notes[0].startswith("degenerate: all 4 samples are in 'high'")
    q, _ = assign_buckets(log_conf, "quantile", count=2)
    qnotes = bucket_notes(log_conf, q, ["q1", "q2"], "quantile")
    assert any("'q1' means low within >= 0.99" in n for n in qnotes)
    spread = np.log(np.array([0.1, 0.2, 0.5]))
    b, _ = assign_buckets(spread, "paper")
    assert bucket_notes(spread, b, ["low", "medium", "high"], "paper") == []
    b2, _ = assign_buckets(np.log(np.array([0.1, 0.5])), "paper")
    assert bucket_notes(np.log(np.array([0.1, 0.5])), b2, ["low", "medium", "high"], "paper") == [
        "'medium' is empty"
    ]


def test_each_method_has_its_own_unit(tmp_path: Path) -> None:
    """The four method × gradient combinations are four unit files per backend, none
    overwriting another, and a resume reads each back."""
    text = """
name: bunits
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 40}
analyses:
  - {name: confidence_buckets, mode: paper, eps: 0.1, steps: 2, backends: [torchattacks]}
"""
    scenario = unified_adv.scenario_from_text(text)
    result = unified_adv.run(scenario, tmp_path / "bu")
    files = sorted(p.name for p in (tmp_path / "bu" / "units").glob("an00-*.json"))
    assert len(files) == 4 and len({f.split("-torchattacks-")[1] for f in files}) == 4
    (entry,) = result.summary["analyses"]
    assert entry["bucket_notes"][0].startswith("degenerate: all")
    again = unified_adv.run(scenario, tmp_path / "bu", resume=True)
    assert again.summary["analyses"][0]["tables"] == entry["tables"]
