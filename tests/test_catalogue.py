"""The catalogue: one entry per attack owns its facts, and the rest of the code reads them."""

from __future__ import annotations

import numpy as np
import pytest

from unified_adv.adapters import AttackRequest, adapter_class, backend_names
from unified_adv.catalogue.attacks import ALL_PARAMS, ATTACKS, MATTERS, PARAM_KINDS
from unified_adv.catalogue.entry import MATTERS_FOR_EVERY_ATTACK
from unified_adv.catalogue.threats import FixedEpsilon, Minimization, PixelBudget
from unified_adv.scenario import AttackSpec, scenario_from_text


def test_every_parameter_is_a_scenario_field_of_its_kind() -> None:
    assert set(ALL_PARAMS) <= set(AttackSpec.model_fields)
    for name, kind in PARAM_KINDS.items():
        entry = next(a for a in ATTACKS.values() if name in a.param_names)
        param = next(p for p in entry.params if p.name == name)
        text = param.choices[-1] if param.choices else "fgsm"  # a valid, non-default choice
        given = {"name": entry.name, name: {int: 3, float: "1/4", str: text}[kind]}
        if entry.takes_eps:
            given["eps"] = 0.1
        if "untargeted" not in entry.targets:
            given["target"] = {"class": 1}
        spec = AttackSpec.model_validate(given)
        assert getattr(spec, name) == ({int: 3, float: 0.25, str: text}[kind])
    with pytest.raises(ValueError, match="steps"):
        AttackSpec.model_validate({"name": "pgd", "eps": 0.1, "steps": "many"})


def test_a_parameter_the_attack_does_not_take_is_an_error() -> None:
    text = "model: {builtin: digits-cnn}\ndata: {builtin: digits}\n"
    text += "attacks: [{name: fgsm, eps: 0.1, steps: 3}]\n"
    with pytest.raises(Exception, match=r"fgsm takes no 'steps' \(it takes: eot_samples\)"):
        scenario_from_text(text)


def test_threat_models_judge_the_output() -> None:
    x = np.zeros((2, 1, 4, 4), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, :2] = 0.2
    ball = FixedEpsilon(("linf", "l2"))
    assert ball.violation(x, x_adv, "linf", 0.2, {}) is None
    assert "left the linf ball" in str(ball.violation(x, x_adv, "linf", 0.1, {}))
    assert "left the l2 ball" in str(ball.violation(x, x_adv, "l2", 0.2, {}))
    assert PixelBudget().violation(x, x_adv, "l0", None, {"pixels": 2}) is None
    assert "changed 2 pixels" in str(PixelBudget().violation(x, x_adv, "l0", None, {"pixels": 1}))
    assert Minimization(("l2",)).violation(x, x_adv, "l2", None, {}) is None
    assert ball.takes_eps and not PixelBudget().takes_eps


def test_randomness_follows_the_entry_and_its_parameters() -> None:
    pgd = ATTACKS["pgd"]
    assert not pgd.is_randomised(pgd.resolve(0.1, {}))
    assert pgd.is_randomised(pgd.resolve(0.1, {"random_starts": 1}))
    for name, entry in ATTACKS.items():
        if entry.black_box:
            assert entry.is_randomised({}), name


def test_eot_and_tolerances_are_consistent_with_the_backends() -> None:
    for name, entry in ATTACKS.items():
        assert set(entry.tolerance) <= set(entry.norms), name
        for backend in backend_names():
            cap = adapter_class(backend).capabilities.get(name)
            if cap is not None and cap.eot_norms:
                assert entry.supports_eot, f"{backend} has EOT for {name}, the catalogue not"


@pytest.mark.parametrize("attack", sorted(a for a in ATTACKS if ATTACKS[a].matters))
def test_every_fact_that_matters_is_recorded_by_some_backend(attack: str) -> None:
    """A key in ``matters`` the adapters never record would never explain a divergence."""
    entry = ATTACKS[attack]
    for key, norms in entry.matters.items():
        assert key not in MATTERS_FOR_EVERY_ATTACK
        for norm in norms:
            assert norm in entry.norms, (attack, key, norm)
            eps = 0.1 if entry.takes_eps else None
            # Our defaults, and with a random start (a fact about the start is recorded
            # only for a run that has one: secml-torch's PGD start).
            given = [{}, {"random_starts": 1}] if "random_starts" in entry.param_names else [{}]
            reqs = [AttackRequest(attack, norm, eps, entry.resolve(eps, g), False) for g in given]
            recorded = [
                b
                for b in backend_names()
                if attack in adapter_class(b).capabilities
                and any(
                    key in adapter_class(b)(model=None).facts(req)  # type: ignore[arg-type]
                    for req in reqs
                )
            ]
            assert recorded, f"no backend records {key!r} for {attack} {norm}"
    assert all(any(a in (attack, "*") for a, _ in MATTERS[k]) for k in entry.matters)
