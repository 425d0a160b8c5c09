"""The classic attacks on adv-lib and secml-torch: PGD and BIM (adv-lib's ``pgd_linf``,
secml-torch's native ``PGD``), DeepFool (adv-lib's ``df``) and C&W L2 (adv-lib's
``carlini_wagner_l2``). On a handful of digits with the builtin digits CNN: every argument
recorded as passed, the canonical values read back from it, the threat model, what comes back
for a failed sample, and the refusals; then one scenario whose cross-check pairs them with the
other libraries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.data import digits_split
from unified_adv.sources.models import ModelWrapper

BASE = "name: classic\nseed: 1\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 24}\n"
SECML_FIXED = {"lb": 0.0, "ub": 1.0, "backend": "native", "trackers": None}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:12].copy(), y[:12].copy()


def _generate(model, digits, backend, attack, norm, eps=None, targeted=False, **given):  # type: ignore[no-untyped-def]
    x, y = digits
    params = ATTACKS[attack].resolve(eps, given)
    req = AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=targeted)
    target = ((y + 1) % 10).astype(np.int64) if targeted else None
    return adapter_class(backend)(model=model).generate(req, x, y, target, seed=0)


def _fooled(model: ModelWrapper, x_adv: np.ndarray, y: np.ndarray) -> np.ndarray:
    return model.logits(x_adv).argmax(1) != y


def test_advlib_pgd_call_steps_plus_one_and_failed_samples(model: ModelWrapper, digits) -> None:
    """pgd_linf gets steps + 1 (it checks a point before stepping from it): where
    torchattacks' point after the last step fools the model, adv-lib returns that same point;
    a sample it never fooled comes back as the input."""
    given = {"steps": 10, "step_size": 0.01, "random_starts": 0}
    out = _generate(model, digits, "adv-lib", "pgd", "linf", eps=0.1, **given)
    call = out.library_call
    assert call["class"] == "adv_lib.attacks.pgd_linf"
    assert call["kwargs"] == {
        "ε": 0.1,
        "targeted": False,
        "steps": 11,
        "random_init": False,
        "restarts": 1,
        "loss_function": "ce",
        "relative_step_size": None,
        "absolute_step_size": 0.01,
        "callback": None,
    }
    sem = call["semantics"]
    assert (sem["eps"], sem["steps"], sem["step_size"], sem["random_starts"]) == (0.1, 10, 0.01, 0)
    assert "last adversarial" in sem["returned_iterate"]
    assert sem["loss"] == "cross-entropy, summed over the batch"
    x, y = digits
    assert np.abs(out.x_adv - x).max() <= 0.1 + 1e-6
    last = _generate(model, digits, "torchattacks", "pgd", "linf", eps=0.1, **given).x_adv
    both = _fooled(model, last, y) & _fooled(model, out.x_adv, y)
    assert both.sum() >= 3
    # Equal to float32 rounding (sign steps of the same gradient; measured max 0 here).
    assert np.abs(out.x_adv[both] - last[both]).max() <= 1e-5
    failed = ~_fooled(model, out.x_adv, y)
    assert failed.any() and np.array_equal(out.x_adv[failed], x[failed])


def test_advlib_pgd_random_starts_and_bim(model: ModelWrapper, digits) -> None:
    pgd = _generate(model, digits, "adv-lib", "pgd", "linf", eps=0.2, steps=3, random_starts=2)
    kwargs = pgd.library_call["kwargs"]
    assert (kwargs["random_init"], kwargs["restarts"], kwargs["steps"]) == (True, 2, 4)
    assert pgd.library_call["semantics"]["random_starts"] == 2
    bim = _generate(model, digits, "adv-lib", "bim", "linf", eps=0.2, steps=5)
    kwargs = bim.library_call["kwargs"]
    assert bim.library_call["class"] == "adv_lib.attacks.pgd_linf"
    assert (kwargs["random_init"], kwargs["restarts"], kwargs["steps"]) == (False, 1, 6)
    assert kwargs["absolute_step_size"] == pytest.approx(2.5 * 0.2 / 5)  # Madry's default
    assert bim.library_call["semantics"]["steps"] == 5
    x, _ = digits
    assert np.abs(bim.x_adv - x).max() <= 0.2 + 1e-6


def test_advlib_deepfool_and_cw_calls(model: ModelWrapper, digits) -> None:
    x, y = digits
    df = _generate(model, digits, "adv-lib", "deepfool", "l2", steps=20, candidates=3)
    call = df.library_call
    assert call["class"] == "adv_lib.attacks.df"
    assert call["kwargs"] == {
        "targeted": False,
        "steps": 21,
        "overshoot": 0.02,
        "norm": 2,
        "return_unsuccessful": False,
        "return_targets": False,
    }
    # adv-lib linearises every other class: the read-back says so, whatever was asked.
    assert (call["semantics"]["candidates"], call["semantics"]["steps"]) == (10, 20)
    assert _fooled(model, df.x_adv, y).all()
    cw = _generate(model, digits, "adv-lib", "cw_l2", "l2", targeted=True, steps=20, lr=0.05)
    call = cw.library_call
    assert call["class"] == "adv_lib.attacks.carlini_wagner_l2"
    assert call["labels"] == "target labels"
    assert call["kwargs"] == {
        "targeted": True,
        "confidence": 0.0,
        "learning_rate": 0.05,
        "initial_const": 1.0,
        "binary_search_steps": 1,
        "max_iterations": 20,
        "abort_early": False,
        "β_1": 0.9,
        "β_2": 0.999,
        "callback": None,
    }
    sem = call["semantics"]
    assert (sem["steps"], sem["lr"], sem["c"], sem["binary_search_steps"]) == (20, 0.05, 1.0, 1)
    hit = model.logits(cw.x_adv).argmax(1) == (y + 1) % 10
    assert hit.any() and np.array_equal(cw.x_adv[~hit], x[~hit])


@pytest.mark.parametrize(("norm", "eps", "step"), [("linf", 0.1, 0.01), ("l2", 1.0, 0.125)])
def test_secml_pgd_call_matches_foolbox(model: ModelWrapper, digits, norm, eps, step) -> None:
    """PGD without random start: num_steps = steps + 1 and the highest-loss point, which here
    is the point after the last step on every sample: Foolbox's result to float32 rounding
    (measured max difference 1.8e-7 over 24 digits)."""
    given = {"steps": 10, "step_size": step, "random_starts": 0}
    out = _generate(model, digits, "secml-torch", "pgd", norm, eps=eps, **given)
    call = out.library_call
    assert call["class"] == "secmlt.adv.evasion.pgd.PGD"
    assert call["kwargs"] == {
        "perturbation_model": norm,
        "epsilon": eps,
        "num_steps": 11,
        "step_size": step,
        "random_start": False,
        **SECML_FIXED,
    }
    sem = call["semantics"]
    assert (sem["steps"], sem["random_starts"], sem["eps"]) == (10, 0, eps)
    assert "start" not in sem and "highest-loss" in sem["returned_iterate"]
    fb = _generate(model, digits, "foolbox", "pgd", norm, eps=eps, **given).x_adv
    assert np.abs(out.x_adv - fb).max() <= 1e-5
    bim = _generate(model, digits, "secml-torch", "bim", "linf", eps=0.1, steps=4)
    kwargs, sem = bim.library_call["kwargs"], bim.library_call["semantics"]
    assert (kwargs["random_start"], kwargs["num_steps"], sem["steps"]) == (False, 5, 4)


def test_secml_random_start_depends_on_the_image() -> None:
    """The recorded ``start`` of secml-torch's PGD: its L∞ random start is project(x + eps u),
    so on a white image every pixel starts at +eps. If secml-torch fixes it, this fails and
    the fact in adapters/secmltorch.py must change."""
    from secmlt.optimization.initializer import RandomLpInitializer

    torch.manual_seed(0)
    start = RandomLpInitializer(radius=0.1, perturbation_model="linf")
    assert torch.allclose(start(torch.ones(2, 1, 8, 8)), torch.full((2, 1, 8, 8), 0.1))
    black = start(torch.zeros(2, 1, 8, 8))
    assert black.min() < -0.05 and black.max() > 0.05  # uniform in the ball there
    params = ATTACKS["pgd"].resolve(0.1, {"random_starts": 1})
    req = AttackRequest("pgd", "linf", 0.1, params, False)
    fact = adapter_class("secml-torch")(model=None).facts(req)  # type: ignore[arg-type]
    assert "x + eps u" in fact["start"]


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (
            "{name: pgd, norm: l2, eps: 1.0, backends: [adv-lib]}",
            "backend 'adv-lib' cannot run pgd with norm l2 (it supports: linf)",
        ),
        (
            "{name: pgd, eps: 0.1, random_starts: 2, backends: [secml-torch]}",
            "backend 'secml-torch' can do at most 1 random start(s) for pgd",
        ),
        (
            "{name: bim, eps: 0.1, eot_samples: 2, backends: [adv-lib]}",
            "backend 'adv-lib' has no expectation over transformation for bim linf",
        ),
        (
            "{name: pgd, eps: 0.1, eot_samples: 2, backends: [secml-torch]}",
            "backend 'secml-torch' has no expectation over transformation for pgd linf",
        ),
    ],
)
def test_requests_the_libraries_cannot_do_are_refused(attack: str, message: str) -> None:
    with pytest.raises(unified_adv.InputError) as info:
        unified_adv.scenario_from_text(BASE + f"attacks:\n  - {attack}\n")
    assert message in str(info.value)


def test_the_walk_refuses_a_backend_that_does_not_return_its_step() -> None:
    walk = "{name: targeted_walk, images_per_class: 1, backends: [adv-lib]}"
    with pytest.raises(unified_adv.InputError) as info:
        unified_adv.scenario_from_text(BASE + f"analyses:\n  - {walk}\n")
    assert "backend 'adv-lib' cannot take the walk's steps" in str(info.value)


def test_crosscheck_verdicts_with_the_other_libraries(tmp_path: Path) -> None:
    """PGD without random start on four libraries: the same success on every sample, the
    pixel differences explained by the recorded returned_iterate; adv-lib's C&W is Foolbox's
    to the tolerance."""
    scenario = unified_adv.scenario_from_text(
        BASE + "attacks:\n"
        "  - {name: pgd, eps: 0.1, steps: 10, step_size: 1/100, "
        "backends: [adv-lib, secml-torch, torchattacks, foolbox]}\n"
        "  - {name: cw_l2, steps: 30, lr: 0.05, backends: [adv-lib, foolbox]}\n"
    )
    result = unified_adv.run(scenario, tmp_path / "out", progress=False)
    assert not result.failed
    pairs = {(p["attack_id"], *p["backends"]): p for p in result.summary["crosscheck"]["pairs"]}
    for b in ("foolbox", "secml-torch", "torchattacks"):
        pair = pairs[("pgd", "adv-lib", b)]
        assert pair["success_rates"][0] == pair["success_rates"][1], pair
        assert pair["verdict"] == "divergent" and pair["explained"], pair
        assert any("returned_iterate differs" in e for e in pair["explanation"]), pair
    # secml-torch's highest-loss point is the last one on these samples.
    assert pairs[("pgd", "foolbox", "secml-torch")]["verdict"] == "equivalent"
    assert pairs[("cw_l2", "adv-lib", "foolbox")]["verdict"] == "equivalent"
