"""The adv-lib and secml-torch backends, and the DDN and ALMA entries: on a handful of digits
with the builtin digits CNN, each call is recorded argument by argument, stays inside its
threat model, and a cross-check pair with another backend gives a verdict.

Both libraries are dependencies (`.[all]`): a missing one fails here with the line to run,
never a skip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class, backend_names
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate.crosscheck import VERDICTS
from unified_adv.sources.data import digits_split
from unified_adv.sources.models import ModelWrapper

BASE = "name: newlibs\nseed: 1\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 24}\n"
INSTALL = "pip install --build-constraint build-constraints.txt -e '.[all,dev]' (make setup)"


@pytest.fixture(scope="module", autouse=True)
def _libraries_installed() -> None:
    for module, dist in (("adv_lib", "adv-lib"), ("secmlt", "secml-torch")):
        assert importlib.util.find_spec(module) is not None, (
            f"{dist} is not installed: it is part of unified-adv[all]; run {INSTALL}"
        )


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:8].copy(), y[:8].copy()


def _generate(
    model: ModelWrapper,
    digits,
    backend: str,
    attack: str,
    norm: str,
    eps=None,
    targeted: bool = False,
    **given: object,
):
    x, y = digits
    params = ATTACKS[attack].resolve(eps, given)
    req = AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=targeted)
    target = ((y + 1) % 10).astype(np.int64) if targeted else None
    return adapter_class(backend)(model=model).generate(req, x, y, target, seed=0)


def test_backends_and_attacks_are_listed(cli) -> None:  # type: ignore[no-untyped-def]
    assert {"adv-lib", "secml-torch"} <= set(backend_names())
    listing = cli("list")
    assert listing.code == 0
    rows = [line.split("│") for line in listing.out.splitlines() if "│" in line]
    cells = {tuple(c.strip() for c in row[1:4]) for row in rows}
    for row in [
        ("ddn", "adv-lib", "ddn"),
        ("ddn", "secml-torch", "DDN"),
        ("alma", "adv-lib", "alma"),
        ("apgd", "adv-lib", "apgd"),
        ("alma", "secml-torch", "—"),
    ]:
        assert row in cells, row


def test_advlib_ddn_call_and_threat_model(model: ModelWrapper, digits) -> None:
    out = _generate(model, digits, "adv-lib", "ddn", "l2", steps=20, gamma=0.1, init_norm=0.5)
    call = out.library_call
    assert (call["library"], call["class"]) == ("adv-lib", "adv_lib.attacks.ddn")
    assert call["kwargs"] == {
        "targeted": False,
        "steps": 20,
        "γ": 0.1,
        "init_norm": 0.5,
        "levels": None,
        "callback": None,
    }
    assert call["labels"] == "true labels"
    sem = call["semantics"]
    assert (sem["steps"], sem["gamma"], sem["init_norm"]) == (20, 0.1, 0.5)
    assert "sphere" in sem["norm_projection"] and sem["quantisation"].startswith("none")
    x, y = digits
    assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1
    fooled = model.logits(out.x_adv).argmax(1) != y
    assert fooled.any()
    # A sample never fooled comes back as the input (the minimal-norm contract).
    assert np.array_equal(out.x_adv[~fooled], x[~fooled])


def test_secml_ddn_call_targeted_one_call_per_class(model: ModelWrapper, digits) -> None:
    out = _generate(model, digits, "secml-torch", "ddn", "l2", targeted=True, steps=20)
    call = out.library_call
    assert call["class"] == "secmlt.adv.evasion.ddn.DDN"
    assert call["kwargs"] == {
        "num_steps": 20,
        "eps_init": 1.0,
        "gamma": 0.05,
        "lb": 0.0,
        "ub": 1.0,
        "backend": "native",
        "trackers": None,
    }
    x, y = digits
    target = (y + 1) % 10
    assert call["calls"] == len(np.unique(target))  # one target class per secml-torch call
    assert call["semantics"]["init_norm"] == 1.0 and "ball" in call["semantics"]["norm_projection"]
    hit = model.logits(out.x_adv).argmax(1) == target
    assert hit.any()
    assert np.array_equal(out.x_adv[~hit], x[~hit])


def test_advlib_alma_call(model: ModelWrapper, digits) -> None:
    out = _generate(model, digits, "adv-lib", "alma", "l2", steps=30)
    call = out.library_call
    assert call["class"] == "adv_lib.attacks.alma"
    kwargs = call["kwargs"]
    assert kwargs["penalty"] == "P2" and kwargs["distance"] == "l2"
    assert (kwargs["num_steps"], kwargs["init_lr_distance"], kwargs["lr_reduction"]) == (
        30,
        1.0,
        0.01,
    )
    assert kwargs["α"] == kwargs["α_rms"] == kwargs["momentum"] == 0.9
    sem = call["semantics"]
    assert (sem["steps"], sem["init_lr_distance"], sem["ema_alpha"]) == (30, 1.0, 0.9)
    assert (model.logits(out.x_adv).argmax(1) != digits[1]).any()


@pytest.mark.parametrize("loss", ["ce", "dlr_targeted"])
def test_advlib_apgd_call_and_ball(model: ModelWrapper, digits, loss: str) -> None:
    out = _generate(model, digits, "adv-lib", "apgd", "linf", eps=0.2, steps=5, loss=loss)
    call = out.library_call
    x, _ = digits
    assert np.abs(out.x_adv - x).max() <= 0.2 + 1e-6
    function = "apgd" if loss == "ce" else "apgd_targeted"
    assert call["class"] == f"adv_lib.attacks.{function}"
    kwargs = call["kwargs"]
    assert (kwargs["eps"], kwargs["norm"], kwargs["n_iter"], kwargs["n_restarts"]) == (
        0.2,
        float("inf"),
        5,
        1,
    )
    assert (kwargs["rho"], kwargs["eot_iter"], kwargs["use_large_reps"]) == (0.75, 1, False)
    assert call["semantics"]["loss"] == loss
    if loss == "ce":
        assert kwargs["loss_function"] == "ce" and kwargs["best_loss"] is False
    else:  # APGD-T: targeted DLR against each of the 9 other classes
        assert kwargs["loss_function"] == "dlr" and kwargs["num_targets"] == 9


def test_crosscheck_pairs_with_other_backends(tmp_path: Path) -> None:
    """Through a scenario: DDN and FMN on adv-lib and secml-torch (and Foolbox's FMN), FAB on
    adv-lib and torchattacks (deterministic: compared sample by sample), APGD on adv-lib and
    torchattacks (random starts: compared statistically); every pair gets a verdict."""
    scenario = unified_adv.scenario_from_text(
        BASE + "attacks:\n"
        "  - {name: ddn, steps: 20, backends: [adv-lib, secml-torch]}\n"
        "  - {name: apgd, eps: 0.1, steps: 10, backends: [adv-lib, torchattacks]}\n"
        "  - {name: fmn, steps: 10, backends: [adv-lib, secml-torch, foolbox]}\n"
        "  - {name: fab, norm: linf, steps: 5, backends: [adv-lib, torchattacks]}\n"
    )
    result = unified_adv.run(scenario, tmp_path / "out", progress=False)
    assert not result.failed
    pairs: dict[tuple[str, ...], dict] = {
        (p["attack_id"], *p["backends"]): p for p in result.summary["crosscheck"]["pairs"]
    }
    assert set(pairs) >= {
        ("ddn", "adv-lib", "secml-torch"),
        ("apgd", "adv-lib", "torchattacks"),
        ("fmn", "adv-lib", "secml-torch"),
        ("fab", "adv-lib", "torchattacks"),
    }, set(pairs)
    for pair in pairs.values():  # a verdict each; a divergence comes with its explanation
        assert pair["verdict"] in VERDICTS, pair
        assert pair["verdict"] != "divergent" or pair["explanation"], pair
    # DDN: the two differ in pixels, explained by the recorded norm projection.
    ddn = pairs[("ddn", "adv-lib", "secml-torch")]
    assert ddn["explained"] and any("norm_projection" in e for e in ddn["explanation"]), ddn
    assert pairs[("apgd", "adv-lib", "torchattacks")]["verdict"] == "statistically consistent"
    s = result.samples
    assert set(s[s.attack == "ddn"].backend) == {"adv-lib", "secml-torch"}


def test_ddn_backends_differ_by_the_norm_projection(model: ModelWrapper, digits) -> None:
    """The recorded `norm_projection` difference is what separates the two DDNs: after two
    steps both point the same way, and adv-lib's perturbation is longer by exactly 1 + gamma
    (its first step rescaled onto the sphere of radius 1.05, secml-torch's left at norm 1
    inside that ball)."""
    x, _ = digits
    a = _generate(model, digits, "adv-lib", "ddn", "l2", steps=2).x_adv - x
    b = _generate(model, digits, "secml-torch", "ddn", "l2", steps=2).x_adv - x
    na, nb = (np.linalg.norm(d.reshape(len(x), -1), axis=1) for d in (a, b))
    moved = (na > 0) & (nb > 0)
    assert moved.sum() >= 4
    cosine = (a * b).reshape(len(x), -1).sum(1)[moved] / (na[moved] * nb[moved])
    assert cosine.min() > 0.999
    # Clipping to [0, 1] shortens the two a little differently: measured ratios 1.044 to
    # 1.050 on these digits; a ball projection on both sides would give 1.000.
    ratio = na[moved] / nb[moved]
    assert ((ratio > 1.03) & (ratio < 1.0501)).all(), ratio


def test_secml_ddn_refuses_a_gamma_it_would_ignore() -> None:
    with pytest.raises(unified_adv.InputError) as info:
        unified_adv.scenario_from_text(
            BASE + "attacks:\n  - {name: ddn, gamma: 0.1, backends: [secml-torch]}\n"
        )
    assert "backend 'secml-torch' runs ddn only with gamma=0.05" in str(info.value)


def test_fab_and_fmn_calls(model: ModelWrapper, digits) -> None:
    """FAB on adv-lib and FMN on adv-lib and secml-torch: every argument, and the canonical
    values read back from it (overshoot from η, random starts from restarts)."""
    fab = _generate(model, digits, "adv-lib", "fab", "linf", steps=3, random_starts=1)
    call = fab.library_call
    assert call["class"] == "adv_lib.attacks.fab"
    assert call["kwargs"] == {
        "norm": float("inf"),
        "n_iter": 3,
        "ε": 1.0,  # the box's diameter in L∞: random starts at half the best norm
        "α_max": 0.1,
        "β": 0.9,
        "η": 1.05,
        "restarts": 2,
        "targeted_restarts": False,
        "targeted": False,
    }
    sem = call["semantics"]
    assert (sem["overshoot"], sem["random_starts"], sem["target_classes"]) == (0.05, 1, 0)
    fmn = _generate(model, digits, "adv-lib", "fmn", "l0", steps=5).library_call
    assert fmn["kwargs"] == {
        "norm": 0.0,
        "targeted": False,
        "steps": 5,
        "α_init": 1.0,
        "α_final": 0.01,
        "γ_init": 0.05,
        "γ_final": 0.001,
        "starting_points": None,
        "binary_search_steps": 10,
    }
    secml = _generate(model, digits, "secml-torch", "fmn", "l1", steps=5).library_call
    assert secml["class"] == "secmlt.adv.evasion.fmn.FMN"
    assert secml["kwargs"] == {
        "perturbation_model": "l1",
        "num_steps": 5,
        "step_size": 1.0,
        "min_step_size": 0.01,
        "gamma": 0.05,
        "lb": 0.0,
        "ub": 1.0,
        "backend": "native",
        "trackers": None,
    }
    # The projections the cross-check names beside an FMN divergence.
    assert "ball" in secml["semantics"]["l2_projection"]
    assert "sphere" in fmn["semantics"]["l2_projection"]
