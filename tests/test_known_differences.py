"""Each known difference between the libraries, and how unified-adv handles it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class, backends_with
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.models import ModelWrapper


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:12].copy(), y[:12].copy()


def _req(attack: str, norm: str, eps: float | None = None, targeted: bool = False, **given: object):
    params = ATTACKS[attack].resolve(eps, given)
    return AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=targeted)


def test_art_black_box_attacks_feed_float64_and_the_wrapper_casts(
    model: ModelWrapper, batch
) -> None:
    """Under numpy 2, ART's HopSkipJump hands float64 arrays to a float32 PyTorch model."""
    x, y = batch
    seen: set[torch.dtype] = set()
    handle = model.register_forward_pre_hook(lambda _m, args: seen.add(args[0].dtype))
    try:
        req = _req("hopskipjump", "l2", steps=2, max_evals=50, init_evals=10)
        out = adapter_class("art")(model=model).generate(req, x[:4], y[:4], None, seed=0)
    finally:
        handle.remove()
    assert torch.float64 in seen  # the trap is real ...
    assert out.x_adv.dtype == np.float32  # ... and handled


def test_foolbox_cw_zero_images_count_as_failures(model: ModelWrapper, batch) -> None:
    """Foolbox's C&W returns all-zero images where it failed; they must not count as successes."""
    from unified_adv.evaluate.results import sample_records
    from unified_adv.run.prepared import AttackPlan, Prepared, UnitOutcome
    from unified_adv.run.units import Unit

    x, y = batch
    req = _req("cw_l2", "l2", steps=2, lr=1e-4, c=1e-3)  # far too weak to succeed
    out = adapter_class("foolbox")(model=model).generate(req, x, y, None, seed=0)
    zero = (out.x_adv == 0).reshape(len(x), -1).all(1)
    assert zero.all() and out.backend_failed is not None and out.backend_failed.all()
    logits = model.logits(out.x_adv)
    naive = logits.argmax(1) != y
    assert naive.any(), "the zero image is misclassified for some samples: the trap is real"

    # Through the result table: stored as returned, counted as failures, with the real distance.
    scenario = unified_adv.scenario_from_text(
        "name: cw\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 12}\n"
        "attacks: [{name: cw_l2}]\n"
    )
    from unified_adv.sources.data import Dataset

    ds = Dataset(x, y, np.arange(len(y)), [str(i) for i in range(10)], "t")
    prep = Prepared(scenario, None, ds, model.logits(x), 10)  # type: ignore[arg-type]
    prep.plans.append(
        AttackPlan(scenario.attacks[0], 0, np.arange(len(y)), None, ("foolbox",), len(y))
    )
    unit = Unit(
        0, "cw_l2", "cw_l2", "foolbox", "l2", 0, None, (), "untargeted", 0, 0, len(y), 0, ""
    )
    arrays = {
        "positions": np.arange(len(y)),
        "x_adv": out.x_adv,
        "adv_logits": logits,
        "target": np.full(len(y), -1),
        "backend_failed": out.backend_failed,
    }
    rows = sample_records(prep, UnitOutcome(unit, arrays, {"time_s": 0.0}))
    assert not rows.success.any()
    assert (rows.l2 > 1).all()  # the real distance to the zero image


def test_art_deepfool_ignores_labels_foolbox_uses_them(model: ModelWrapper, batch) -> None:
    """Handed wrong labels, Foolbox sees the samples as already misclassified; ART ignores y."""
    x, y = batch
    wrong = ((y + 1) % 10).astype(np.int64)
    req = _req("deepfool", "l2", steps=20)
    art = adapter_class("art")(model=model).generate(req, x, wrong, None, seed=0).x_adv
    fb = adapter_class("foolbox")(model=model).generate(req, x, wrong, None, seed=0).x_adv
    assert np.array_equal(fb, x)  # nothing to do: "already adversarial"
    assert not np.array_equal(art, x)  # attacks its own predictions regardless


def test_mifgsm_momentum_conventions(model: ModelWrapper, batch) -> None:
    """ART and torchattacks follow the paper (g <- mu*g + grad/mean|grad|) and agree bit for bit;
    Foolbox's momentum differs and so do its results."""
    x, y = batch
    req = _req("mifgsm", "linf", 0.2, steps=10)
    outs = {
        b: adapter_class(b)(model=model).generate(req, x, y, None, seed=0).x_adv
        for b in ("art", "foolbox", "torchattacks")
    }
    assert np.array_equal(outs["art"], outs["torchattacks"])
    assert not np.array_equal(outs["art"], outs["foolbox"])


def test_torchattacks_mifgsm_with_zero_gradients_stays_finite() -> None:
    """Zero gradients: torchattacks divides 0 by 0. On torch 2.14 the result stays finite and
    the input is returned unchanged; the adapter contract would reject NaN if it were not."""

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x.flatten(1)) * 0 + torch.arange(10.0)

    flat = ModelWrapper(Flat())
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    y = np.array([1, 2, 3, 4], dtype=np.int64)
    out = adapter_class("torchattacks")(model=flat).generate(
        _req("mifgsm", "linf", 0.1), x, y, None, seed=0
    )
    assert np.isfinite(out.x_adv).all()
    assert np.array_equal(out.x_adv, x)


def test_targets_are_chosen_once_and_shared(tmp_path) -> None:
    text = """
name: targets
seed: 5
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 40}
attacks:
  - {name: pgd, id: rnd, eps: 0.2, steps: 5, target: random}
  - {name: pgd, id: ll, eps: 0.2, steps: 5, target: {least_likely: 3}}
  - {name: pgd, id: eoc, eps: 0.3, steps: 5, target: each_other_class, limit: 4}
"""
    result = unified_adv.run(unified_adv.scenario_from_text(text), tmp_path / "out")
    s = result.samples
    for attack_id in ("rnd", "ll", "eoc"):
        rows = s[s.attack_id == attack_id]
        per_backend = [
            g.sort_values(["sample", "target"]).target.to_numpy()
            for _, g in rows.groupby("backend")
        ]
        assert len(per_backend) == len(backends_with("pgd"))  # every backend with PGD
        for t in per_backend[1:]:
            assert np.array_equal(t, per_backend[0]), attack_id
        assert (rows.target != rows.label).all()
    # least_likely of top-3: the third-ranked class of the clean logits.
    ll = s[(s.attack_id == "ll") & (s.backend == "art")]
    from unified_adv.run.prepare import prepare

    prep = prepare(unified_adv.scenario_from_text(text))
    ranked = np.argsort(-prep.clean_logits, axis=1, kind="stable")[:, 2]
    by_sample = dict(zip(prep.data.index, ranked, strict=True))
    assert all(by_sample[i] == t for i, t in zip(ll["sample"], ll.target, strict=True))
    # each_other_class: every sample against each of the 9 other classes.
    eoc = s[(s.attack_id == "eoc") & (s.backend == "foolbox")]
    assert len(eoc) == 4 * 9
    for _, g in eoc.groupby("sample"):
        assert sorted(g.target) == sorted(set(range(10)) - {int(g.label.iloc[0])})
    entry = next(
        e for e in result.summary["attacks"] if e["attack_id"] == "eoc" and e["backend"] == "art"
    )
    assert entry["n_samples"] == 36
