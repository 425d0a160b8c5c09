"""Ding & Möller's analyses on models whose answers are known, and end to end on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import unified_adv
from unified_adv.adapters import adapter_class, backends_with
from unified_adv.analyses.morph import (
    morph_pairs,
    morph_summary,
    morph_sweep,
    threshold_sums,
)
from unified_adv.analyses.robustness_index import robustness_index
from unified_adv.analyses.walk import targeted_walk, walk_backends
from unified_adv.sources.models import ModelWrapper


class SumModel(torch.nn.Module):
    """Two classes on 2-pixel inputs: class 1 once x_a + x_b > 2·b (a boundary at T = b on the
    path from (0, 0) to (1, 1)); with ``band``, class 2 wins where |s − 1| < 0.25."""

    def __init__(self, b: float, band: bool = False) -> None:
        super().__init__()
        self.b, self.band = b, band
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        l0, l1 = 2 * self.b - s, s - 2 * self.b
        if not self.band:
            return torch.stack([l0, l1], 1)
        l2 = 0.5 - (s - 1).abs()
        return torch.stack([l0, l1, l2], 1)


POINTS = np.array([[[[0.0, 0.0]]], [[[1.0, 1.0]]]], dtype=np.float32)  # (2, 1, 1, 2)
LABELS = np.array([0, 1])


@pytest.mark.parametrize("boundary", [0.37, 0.5, 0.81])
def test_threshold_equals_the_analytic_boundary_within_one_step(boundary: float) -> None:
    model = ModelWrapper(SumModel(boundary))
    steps = 100
    res = morph_sweep(model, POINTS, LABELS, np.array([[0, 1], [1, 0]]), steps)
    forward, reverse = res.thresholds
    assert boundary <= forward <= boundary + 1 / (steps - 1)
    assert (1 - boundary) <= reverse <= (1 - boundary) + 1 / (steps - 1)
    assert not res.popup.any()


def test_threshold_sum_of_a_symmetric_model_is_one() -> None:
    model = ModelWrapper(SumModel(0.5))
    for steps in (11, 100, 101):
        res = morph_sweep(model, POINTS, LABELS, np.array([[0, 1], [1, 0]]), steps)
        (total,) = threshold_sums(res.pairs, res.thresholds)
        assert abs(total - 1) <= 1 / (steps - 1) + 1e-6
    summary = morph_summary(res, LABELS, 2)
    assert summary["morph_balance"] == pytest.approx(1 - 2 * np.mean(np.abs(res.thresholds - 0.5)))


def test_pop_up_detection_finds_a_planted_class() -> None:
    model = ModelWrapper(SumModel(0.5, band=True))
    res = morph_sweep(model, POINTS, LABELS, np.array([[0, 1], [1, 0]]), 100)
    assert res.popup.all() and res.popup_before_switch.all()
    assert set(np.unique(res.preds)) == {0, 1, 2}
    # Class 2 holds T in (0.375, 0.625): the switch to class 1 is delayed past it ...
    assert 0.625 <= res.thresholds[0] <= 0.625 + 1 / 99
    # ... in both directions, so the thresholds sum to more than 1 (the paper's 1.10 effect).
    (total,) = threshold_sums(res.pairs, res.thresholds)
    assert total > 1.2
    summary = morph_summary(res, LABELS, 3)
    assert summary["popup_share"] == 1.0 and summary["popup_classes"] == [2]


class LinearWalkModel(torch.nn.Module):
    """l0 = 0.1 − x_a, l1 = x_a − 0.1: class 0 once x_a < 0.1; x_b does not matter."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) * self.w).sum(1) - 0.1
        return torch.stack([-z, z], 1)


@pytest.mark.parametrize("backend", walk_backends(None))
def test_walk_matches_a_hand_computation(backend: str) -> None:
    """From x_a = 0.5 with alpha = 0.03 toward class 0: 0.5 − 0.03·n < 0.1 first at n = 14,
    so x* = (0.08, 0.5) and MAE = (0.42 + 0) / 2 = 0.21."""
    model = ModelWrapper(LinearWalkModel())
    x = np.array([[[[0.5, 0.5]]]], dtype=np.float32)
    y = np.array([1], dtype=np.int64)
    walk = targeted_walk(
        adapter_class(backend)(model=model),
        model,
        x,
        y,
        np.array([0]),
        step_size=0.03,
        max_steps=100,
        seed=0,
    )
    assert walk.reached.all()
    assert walk.iterations.tolist() == [14]
    assert walk.mae[0] == pytest.approx(0.21, abs=1e-6)
    assert walk.x_final[0, 0, 0, 1] == 0.5  # zero gradient: sign 0, untouched


