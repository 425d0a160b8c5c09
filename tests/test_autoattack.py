"""AutoAttack (Croce & Hein 2020) on ART and torchattacks: every library argument and
component recorded, inside the eps-ball, at least as strong as PGD-40 on the same digits,
a cross-check verdict with an explanation, the ensemble recomputed from its components, and
the AutoAttack checks (after the original's checks.py), each triggered and not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate import findings as F
from unified_adv.evaluate.ensemble import compare, first_success
from unified_adv.sources.data import digits_split
from unified_adv.sources.models import ModelWrapper

BASE = "name: aa\nseed: 1\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 24}\n"
STANDARD = [("aa", "standard")]


def _req(norm: str, eps: float, **given: object) -> AttackRequest:
    params = ATTACKS["autoattack"].resolve(eps, given)
    return AttackRequest(attack="autoattack", norm=norm, eps=eps, params=params, targeted=False)


@pytest.fixture(scope="module")
def digits8() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:8].copy(), y[:8].copy()


def test_art_records_its_components_and_the_threat_model(
    model: ModelWrapper, digits8: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits8
    out = adapter_class("art")(model=model).generate(
        _req("linf", 0.1, steps=3, queries=20), x, y, None, seed=0
    )
    call = out.library_call
    assert call["class"] == "art.attacks.evasion.auto_attack.AutoAttack"
    kwargs = call["kwargs"]
    assert {
        k: kwargs[k] for k in ("norm", "eps", "eps_step", "targeted", "parallel_pool_size")
    } == {
        "norm": "inf",
        "eps": 0.1,
        "eps_step": 0.2,
        "targeted": True,  # the targeted pass is ART's APGD-T
        "parallel_pool_size": 0,
    }
    classes = [(a["class"], a["kwargs"].get("loss_type")) for a in kwargs["attacks"]]
    assert classes == [
        ("AutoProjectedGradientDescent", "cross_entropy"),
        ("AutoProjectedGradientDescent", "difference_logits_ratio"),
        ("SquareAttack", None),
    ]
    assert kwargs["attacks"][0]["kwargs"]["max_iter"] == 3
    assert kwargs["attacks"][2]["kwargs"]["max_iter"] == 20  # Square's queries
    sem = call["semantics"]
    assert (sem["eps"], sem["steps"], sem["queries"], sem["restarts"]) == (0.1, 3, 20, 1)
    assert "FAB" not in sem["components"] and "class-index order" in sem["target_order"]
    assert sum(call["fooled_first_by"].values()) == len(x)
    assert np.abs(out.x_adv - x).max() <= 0.1 + 1e-6


def test_torchattacks_records_its_components_and_the_threat_model(
    model: ModelWrapper, digits8: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits8
    ta = adapter_class("torchattacks")(model=model)
    call = ta.generate(_req("l2", 1.0, steps=3, queries=20), x, y, None, seed=0).library_call
    seed = call["kwargs"].pop("seed")
    assert call["class"] == "torchattacks.AutoAttack"
    assert call["kwargs"] == {
        "norm": "L2",
        "eps": 1.0,
        "version": "standard",
        "n_classes": 10,
        "verbose": False,
    }
    # Its components' steps are not passed by AutoAttack (default 10): set, and read back.
    assert call["set_after_construction"] == {
        "APGD": {"steps": 3, "n_restarts": 1},
        "APGDT": {"steps": 3, "n_restarts": 1},
        "FAB": {"steps": 3, "n_restarts": 1},
        "Square": {"n_queries": 20, "p_init": 0.8, "n_restarts": 1},
    }
    sem = call["semantics"]
    assert (sem["version"], sem["steps"], sem["queries"]) == ("standard", 3, 20)
    assert "FAB" in sem["components"] and "any misclassification" in sem["targeted_success"]
    again = ta.generate(_req("l2", 1.0, steps=3, queries=20), x, y, None, seed=1)
    assert again.library_call["kwargs"]["seed"] != seed  # drawn from the unit's seed


def test_rand_version_runs_apgd_with_eot_20_on_torchattacks(
    model: ModelWrapper, digits8: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = digits8
    out = adapter_class("torchattacks")(model=model).generate(
        _req("linf", 0.1, version="rand", steps=2), x, y, None, seed=0
    )
    sem = out.library_call["semantics"]
    assert sem["version"] == "rand" and sem["eot_samples"] == 20
    assert sem["components"].startswith("APGD (ce, eot_iter 20)")
    assert np.abs(out.x_adv - x).max() <= 0.1 + 1e-6


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ("{name: autoattack, eps: 0.1, version: plus}", "attacks[0].version: must be one of"),
        ("{name: autoattack, eps: 0.1, steps: -1}", "attacks[0].steps: must be > 0"),
        (
            "{name: autoattack, eps: 0.1, version: rand, backends: [art]}",
            "backend 'art' runs autoattack only with version=standard",
        ),
        (
            "{name: autoattack, eps: 0.1, target: {class: 3}}",
            "autoattack",
        ),
    ],
)
def test_bad_autoattack_parameters_are_refused_at_validation(attack: str, message: str) -> None:
    with pytest.raises(unified_adv.InputError) as info:
        unified_adv.scenario_from_text(BASE + f"attacks:\n  - {attack}\n")
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_autoattack_is_at_least_as_strong_as_pgd_through_a_scenario(tmp_path: Path) -> None:
    """Digits CNN, L∞ eps 0.1, the correctly classified among the first 16 held-out digits.
    Budgets are cut to keep the suite fast (20 steps, Square 100 queries); the full 120 at
    the original's defaults run in bench/autoattack.py (results_autoattack.json)."""
    scenario = unified_adv.scenario_from_text(
        "name: aa\nseed: 1\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 16}\n"
        "attacks:\n"
        "  - {name: autoattack, eps: 0.1, steps: 20, queries: 100, backends: [art, torchattacks]}\n"
        "  - {name: pgd, eps: 0.1, steps: 40, step_size: 1/100, random_starts: 0, "
        "backends: [torchattacks]}\n"
        "  - {name: apgd, id: apgd-ce, eps: 0.1, steps: 20, backends: [torchattacks]}\n"
        "  - {name: square, eps: 0.1, queries: 100, backends: [torchattacks]}\n"
        "  - {name: fab, id: fab-t, norm: linf, target_classes: 9, steps: 10, "
        "backends: [torchattacks]}\n"
    )
    result = unified_adv.run(scenario, tmp_path / "out", progress=False)
    assert not result.failed
    rows = {(e["attack_id"], e["backend"]): e for e in result.summary["attacks"]}
    pgd = rows[("pgd", "torchattacks")]["success_rate"]
    for backend in ("art", "torchattacks"):
        # AutoAttack contains a stronger PGD (APGD-CE, then APGD-T): it fools at least
        # what PGD-40 does on the same samples. Measured (seed 1, 16 digits): 7 of 16 on
        # both backends, PGD-40 7, APGD-CE alone 7: at eps 0.1 these digits fall to every
        # gradient attack or to none, so no margin is needed (the claim; the bench
        # checks it on 120 at the original's budgets).
        assert rows[("autoattack", backend)]["success_rate"] >= pgd, backend
    s = result.samples
    assert s[s.attack == "autoattack"].linf.max() <= 0.1 + 1e-6
    (pair,) = [p for p in result.summary["crosscheck"]["pairs"] if p["attack_id"] == "autoattack"]
    assert pair["verdict"] in ("statistically consistent", "divergent")
    # Explained either way: ART's component list (no FAB, a targeted pass) is recorded.
    assert any(line.startswith("components differs") for line in pair["explanation"]), pair
    codes = {f["code"] for f in result.summary["findings"]}
    assert "autoattack_weaker_than_pgd" not in codes
    # The ensemble recomputed from torchattacks' component runs, FAB-T (no eps: fooled at
    # eps by its distance) included; APGD-T was not run, and is named as missing.
    ens = {r["backend"]: r for r in result.summary["autoattack"]["ensembles"]}
    assert ens["torchattacks"]["components"] == ["apgd-ce", "fab-t", "square"]
    assert ens["torchattacks"]["missing"] == ["apgd-t"]
    assert ens["torchattacks"]["n"] == len(s[(s.attack == "autoattack") & (s.backend == "art")])
    fab = s[s.attack_id == "fab-t"]
    assert ens["torchattacks"]["own_fooled"] >= int((fab.success & (fab.linf <= 0.1)).sum())
    (vs,) = [v for v in result.summary["autoattack"]["versus_pgd"] if v["backend"] == "art"]
    assert vs["robust"] <= vs["pgd_robust"]


