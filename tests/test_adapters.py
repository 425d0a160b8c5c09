"""Each adapter against the threat model, against its record, and against the others."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from unified_adv.adapters import AttackRequest, adapter_class, backend_names, backends_with
from unified_adv.adapters.base import AdapterContractError, AdapterOutput
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.models import ModelWrapper

N = 96


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:N].copy(), y[:N].copy()


def _request(
    attack: str, norm: str, eps: float | None, targeted: bool = False, **params: object
) -> AttackRequest:
    if attack == "pgd":
        params = {"steps": 10, "step_size": (eps or 0) / 4, "random_starts": 0, **params}
    return AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=targeted)


# Small budgets: the suite checks contracts and translation, not attack strength.
FAST: dict[str, dict[str, Any]] = {
    "bim": {"steps": 10},
    "pgd": {"steps": 10},
    "mifgsm": {"steps": 10},
    "deepfool": {"steps": 20},
    "cw_l2": {"steps": 30, "lr": 0.05},
    "one_pixel": {"pixels": 3, "steps": 5, "popsize": 5},
    "universal": {"max_iter": 2},
    "square": {"queries": 100},
    "hopskipjump": {"steps": 3, "max_evals": 100, "init_evals": 20},
    "boundary": {"steps": 20},
    "gaussian_noise": {"std": 0.1},
    "lbfgs": {"steps": 50, "binary_search_steps": 2},
    "apgd": {"steps": 5},
    "fab": {"steps": 5},
    "fmn": {"steps": 10},
    "ddn": {"steps": 10},
    "alma": {"steps": 20},
    "autoattack": {"steps": 2, "queries": 20},
}
SLOW = {"autoattack", "deepfool", "cw_l2", "one_pixel", "hopskipjump", "boundary", "square", "lbfgs"}
SLOW |= {"fab", "fmn"}  # FAB: a gradient per class per step; 96 samples took 6 s each
SLOW |= {"ddn", "alma"}
EPS = {"linf": 0.2, "l2": 1.0}

def _library_names(backend: str, attack: str) -> dict[str, str]:
    """Canonical parameter -> the keyword the library receives it under, as the adapter
    declares it (and reads it back for the cross-check): the test checks the call used it."""
    cls = adapter_class(backend)
    return {**cls.names, **cls.translators[attack].names}
# Canonical parameters a library does not take, each for a stated reason (see capabilities).
NOT_PASSED = {
    ("art", "one_pixel", "popsize"),  # ART sizes its own population
    ("art", "one_pixel", "steps"),  # translated to max_iter, with pixels to th (checked below)
    ("foolbox", "gaussian_noise", "std"),  # translated to epsilons = std * sqrt(d)
    ("torchattacks", "deepfool", "candidates"),  # torchattacks considers every class
    ("torchattacks", "cw_l2", "binary_search_steps"),  # fixed at 1, enforced at validation
    ("art", "apgd", "restarts"),  # nb_random_init (square's is nb_restarts): test_apgd.py
    ("art", "apgd", "loss"),  # ART's loss names (cross_entropy, ...): test_apgd.py
    ("torchattacks", "fab", "random_starts"),  # n_restarts = 1 + random_starts: test_fab_fmn.py
    ("torchattacks", "fab", "target_classes"),  # multi_targeted, n_classes: test_fab_fmn.py
    ("torchattacks", "fab", "overshoot"),  # eta = 1 + overshoot: test_fab_fmn.py
    # AutoAttack's parameters go to its components (read back from them): test_autoattack.py
    *(
        (b, "autoattack", p)
        for b in ("art", "torchattacks")
        for p in ("version", "steps", "restarts", "queries", "p_init")
    ),
    ("adv-lib", "fab", "random_starts"),  # restarts = 1 + random_starts: test_advlib_secml.py
    ("adv-lib", "fab", "target_classes"),  # targeted_restarts, restarts: test_advlib_secml.py
    ("adv-lib", "fab", "overshoot"),  # η = 1 + overshoot: test_advlib_secml.py
    # steps + 1: the libraries check a point before stepping from it (test_classic_newlibs.py)
    *((b, a, "steps") for b in ("adv-lib", "secml-torch") for a in ("pgd", "bim")),
    ("adv-lib", "pgd", "random_starts"),  # restarts with random_init: test_classic_newlibs.py
    ("adv-lib", "deepfool", "candidates"),  # adv-lib considers every class
    ("adv-lib", "deepfool", "steps"),  # steps + 1, as PGD's: test_classic_newlibs.py
}


CASES = [
    (backend, attack, norm)
    for backend in backend_names()
    for attack, cap in adapter_class(backend).capabilities.items()
    for norm in cap.norms
]


def test_every_backend_has_cases() -> None:
    assert {c[0] for c in CASES} == {
        "art",
        "foolbox",
        "torchattacks",
        "adv-lib",
        "secml-torch",
        "unified-adv",
    }
    # The project backend runs only what no library has.
    project = adapter_class("unified-adv").capabilities
    assert set(project) == {"lbfgs"}
    for name in ("art", "foolbox", "torchattacks", "adv-lib", "secml-torch"):
        assert not set(project) & set(adapter_class(name).capabilities), name


def _backends_with(attack: str) -> list[str]:
    return [b for b in backend_names() if attack in adapter_class(b).capabilities]


@pytest.mark.parametrize(("backend", "attack", "norm"), CASES, ids=["-".join(c) for c in CASES])
def test_threat_model_record_and_reproducibility(
    model: ModelWrapper, batch, backend: str, attack: str, norm: str
) -> None:
    spec = ATTACKS[attack]
    x, y = batch
    if attack in SLOW:
        x, y = x[:12], y[:12]
    eps = EPS[norm] if spec.takes_eps else None
    params = spec.resolve(eps, FAST.get(attack, {}))
    adapter = adapter_class(backend)(model=model)
    cap = adapter.capabilities[attack]
    # Targeted-only attacks (L-BFGS, as Szegedy et al.) get a targeted request.
    targeted = "untargeted" not in cap.targets
    target = ((y + 1) % 10).astype(np.int64) if targeted else None
    req = AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=targeted)
    out = adapter.generate(req, x, y, target, seed=1)
    n = len(x)
    delta = (out.x_adv - x).reshape(n, -1).astype(np.float64)
    assert out.x_adv.dtype == np.float32 and out.x_adv.shape == x.shape
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    if spec.threat == "ball":
        assert eps is not None
        if norm == "linf":
            assert np.abs(delta).max() <= eps + 1e-6
        else:
            assert np.linalg.norm(delta, axis=1).max() <= eps * (1 + 1e-5) + 1e-6
    elif spec.threat == "l0":
        changed = (np.abs(out.x_adv - x) > 1e-6).any(axis=1).reshape(n, -1).sum(1)
        assert changed.max() <= params["pixels"]
    # The attack did something, and (except plain noise) fooled the model somewhere.
    assert np.abs(delta).max() > 0
    if attack != "gaussian_noise":
        assert (model.logits(out.x_adv).argmax(1) != y).any()
    if targeted:
        assert (model.logits(out.x_adv).argmax(1) == target).any()

    # The record holds the exact values handed to the library, under the library's names.
    call = out.library_call
    assert call["library"] == adapter.distribution
    assert call["class"].endswith(cap.classes[norm])
    kwargs = call["kwargs"]
    for name, value in params.items():
        if (backend, attack, name) in NOT_PASSED or name in cap.fixed:
            continue
        if name == "eot_samples":  # 1: a plain attack; EOT is tested in test_defended.py
            assert value == 1
            continue
        lib_name = _library_names(backend, attack)[name]
        expected = bool(value) if lib_name in ("random_start",) else value
        assert kwargs[lib_name] == expected, f"{name} -> {lib_name}"
    if eps is not None:
        eps_name = _library_names(backend, attack).get("eps", "eps")
        recorded = call["call"]["epsilons"] if backend == "foolbox" else kwargs[eps_name]
        assert recorded == eps
    if backend == "art" and attack == "boundary":
        assert kwargs["targeted"] is False  # ART's default is True
    if backend == "foolbox" and attack == "gaussian_noise":
        assert call["call"]["epsilons"] == pytest.approx(params["std"] * 8)  # sqrt(64)

    # Seeded twice: the same bits (every attack here is reproducible, ART's black-box ones
    # thanks to the seeded fresh RandomState).
    assert cap.reproducible
    again = adapter.generate(req, x, y, target, seed=1)
    assert np.array_equal(out.x_adv, again.x_adv)


@pytest.mark.parametrize(
    ("attack", "params"),
    [("fgsm", {}), ("pgd", {"steps": 20, "step_size": 0.02, "random_starts": 0})],
    ids=["fgsm", "pgd-no-random-start"],
)
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_linf_backends_agree_bit_for_bit(
    model: ModelWrapper, batch, attack: str, params: dict, eps: float
) -> None:
    """FGSM and PGD without random start are deterministic: all three give the same bits.

    On this setup every backend computes sign(∇ cross-entropy) in float32 and
    clips to [0, 1]; the order of clip and projection does not matter for L∞. (adv-lib's and
    secml-torch's PGD return another point than the last: test_classic_newlibs.py.)
    """
    x, y = batch
    req = AttackRequest(attack=attack, norm="linf", eps=eps, params=params, targeted=False)
    outs = {
        b: adapter_class(b)(model=model).generate(req, x, y, None, seed=0).x_adv
        for b in backends_with(attack, last_point=True)
    }
    assert set(outs) == {"art", "foolbox", "torchattacks"}
    for a, b in itertools.combinations(outs, 2):
        assert np.array_equal(outs[a], outs[b]), (
            f"{a} and {b} differ by {np.abs(outs[a] - outs[b]).max()}"
        )


def test_targeted_pgd_agrees_across_backends(model: ModelWrapper, batch) -> None:
    x, y = batch
    target = ((y + 3) % 10).astype(np.int64)
    req = _request("pgd", "linf", 0.2, targeted=True, steps=20, step_size=0.02)
    outs = {
        b: adapter_class(b)(model=model).generate(req, x, y, target, seed=0).x_adv
        for b in backends_with("pgd", last_point=True)
    }
    assert set(outs) == {"art", "foolbox", "torchattacks"}
    for a, b in itertools.combinations(outs, 2):
        assert np.array_equal(outs[a], outs[b])
    hit = model.logits(outs["art"]).argmax(1) == target
    assert hit.mean() > 0.3  # targeted steps move toward the target, not away from y only


def test_l2_pgd_art_and_foolbox_differ_only_by_clip_order(model: ModelWrapper, batch) -> None:
    """ART clips before projecting, Foolbox after: close, not equal (stated tolerance 5e-2)."""
    x, y = batch
    req = _request("pgd", "l2", 1.0, steps=20, step_size=0.125)
    a = adapter_class("art")(model=model).generate(req, x, y, None, seed=0).x_adv
    f = adapter_class("foolbox")(model=model).generate(req, x, y, None, seed=0).x_adv
    diff = np.abs(a - f).max()
    assert 0 < diff <= 5e-2


def test_random_start_is_reproducible_with_the_same_seed(model: ModelWrapper, batch) -> None:
    x, y = batch
    req = _request("pgd", "linf", 0.1, random_starts=1)
    for backend in _backends_with("pgd"):
        adapter = adapter_class(backend)(model=model)
        first = adapter.generate(req, x, y, None, seed=7).x_adv
        again = adapter.generate(req, x, y, None, seed=7).x_adv
        other = adapter.generate(req, x, y, None, seed=8).x_adv
        assert np.array_equal(first, again), backend
        assert not np.array_equal(first, other), backend


def test_wrapper_accepts_float64_like_arts_black_box_attacks(model: ModelWrapper, batch) -> None:
    x, _ = batch
    t = torch.from_numpy(x[:4])
    assert torch.equal(model(t.double()), model(t))


def test_contract_rejects_a_backend_that_leaves_the_ball(model: ModelWrapper, batch) -> None:
    """The base class checks what a library returns; a broken translation cannot pass."""
    x, y = batch
    cls = adapter_class("torchattacks")

    class Sloppy(cls):  # type: ignore[misc, valid-type]
        def _generate(self, request, x, y, target):
            return AdapterOutput(np.clip(x + 2 * request.eps, 0, 1), {})

    with pytest.raises(AdapterContractError, match="left the linf ball"):
        Sloppy(model=model).generate(_request("fgsm", "linf", 0.1), x, y, None, seed=0)


def test_inputs_are_checked_before_the_library_runs(model: ModelWrapper, batch) -> None:
    x, y = batch
    adapter = adapter_class("art")(model=model)
    with pytest.raises(ValueError, match="float32"):
        adapter.generate(_request("fgsm", "linf", 0.1), x.astype(np.float64), y, None, seed=0)
    with pytest.raises(ValueError, match="targeted request needs"):
        adapter.generate(_request("fgsm", "linf", 0.1, targeted=True), x, y, None, seed=0)
    with pytest.raises(ValueError, match="outside the model's input range"):
        adapter.generate(_request("fgsm", "linf", 0.1), x + 2, y, None, seed=0)