def test_the_walk_leaves_out_a_bim_that_does_not_return_its_step() -> None:
    """adv-lib's BIM returns the input until the target is reached: walked with it, the point
    never moves, so the walk does not use it (secml-torch's returns the higher-loss of the two
    points, the step here, but not always: left out too)."""
    assert set(backends_with("bim")) - set(walk_backends(None)) == {"adv-lib", "secml-torch"}
    model = ModelWrapper(LinearWalkModel())
    x = np.array([[[[0.5, 0.5]]]], dtype=np.float32)
    walk = targeted_walk(
        adapter_class("adv-lib")(model=model), model, x, np.array([1]), np.array([0]),
        step_size=0.03, max_steps=20, seed=0,
    )  # fmt: skip
    assert not walk.reached.any() and np.array_equal(walk.x_final, x)


def test_walk_stops_at_max_steps_and_reports_failure() -> None:
    model = ModelWrapper(LinearWalkModel())
    x = np.array([[[[0.5, 0.5]]]], dtype=np.float32)
    walk = targeted_walk(
        adapter_class("torchattacks")(model=model),
        model,
        x,
        np.array([1]),
        np.array([0]),
        step_size=0.03,
        max_steps=5,
        seed=0,
    )
    assert not walk.reached.any() and walk.iterations.tolist() == [5]
    assert walk.mae[0] == pytest.approx(0.075, abs=1e-6)


def test_random_pairs_come_with_their_reverse() -> None:
    labels = np.repeat(np.arange(4), 3)
    pairs = morph_pairs(labels, 10, seed=3)
    as_set = {tuple(p) for p in pairs.tolist()}
    assert all((j, i) in as_set for i, j in as_set)
    assert all(labels[i] != labels[j] for i, j in as_set)
    assert len(morph_pairs(labels, None, seed=0)) == 12 * 9
    assert np.array_equal(pairs, morph_pairs(labels, 10, seed=3))


def test_robustness_index() -> None:
    assert robustness_index(0.1, 0.8) == pytest.approx(8.0)
    assert robustness_index(None, 0.5) == pytest.approx(50.0)
    assert robustness_index(None, None) is None


def test_ding_moller_end_to_end_with_checkpoints(tmp_path: Path) -> None:
    text = """
name: dm
seed: 0
model: {builtin: digits-cnn, checkpoints: [1, 10]}
data: {builtin: digits}
analyses:
  - {name: morph, images_per_class: 2, steps: 25}
  - {name: targeted_walk, images_per_class: 1, max_steps: 60, step_size: 2/255}
"""
    scenario = unified_adv.scenario_from_text(text)
    result = unified_adv.run(scenario, tmp_path / "dm")
    summary = json.loads((tmp_path / "dm" / "summary.json").read_text())
    morph, walk = summary["analyses"]
    assert morph["images"] == 20 and [c["checkpoint"] for c in morph["checkpoints"]] == [
        "1",
        "10",
        "final",
    ]
    final = morph["checkpoints"][-1]
    assert final["pairs"] == 20 * 18 and len(final["threshold_matrix"]) == 10
    assert 0 <= final["popup_share"] <= 1 and final["threshold_sum"]["n"] == 20 * 18 / 2
    wfinal = walk["checkpoints"][-1]
    assert set(wfinal["backends"]) == {"art", "foolbox", "torchattacks"}
    assert wfinal["backends"]["art"]["walks"] == 10 * 9
    for g in wfinal["agreement"]:
        assert g["same_iterations"] == 1.0  # sign steps agree across the three libraries
    monitor = summary["monitor"]
    assert [m["checkpoint"] for m in monitor] == ["1", "10", "final"]
    assert monitor[0]["accuracy"] < monitor[-1]["accuracy"]
    for m in monitor:
        assert m["robustness_index"] == pytest.approx(100 * m["walk_effort"] * m["morph_balance"])
    html = result.report.read_text()
    for needle in (
        "Interpolation morphing",
        "Targeted iterative FGSM",
        "training-state monitor",
        "robustness index per checkpoint",
    ):
        assert needle in html
    # Resume reuses every analysis unit and gives the same numbers.
    again = unified_adv.run(scenario, tmp_path / "dm", resume=True)
    assert again.summary["monitor"] == summary["monitor"]