# The checks, each on plain inputs: one input that triggers it, one that does not.


def test_randomised_model_asks_for_the_rand_version() -> None:
    assert [f.code for f in F.aa_randomised_model(True, STANDARD)] == ["autoattack_use_rand"]
    assert F.aa_randomised_model(True, [("aa", "rand")]) == []
    assert F.aa_randomised_model(False, STANDARD) == []


def test_softmax_outputs_are_flagged() -> None:
    assert [f.code for f in F.aa_softmax_outputs(True, STANDARD)] == ["autoattack_softmax_outputs"]
    assert F.aa_softmax_outputs(False, STANDARD) == []


def test_zero_gradients_are_flagged() -> None:
    assert [f.code for f in F.aa_zero_gradients(True, STANDARD)] == ["autoattack_zero_gradients"]
    assert F.aa_zero_gradients(False, STANDARD) == []


def _fooled_by(**counts: int) -> list[dict[str, Any]]:
    return [{"attack_id": "aa", "backend": "art", "first_fooled_by": counts}]


def test_square_beating_the_white_box_components_is_flagged() -> None:
    (f,) = F.aa_square_beats_white_box(_fooled_by(**{"apgd-ce": 40, "square": 2}))
    assert f.code == "autoattack_square_beats_white_box" and "fooled 2 samples" in f.message
    assert F.aa_square_beats_white_box(_fooled_by(**{"apgd-ce": 40, "square": 0})) == []
    assert F.aa_square_beats_white_box(_fooled_by(square=5)) == []  # no white-box ran


