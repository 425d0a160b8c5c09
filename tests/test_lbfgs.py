"""Box-constrained L-BFGS (project code): the box, the line search on c, failures, the
adapter record and a full run through the CLI."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.adapters.lbfgs import MAX_DECADES, lbfgs_attack
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

# Small budgets: enough to reach every target on the digits CNN, a second or two per call.
QUICK: dict[str, Any] = {"c": 0.1, "search_steps": 3, "max_iter": 50}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return builtin_digits_cnn()[0]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:6].copy(), y[:6].copy()


def _wrap(net: nn.Module, lo: float, hi: float) -> ModelWrapper:
    """The same classifier over inputs in [lo, hi]: (x - lo) / (hi - lo) maps back to [0, 1]."""
    return ModelWrapper(net, input_range=(lo, hi), mean=[lo], std=[hi - lo])


class Linear2(nn.Module):
    """Logits (0, w·x + b): the smallest L2 step to class 1 is -(w·x + b) / ‖w‖, along w."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone())
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


class Constant(nn.Module):
    """Ignores its input: no perturbation can change its prediction (class 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([2.0, 1.0, 0.0])
        return logits.expand(len(x), 3) + 0 * x.flatten(1)[:, :1]


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0)])
def test_reaches_targets_inside_the_box(net: nn.Module, digits, lo: float, hi: float) -> None:
    x01, y = digits
    model = _wrap(net, lo, hi)
    x = (lo + (hi - lo) * x01).astype(np.float32)
    target = ((y + 3) % 10).astype(np.int64)
    res = lbfgs_attack(model, x, target, input_range=(lo, hi), **QUICK)

    assert res.x_adv.dtype == np.float32 and res.x_adv.shape == x.shape
    assert res.x_adv.min() >= lo and res.x_adv.max() <= hi  # exactly, no tolerance
    # Digits have many pixels at the lower bound: the box binds there, and is respected.
    assert np.isclose(x, lo).any()
    pred = model.logits(res.x_adv).argmax(1)
    assert np.array_equal(res.success, pred == target)
    assert res.success.mean() >= 5 / 6
    delta = (res.x_adv - x).reshape(len(x), -1).astype(np.float64)
    assert np.allclose(res.norms, np.linalg.norm(delta, axis=1))
    assert (res.norms[res.success] > 0).all()
    assert np.isfinite(res.c[res.success]).all() and (res.c[res.success] > 0).all()
    assert (res.solves >= 1 + QUICK["search_steps"]).all()


def test_line_search_finds_the_boundary_distance_of_a_linear_model() -> None:
    """Szegedy's minimum ‖δ‖₂ for a linear model is the distance to its decision boundary;
    the largest c that still reaches the target gets within 2 % of it, while one solve with
    most weight on the loss overshoots the boundary by far."""
    w = torch.tensor([1.0, -1.0]).repeat(32)  # ‖w‖ = 8
    model = ModelWrapper(Linear2(w, b=-2.0))  # w·x + b = -2 at x = 0.5
    x = np.full((1, 1, 8, 8), 0.5, np.float32)
    target = np.array([1])
    distance = 2.0 / 8.0

    searched = lbfgs_attack(
        model, x, target, c=0.1, search_steps=8, max_iter=100, input_range=(0, 1)
    )
    assert searched.success.all()
    assert distance <= searched.norms[0] <= 1.02 * distance
    # The largest c reaching the target: σ(-z) = c / ‖w‖ at the optimum, z > 0 => c < 4.
    assert 3.5 < searched.c[0] < 4.0

    fixed = lbfgs_attack(
        model,
        x,
        target,
        c=1e-3,
        search_steps=0,
        max_iter=100,
        input_range=(0, 1),
        bracket_decades=0,
    )
    assert fixed.success.all() and fixed.solves.tolist() == [1]
    assert fixed.norms[0] > 3 * searched.norms[0]


def test_line_search_shrinks_the_perturbation_on_the_digits_cnn(net: nn.Module, digits) -> None:
    x, y = digits
    model = ModelWrapper(net)
    target = ((y + 1) % 10).astype(np.int64)
    searched = lbfgs_attack(model, x, target, input_range=(0, 1), **QUICK)
    fixed = lbfgs_attack(
        model, x, target, c=1e-3, search_steps=0, max_iter=50, input_range=(0, 1), bracket_decades=0
    )
    both = searched.success & fixed.success
    assert both.sum() >= 5
    assert (searched.norms[both] < fixed.norms[both]).all()
    assert (searched.c[both] > 1e-3).all()


def test_an_impossible_target_fails_and_returns_x_unchanged() -> None:
    model = ModelWrapper(Constant())
    x = np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32)
    target = np.array([1, 2, 0])  # class 0 is what the model always says
    res = lbfgs_attack(model, x, target, input_range=(0, 1), **QUICK)
    assert res.success.tolist() == [False, False, True]
    assert np.array_equal(res.x_adv, x)  # bit for bit: failures are x itself
    assert res.norms.tolist() == [0.0, 0.0, 0.0]
    # Failures: the initial c, then MAX_DECADES smaller ones, and no bisection.
    assert res.solves.tolist() == [1 + MAX_DECADES, 1 + MAX_DECADES, 0]
    assert np.isnan(res.c).all()  # no solve kept; sample 2 needed none (already the target)


def test_the_adapter_runs_it_and_records_the_call(net: nn.Module, digits) -> None:
    x, y = digits
    model = ModelWrapper(net)
    target = ((y + 5) % 10).astype(np.int64)
    params = ATTACKS["lbfgs"].resolve(None, {"steps": 50, "binary_search_steps": 3})
    req = AttackRequest(attack="lbfgs", norm="l2", eps=None, params=params, targeted=True)
    adapter = adapter_class("unified-adv")(model=model)
    out = adapter.generate(req, x, y, target, seed=0)

    call = out.library_call
    assert call["library"] == "unified-adv" and call["version"] == unified_adv.__version__
    assert call["class"] == "unified_adv.adapters.lbfgs.lbfgs_attack"
    assert call["kwargs"] == {
        "c": 0.1,
        "search_steps": 3,
        "max_iter": 50,
        "input_range": [0.0, 1.0],
    }
    sem = call["semantics"]
    assert (sem["c"], sem["binary_search_steps"], sem["steps"]) == (0.1, 3, 50)
    assert "L-BFGS-B" in sem["optimiser"] and "cross-entropy" in sem["objective"]
    hit = model.logits(out.x_adv).argmax(1) == target
    assert out.backend_failed is not None
    assert np.array_equal(out.backend_failed, ~hit)
    assert call["reached_target"] == int(hit.sum()) >= 5
    assert "project code" in adapter.capabilities["lbfgs"].note

    # Targeted only, as Szegedy et al.: an untargeted request is refused.
    untargeted = AttackRequest(attack="lbfgs", norm="l2", eps=None, params=params, targeted=False)
    with pytest.raises(ValueError, match="targeted"):
        adapter.generate(untargeted, x, y, None, seed=0)


def test_a_scenario_runs_it_as_the_unified_adv_backend(cli, write_scenario, tmp_path) -> None:
    from unified_adv.api import versions
    from unified_adv.catalogue.speed import fastest_backend

    path = write_scenario(
        """
        name: lbfgs
        seed: 0
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 40}
        attacks:
          - {name: lbfgs, target: {class: 3}, limit: 5, steps: 50, binary_search_steps: 4}
        report: {triptychs: 1}
        """
    )
    out = tmp_path / "out"
    result = cli("run", path, "--out", out)
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    (entry,) = summary["attacks"]
    assert (entry["attack"], entry["backend"], entry["status"]) == ("lbfgs", "unified-adv", "ok")
    assert entry["library_call"]["library"] == "unified-adv"
    assert entry["n_samples"] >= 4 and entry["success_rate"] >= 0.75
    assert 0 < entry["median_l2_fooled"] < 3
    assert "project code" in entry["note"]
    assert summary["provenance"]["versions"]["unified-adv"] == unified_adv.__version__
    samples = pd.read_csv(out / "samples.csv")
    assert set(samples["backend"]) == {"unified-adv"}
    assert set(samples["target"]) == {3}

    # The other ways in: the capability table, and 'fastest' (no speed-table entry).
    listing = cli("list")
    assert listing.code == 0 and "unified_adv.adapters.lbfgs.lbfgs_attack" in listing.out
    assert fastest_backend("lbfgs", ("unified-adv",)) == "unified-adv"
    assert versions()["unified-adv"] == unified_adv.__version__