def test_checkpoint_statistics_use_only_pairs_valid_for_that_checkpoint(tmp_path: Path) -> None:
    """Ding & Möller: the epoch-1 model misclassifies some of the images the final model
    chose; its statistics must come from the pairs whose endpoints it classifies correctly
    (and walks whose source it does), with the counts reported."""
    from unified_adv.analyses.morph import morph_sweep
    from unified_adv.run.prepare import prepare
    from unified_adv.sources.load import load_model

    text = """
name: dmvalid
seed: 0
model: {builtin: digits-cnn, checkpoints: [1]}
data: {builtin: digits}
analyses:
  - {name: morph, images_per_class: 3, steps: 20}
  - {name: targeted_walk, images_per_class: 1, max_steps: 40, step_size: 4/255, backends: [foolbox]}
"""
    scenario = unified_adv.scenario_from_text(text)
    result = unified_adv.run(scenario, tmp_path / "dmv")
    morph, walk = result.summary["analyses"]
    prep = prepare(scenario)
    epoch1 = load_model(scenario, 1).wrapper
    pos = np.array([np.flatnonzero(prep.data.index == s)[0] for s in morph["image_samples"]])
    labels = prep.data.y[pos]
    ok = epoch1.logits(prep.data.x[pos]).argmax(1) == labels
    assert 0 < ok.sum() < len(ok)  # the test needs a checkpoint that gets some wrong
    e1 = morph["checkpoints"][0]
    i, j = np.meshgrid(np.arange(len(pos)), np.arange(len(pos)), indexing="ij")
    cross = labels[i] != labels[j]
    valid = cross & ok[i] & ok[j]
    assert e1["valid_pairs"] == int(valid.sum()) and e1["pairs_total"] == int(cross.sum())
    assert e1["pairs"] == e1["valid_pairs"] and e1["images_correct"] == int(ok.sum())
    # The pop-up share recomputed by hand on the valid pairs only.
    pairs = np.stack([i[valid], j[valid]], 1)
    res = morph_sweep(epoch1, prep.data.x[pos], labels, pairs, 20)
    assert e1["popup_share"] == pytest.approx(float(res.popup.mean()))
    assert e1["all_pairs"]["popup_share"] != pytest.approx(e1["popup_share"])
    wpos = np.array([np.flatnonzero(prep.data.index == s)[0] for s in walk["image_samples"]])
    wok = epoch1.logits(prep.data.x[wpos]).argmax(1) == prep.data.y[wpos]
    w1 = walk["checkpoints"][0]["backends"]["foolbox"]
    assert w1["valid_walks"] == int(wok.sum()) * 9 and w1["walks"] == w1["valid_walks"]
    assert w1["walks_total"] == 90
    mon = result.summary["monitor"][0]
    assert mon["valid_pairs"] == e1["valid_pairs"] and mon["valid_walks"] == w1["valid_walks"]
    assert "this project's definition" in mon["robustness_index_definition"]
    # The final model chose the images: every pair and walk is valid for it.
    fin = morph["checkpoints"][-1]
    assert fin["valid_pairs"] == fin["pairs_total"]


def test_images_selected_per_checkpoint(tmp_path: Path) -> None:
    text = """
name: dmsel
seed: 0
model: {builtin: digits-cnn, checkpoints: [1]}
data: {builtin: digits}
analyses:
  - {name: morph, images_per_class: 2, steps: 10, select: per_checkpoint}
"""
    scenario = unified_adv.scenario_from_text(text)
    (morph,) = unified_adv.run(scenario, tmp_path / "dms").summary["analyses"]
    assert morph["select"] == "per_checkpoint"
    for c in morph["checkpoints"]:  # chosen among the images each checkpoint gets right
        assert c["valid_pairs"] == c["pairs_total"] > 0
        assert c["images_correct"] == c["images"]