def _vs_pgd(robust: int, pgd_robust: int) -> list[dict[str, Any]]:
    return [
        {
            "attack_id": "aa",
            "backend": "art",
            "pgd_id": "pgd",
            "pgd_backend": "art",
            "norm": "linf",
            "eps": 0.1,
            "n": 120,
            "robust": robust,
            "pgd_robust": pgd_robust,
        }
    ]


def test_autoattack_weaker_than_pgd_is_a_broken_evaluation() -> None:
    (f,) = F.aa_weaker_than_pgd(_vs_pgd(60, 57))
    assert f.level == "error" and "leaves 60 of 120" in f.message
    assert F.aa_weaker_than_pgd(_vs_pgd(54, 57)) == []
    assert F.aa_weaker_than_pgd(_vs_pgd(57, 57)) == []


def test_recomputed_ensemble_takes_the_first_successful_component() -> None:
    order = ("apgd-ce", "apgd-t", "fab-t", "square")
    fooled = {
        "apgd-ce": np.array([1, 0, 0, 0, 1], bool),
        "square": np.array([1, 1, 0, 0, 0], bool),
        "apgd-t": np.array([0, 1, 1, 0, 0], bool),
    }
    assert first_success(fooled, order).tolist() == [0, 1, 1, -1, 0]
    library = np.array([1, 1, 0, 0, 1], bool)  # lost sample 2, which APGD-T fooled alone
    record = compare(library, first_success(fooled, order) >= 0)
    assert (record["only_own"], record["only_library"], record["own_fooled"]) == (1, 0, 4)


def _ensemble(only_own: int, only_library: int, p: float) -> list[dict[str, Any]]:
    return [
        {
            "attack_id": "aa",
            "backend": "torchattacks",
            "components": ["apgd-ce", "square"],
            "n": 120,
            "library_fooled": 60 - only_own + only_library,
            "own_fooled": 60,
            "only_own": only_own,
            "only_library": only_library,
            "p": p,
        }
    ]


def test_an_ensemble_losing_its_components_samples_is_flagged() -> None:
    (f,) = F.aa_ensemble_disagrees(_ensemble(9, 0, 0.004), alpha=0.05)
    assert f.level == "warning" and "loses samples" in f.message
    (chance,) = F.aa_ensemble_disagrees(_ensemble(2, 1, 1.0), alpha=0.05)
    assert chance.level == "info"
    assert F.aa_ensemble_disagrees(_ensemble(0, 0, 1.0), alpha=0.05) == []
