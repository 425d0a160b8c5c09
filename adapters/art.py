"""ART (adversarial-robustness-toolbox) backend.

ART steps, then clips to the input range, then projects onto the ε-ball;
Foolbox and torchattacks project before clipping. Identical for L∞, not for L2.
ART attacks its own predictions when given no labels, so labels are always passed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.adapters.base import (
    Adapter,
    AdapterOutput,
    AttackRequest,
    Capability,
    Job,
    Translators,
)

_ALL = ("untargeted", "class", "least_likely", "random", "each_other_class")
_UNTARGETED = ("untargeted",)


@contextlib.contextmanager
def seeded_fresh_random_states(base_seed: int) -> Iterator[None]:
    """ART's HopSkipJump and BoundaryAttack draw from ``np.random.RandomState()``,
    a fresh unseeded generator. During the call, such generators are seeded from
    the unit's seed (one after another), which makes those attacks reproducible."""
    real = np.random.RandomState
    counter = iter(range(1, 1 << 30))

    class Seeded(real):  # type: ignore[misc, valid-type]
        def __init__(self, seed: Any = None) -> None:
            super().__init__((base_seed + next(counter)) % 2**32 if seed is None else seed)

    np.random.RandomState = Seeded  # type: ignore[misc]
    try:
        yield
    finally:
        np.random.RandomState = real  # type: ignore[misc]


def _identity_eot() -> type:
    """ART's EoT preprocessor with the identity transform (the model itself is random)."""
    from art.preprocessing.expectation_over_transformation.pytorch import EoTPyTorch

    class IdentityEoT(EoTPyTorch):  # type: ignore[misc]
        def _transform(self, x: Any, y: Any, **kwargs: Any) -> tuple[Any, Any]:
            return x, y

    return IdentityEoT


class _View(nn.Module):
    """The model seen through [0, 1], its outputs reordered: u -> model(lo + width u)[:, order]."""

    def __init__(self, inner: nn.Module, lo: float, width: float, order: list[int]) -> None:
        super().__init__()
        self.inner, self.lo, self.width = inner, lo, width
        self.register_buffer("order", torch.tensor(order, dtype=torch.long))

    def forward(self, u: Any) -> Any:
        out = self.inner(self.lo + self.width * u.float())
        return out.index_select(1, self.get_buffer("order"))


class _PadClass(nn.Module):
    """A constant third logit of -1e4, which never wins: ART's PixelAttack refuses
    2-class models (it turns their labels into one column)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z: Any) -> Any:
        out = self.inner(z)
        return torch.cat([out, torch.full_like(out[:, :1], -1e4)], dim=1)


@dataclass
class ArtJob(Job):
    """One request on ART: the inputs, the estimator (built once per adapter and shape)
    and its record, and the common steps of an ``art.attacks.evasion`` call."""

    adapter: ArtAdapter
    estimator: Any
    est_args: dict[str, Any]

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def norm(self) -> float:
        return np.inf if self.request.norm == "linf" else 2

    def run(self, kwargs: dict[str, Any], cls_name: str = "", **extra: Any) -> AdapterOutput:
        """``evasion.<cls_name>(estimator, **kwargs).generate(x, y=one-hot labels)``,
        recorded (the class defaults to the capability's class for the request's norm)."""
        attack, x_adv = self.call(kwargs, cls_name)
        return AdapterOutput(x_adv, self.record(attack, kwargs, **extra))

    def call(self, kwargs: dict[str, Any], cls_name: str = "") -> tuple[Any, Any]:
        from art.attacks import evasion

        req = self.request
        cls_name = cls_name or self.adapter.capabilities[req.attack].classes[req.norm]
        attack = getattr(evasion, cls_name)(self.estimator, **kwargs)
        labels = self.target if req.targeted else self.y
        # One-hot: with index labels ART turns a 2-class problem into (N, 1) binary
        # labels, which PixelAttack refuses.
        onehot = np.eye(self.estimator.nb_classes, dtype=np.float32)[labels]
        seed = int(np.random.randint(0, 2**31 - 1))  # drawn from the unit-seeded global RNG
        with seeded_fresh_random_states(seed):
            x_adv = attack.generate(x=self.x, y=onehot)
        return attack, x_adv

    def record(self, attack: Any, kwargs: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            **self.est_args,
            "class": f"{type(attack).__module__}.{type(attack).__name__}",
            "kwargs": {
                k: ("inf" if isinstance(v, float) and v == np.inf else v) for k, v in kwargs.items()
            },
            "generate": {
                "y": "target labels, one-hot" if self.request.targeted else "true labels, one-hot"
            },
            "update_order": self.adapter.update_order,
            **extra,
        }


ART = Translators()


@ART.add(
    "fgsm",
    Capability(
        {"linf": "FastGradientMethod", "l2": "FastGradientMethod"}, _ALL, eot_norms=("linf", "l2")
    ),
)
def _fgsm(job: ArtJob) -> AdapterOutput:
    """FastGradientMethod: one step, eps_step = eps, no random init, not minimal."""
    eps = job.request.eps
    return job.run(
        {
            "norm": job.norm,
            "eps": eps,
            "eps_step": eps,
            "targeted": job.request.targeted,
            "num_random_init": 0,
            "batch_size": job.n,
            "minimal": False,
            "summary_writer": False,
        }
    )


#: What PGD and BIM return (adv-lib and secml-torch return another point: catalogue/gradient.py).
_LAST = {"returned_iterate": "the point after the last step, adversarial or not"}


@ART.add(
    "bim",
    Capability({"linf": "BasicIterativeMethod"}, _ALL, eot_norms=("linf",)),
    facts=_LAST,
)
def _bim(job: ArtJob) -> AdapterOutput:
    """BasicIterativeMethod: step_size -> eps_step, steps -> max_iter."""
    return job.run(
        {
            "eps": job.request.eps,
            "eps_step": job.p["step_size"],
            "max_iter": job.p["steps"],
            "targeted": job.request.targeted,
            "batch_size": job.n,
            "verbose": False,
        }
    )


@ART.add(
    "pgd",
    Capability(
        {"linf": "ProjectedGradientDescent", "l2": "ProjectedGradientDescent"},
        _ALL,
        max_random_starts=None,
        eot_norms=("linf", "l2"),
    ),
    facts=_LAST,
)
def _pgd(job: ArtJob) -> AdapterOutput:
    """ProjectedGradientDescent: step_size -> eps_step, steps -> max_iter, random_starts ->
    num_random_init (ART keeps the best of the starts); no decay, no random eps."""
    return job.run(
        {
            "norm": job.norm,
            "eps": job.request.eps,
            "eps_step": job.p["step_size"],
            "max_iter": job.p["steps"],
            "targeted": job.request.targeted,
            "num_random_init": job.p["random_starts"],
            "batch_size": job.n,
            "decay": None,
            "random_eps": False,
            "summary_writer": False,
            "verbose": False,
        }
    )


@ART.add(
    "mifgsm",
    Capability(
        {"linf": "MomentumIterativeMethod"},
        _ALL,
        note="follows the paper: g <- mu*g + grad/||grad||_1",
    ),
    facts={"momentum": "paper: mu*g + grad/||grad||_1, step along sign"},
)
def _mifgsm(job: ArtJob) -> AdapterOutput:
    """MomentumIterativeMethod: step_size -> eps_step, decay -> decay, steps -> max_iter."""
    return job.run(
        {
            "norm": job.norm,
            "eps": job.request.eps,
            "eps_step": job.p["step_size"],
            "decay": job.p["decay"],
            "max_iter": job.p["steps"],
            "targeted": job.request.targeted,
            "batch_size": job.n,
            "verbose": False,
        }
    )


@ART.add(
    "deepfool",
    Capability(
        {"l2": "DeepFool"},
        _UNTARGETED,
        note="attacks the model's own prediction (labels are not used); clips every step to "
        "the input range and multiplies it by the range's width, which unified-adv undoes by "
        "running it on the model seen through [0, 1]; takes the top-k candidates over the "
        "whole call, so unified-adv calls it once per class set; orders of magnitude slower",
    ),
    facts={
        "step_clip": "every step clipped to the input range",
        "overshoot_applied_to": "total perturbation, once after the last step",
        "step_offset": "none",
        "labels": "model's own predictions",
    },
)
def _deepfool(job: ArtJob) -> AdapterOutput:
    """ART's DeepFool (art/attacks/evasion/deepfool.py): steps -> max_iter, overshoot ->
    epsilon, candidates -> nb_grads; translated twice:

    * every step is multiplied by the width of ``clip_values``, so outside [0, 1] the
      steps are that many times too long. The attack runs on the model seen through
      [0, 1] (x = lo + width * u), where the factor is 1; DeepFool's step is equivariant
      under that affine change, so this is DeepFool in the model's own range;
    * ``nb_grads`` < classes takes the union of the top-k classes over the whole call and
      then reads the logit of the k-th class of that set where it means the predicted
      class (``f_batch[..., labels_indices]``): right only when the set is all classes.
      The samples are grouped by their own top-k set, and ART is called once per group on
      the model's outputs reordered so that the set comes first: class i of the set is
      output i, and both readings agree.
    """
    from art.attacks.evasion import DeepFool

    adapter, x, p = job.adapter, job.x, job.p
    lo, hi = adapter.model.input_range
    width = hi - lo
    rescaled = (lo, hi) != (0.0, 1.0)
    x_in = ((x - lo) / width).astype(np.float32) if rescaled else x
    k = int(p["candidates"])
    n_classes = adapter.n_classes
    groups = _top_k_groups(adapter, x, k)
    out = np.empty_like(x_in)
    kwargs: dict[str, Any] = {}
    for classes, idx in groups.items():
        order = list(classes) + [c for c in range(n_classes) if c not in classes]
        if rescaled or order != list(range(n_classes)):
            estimator = adapter.view_estimator(x, lo, width, order)
        else:
            estimator = job.estimator
        kwargs = {
            "max_iter": p["steps"],
            "epsilon": p["overshoot"],
            "nb_grads": k,
            "batch_size": len(idx),
            "verbose": False,
        }
        out[idx] = DeepFool(estimator, **kwargs).generate(x=x_in[idx])
    steps = []
    if len(groups) > 1:
        kwargs["batch_size"] = "one call per top-k class set"
        steps.append(
            f"one ART call per top-{k} class set ({len(groups)} sets), the model's outputs "
            "reordered so that the set comes first"
        )
    if rescaled:
        steps.append(
            f"run on the model seen through [0, 1] (x = {lo:g} + {width:g} u, clip_values "
            "(0, 1)): ART multiplies each step by the clip width"
        )
    x_adv = np.clip(lo + out * width, lo, hi).astype(np.float32) if rescaled else out
    call = {
        **job.est_args,
        "class": "art.attacks.evasion.deepfool.DeepFool",
        "kwargs": kwargs,
        "generate": {"y": "not passed: ART's DeepFool attacks the model's own prediction"},
        "classes": n_classes,
        "translation": "; ".join(steps) or "none needed",
    }
    return AdapterOutput(x_adv, call)


def _top_k_groups(adapter: ArtAdapter, x: np.ndarray, k: int) -> dict[tuple[int, ...], list[int]]:
    """The samples grouped by the set of their top-``k`` classes (all classes: one group)."""
    n_classes = adapter.n_classes
    if k >= n_classes:
        return {tuple(range(n_classes)): list(range(len(x)))}
    top = np.argsort(-adapter.model.logits(x), axis=1, kind="stable")[:, :k]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(top.tolist()):
        groups.setdefault(tuple(sorted(row)), []).append(i)
    return groups


@ART.add(
    "cw_l2",
    Capability(
        {"l2": "CarliniL2Method"},
        _ALL,
        note="monotone gradient descent with step halving/doubling, not Adam: no change "
        "after its first step past the boundary (its gradient keeps the margin term there); "
        "its binary search doubles c until the first success and then keeps it (bug: its "
        "lower bound aliases c, so it never bisects; Foolbox: x10, then bisects); very slow",
    ),
    facts={
        "optimiser": "monotone gradient descent with step halving/doubling; its gradient "
        "keeps the c * margin term where the hinge is 0: stalls after its first step past "
        "the boundary",
        "binary_search_rule": "c x 2 until the first success, then c kept (bug: the lower "
        "bound aliases c, no bisection); from a first success, c / 2 until a failure, then "
        "x 1.5, then kept",
        "start": "the input (tanh space, no frozen pixels)",
        "margin": "max over the other classes' logits",
    },
)
def _cw_l2(job: ArtJob) -> AdapterOutput:
    """CarliniL2Method: lr -> learning_rate, c -> initial_const, steps -> max_iter;
    ART's own step halving/doubling bounds set explicitly (5 each)."""
    p = job.p
    return job.run(
        {
            "confidence": p["confidence"],
            "targeted": job.request.targeted,
            "learning_rate": p["lr"],
            "binary_search_steps": p["binary_search_steps"],
            "max_iter": p["steps"],
            "initial_const": p["c"],
            "max_halving": 5,
            "max_doubling": 5,
            "batch_size": job.n,
            "verbose": False,
        }
    )


@ART.add(
    "one_pixel",
    Capability(
        {"l0": "PixelAttack"},
        _ALL,
        note="differential evolution with ART's own population (400 // (3 x pixels)); "
        "pixel values are cast to int, so in [0, 1] they are 0 or 1; it refuses 2-class "
        "models, so those get a constant third logit (-1e4) that never wins",
    ),
)
def _one_pixel(job: ArtJob) -> AdapterOutput:
    """PixelAttack: pixels -> th, steps -> max_iter, es=1 (differential evolution);
    popsize is not passed (ART sizes its own population)."""
    return job.run(
        {
            "th": job.p["pixels"],
            "es": 1,
            "max_iter": job.p["steps"],
            "targeted": job.request.targeted,
            "verbose": False,
        }
    )


@ART.add(
    "universal",
    Capability(
        {"linf": "UniversalPerturbation", "l2": "UniversalPerturbation"},
        ("untargeted", "class"),
        scoped_notes={"targeted": "TargetedUniversalPerturbation (fgsm attacker only)"},
    ),
)
def _universal(job: ArtJob) -> AdapterOutput:
    """UniversalPerturbation (TargetedUniversalPerturbation when targeted, fgsm attacker
    only): eps and norm go to both the UAP and an fgsm attacker; the perturbation itself
    comes back as ``AdapterOutput.universal_noise``."""
    p, req = job.p, job.request
    inner = (
        {"eps": req.eps, "norm": job.norm, "targeted": req.targeted}
        if p["attacker"] == "fgsm"
        else {
            "max_iter": 50,
            "epsilon": 0.02,
            "nb_grads": 10,
            "batch_size": job.n,
            "verbose": False,
        }
    )
    kwargs: dict[str, Any] = {
        "attacker": p["attacker"],
        "attacker_params": inner,
        "delta": p["delta"],
        "max_iter": p["max_iter"],
        "eps": req.eps,
        "norm": job.norm,
    }
    if req.targeted:
        if p["attacker"] != "fgsm":
            raise ValueError("ART's targeted universal perturbation needs attacker: fgsm")
        attack, x_adv = job.call(kwargs, "TargetedUniversalPerturbation")
    else:
        kwargs = {**kwargs, "batch_size": job.n, "verbose": False}
        attack, x_adv = job.call(kwargs)
    call = job.record(
        attack,
        kwargs,
        fooling_rate_reported_by_art=float(getattr(attack, "fooling_rate", float("nan"))),
        converged=bool(getattr(attack, "converged", False)),
    )
    noise = np.asarray(attack.noise, dtype=np.float32)
    return AdapterOutput(x_adv, call, universal_noise=noise)


@ART.add(
    "square",
    Capability(
        {"linf": "SquareAttack", "l2": "SquareAttack"},
        _UNTARGETED,
        note="returns perturbed inputs for failed samples; success is decided by unified-adv",
    ),
)
def _square(job: ArtJob) -> AdapterOutput:
    """SquareAttack: queries -> max_iter, restarts -> nb_restarts; ART's default loss
    (logit margin) and adversarial criterion."""
    return job.run(
        {
            "norm": job.norm,
            "adv_criterion": None,
            "loss": None,
            "max_iter": job.p["queries"],
            "eps": job.request.eps,
            "p_init": job.p["p_init"],
            "nb_restarts": job.p["restarts"],
            "batch_size": job.n,
            "verbose": False,
        },
        loss="ART default: margin of logits (None -> _get_logits_diff)",
    )


#: The canonical APGD losses under ART's names (it re-wraps the estimator with that loss).
_ART_APGD_LOSS = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


@ART.add(
    "apgd",
    Capability(
        {"linf": "AutoProjectedGradientDescent", "l2": "AutoProjectedGradientDescent"},
        _ALL,
        max_random_starts=None,
        fixed={"rho": 0.75},
        choices={"loss": tuple(_ART_APGD_LOSS)},
        note="rho fixed at 0.75; a failed sample comes back at its last random start, not at "
        "the input; no APGD-T (loss dlr_targeted)",
        scoped_notes={
            "targeted": "targeted dlr minimises the DLR of the target class, "
            "-(z_t - max_{i!=t} z_i)/(z_1 - z_3), not Croce & Hein's targeted DLR"
        },
    ),
    names={"restarts": "nb_random_init", "loss": "loss_type"},
    values={"loss": _ART_APGD_LOSS},
    facts={
        "initial_step": "eps_step = 2 * eps, passed (Croce & Hein's value)",
        "checkpoints": "ceil(p_j * max_iter): p = 0, 0.22, then p_j + max(p_j - p_(j-1) - "
        "0.03, 0.06)",
        "rho": 0.75,  # fixed inside ART (read back from the call on torchattacks)
        "momentum": "0.75, fixed",
        "start": "every restart from random_sphere: uniform in the eps-ball (linf: the cube), "
        "from numpy's global RNG",
        "restart_rule": "nb_random_init runs, each on the samples not yet adversarial",
        "failed_samples": "returned at their last random start (not at the input)",
        "loss_reduction": "per sample (the step size is adapted per image)",
        "targeted_dlr": "DLR of the target class, minimised",
    },
)
def _apgd(job: ArtJob) -> AdapterOutput:
    """AutoProjectedGradientDescent: steps -> max_iter, restarts -> nb_random_init, loss ->
    loss_type (ce -> cross_entropy, dlr -> difference_logits_ratio); eps_step = 2*eps as
    the paper; rho is ART's fixed 0.75 (validation refuses another value)."""
    eps = job.request.eps
    assert eps is not None
    return job.run(
        {
            "norm": job.norm,
            "eps": eps,
            "eps_step": 2 * eps,
            "max_iter": job.p["steps"],
            "targeted": job.request.targeted,
            "nb_random_init": job.p["restarts"],
            "batch_size": job.n,
            "loss_type": _ART_APGD_LOSS[job.p["loss"]],
            "verbose": False,
        }
    )


#: ART's AutoAttack as configured for the standard version, in the order it runs them.
_ART_AA_COMPONENTS = (
    "apgd-ce (untargeted)",
    "apgd-dlr (untargeted)",
    "square (untargeted)",
    "apgd-ce targeted, against each other class in turn",
    "apgd-dlr targeted (APGD-T), against each other class in turn",
    "square targeted: refused by ART (it has no targeted parameter), skipped",
)


@contextlib.contextmanager
def _multiprocess_placeholder() -> Iterator[bool]:
    """ART's ``AutoAttack.generate`` imports ``multiprocess`` (not among ART's declared
    dependencies) and uses it only when ``parallel_pool_size`` > 0. Where it is not
    installed, an empty placeholder module stands in during the call (we pass 0);
    yields whether it did."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("multiprocess") is not None:
        yield False
        return
    sys.modules["multiprocess"] = types.ModuleType("multiprocess")
    try:
        yield True
    finally:
        sys.modules.pop("multiprocess", None)


def _art_aa_components(job: ArtJob) -> tuple[list[Any], list[dict[str, Any]]]:
    """The standard version's components as ART has them: APGD-CE, APGD-DLR (run targeted
    by AutoAttack's targeted pass: APGD-T) and Square, every argument explicit."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    eps, p = job.request.eps, job.p
    assert eps is not None
    apgd = {
        "norm": job.norm,
        "eps": eps,
        "eps_step": 2 * eps,
        "max_iter": p["steps"],
        "targeted": False,
        "nb_random_init": p["restarts"],
        "batch_size": job.n,
        "verbose": False,
    }
    ce = {**apgd, "loss_type": "cross_entropy"}
    dlr = {**apgd, "loss_type": "difference_logits_ratio"}
    square = {
        "norm": job.norm,
        "adv_criterion": None,
        "loss": None,
        "max_iter": p["queries"],
        "eps": eps,
        "p_init": p["p_init"],
        "nb_restarts": p["restarts"],
        "batch_size": job.n,
        "verbose": False,
    }
    attacks = [
        AutoProjectedGradientDescent(job.estimator, **ce),
        AutoProjectedGradientDescent(job.estimator, **dlr),
        SquareAttack(job.estimator, **square),
    ]
    shown = {"norm": "inf" if job.norm == np.inf else 2}
    recorded: list[dict[str, Any]] = [
        {"class": "AutoProjectedGradientDescent", "kwargs": {**ce, **shown}},
        {"class": "AutoProjectedGradientDescent", "kwargs": {**dlr, **shown}},
        {"class": "SquareAttack", "kwargs": {**square, **shown}},
    ]
    return attacks, recorded


@ART.add(
    "autoattack",
    Capability(
        {"linf": "AutoAttack", "l2": "AutoAttack"},
        _UNTARGETED,
        max_random_starts=None,
        fixed={"version": "standard"},
        note="no FAB in ART; AutoAttack(targeted=True) runs APGD-CE, APGD-DLR and Square "
        "untargeted, then APGD-CE and APGD-DLR targeted at every other class (Square "
        "refuses), a targeted run counting only where it hits its target; no rand version "
        "(ART's APGD breaks under its EoT preprocessor)",
    ),
    facts={
        "components": "; ".join(_ART_AA_COMPONENTS),
        "component_steps": "passed to each APGD (max_iter)",
        "samples_per_component": "only the samples not yet fooled (run_attack on "
        "sample_is_robust), each from the input",
        "targeted_success": "a targeted run's example is kept only where the prediction is "
        "its target",
        "target_order": "every other class, in class-index order",
        "initially_misclassified": "never attacked, returned as the input",
        "success_check": "prediction changed and (1 - 1e-4) ||delta|| <= eps",
    },
)
def _autoattack(job: ArtJob) -> AdapterOutput:
    """AutoAttack(attacks=[APGD-CE, APGD-DLR, Square], targeted=True): steps -> each APGD's
    max_iter, restarts -> nb_random_init / nb_restarts, queries -> Square's max_iter,
    p_init -> p_init; eps_step = 2 * eps; parallel_pool_size=0. ART's per-sample winner
    (``best_attacks``) is recorded as counts per component."""
    eps = job.request.eps
    attacks, recorded = _art_aa_components(job)
    kwargs = {
        "norm": job.norm,
        "eps": eps,
        "eps_step": 2 * eps if eps is not None else None,
        "attacks": recorded,
        "batch_size": job.n,
        "estimator_orig": None,
        "targeted": True,
        "parallel_pool_size": 0,
    }
    with _multiprocess_placeholder() as placeholder:
        attack, x_adv = job.call({**kwargs, "attacks": attacks})
    names = ("apgd-ce", "apgd-dlr", "square")
    best = np.asarray(attack.best_attacks)
    won = {name: int((best == i).sum()) for i, name in enumerate(names)}
    won["none (robust)"] = int((best == -1).sum())
    won["not attacked (misclassified)"] = int((best == -2).sum())
    apgd, square = attack.attacks[0], attack.attacks[2]
    read_back = {
        "version": "standard",
        "steps": int(apgd.max_iter),
        "restarts": int(apgd.nb_random_init),
        "queries": int(square.max_iter),
        "p_init": float(square.p_init),
    }
    call = job.record(attack, kwargs, fooled_first_by=won, read_back=read_back)
    if placeholder:
        call["multiprocess"] = "not installed: an empty placeholder module during the call"
    return AdapterOutput(x_adv, call)


@ART.add(
    "hopskipjump",
    Capability(
        {"l2": "HopSkipJump", "linf": "HopSkipJump"},
        _UNTARGETED,
        note="works in float64; its fresh RandomState is seeded by unified-adv; binary-search "
        "threshold 0.01/sqrt(d) (Foolbox: gamma/d^1.5)",
    ),
    facts={
        "dtype": "float64 inside ART (cast to float32 by the model wrapper)",
        "search_threshold": "theta 0.01 / sqrt(d) (L2), 0.01 / d (Linf): the binary "
        "search's stop width (Linf: times the distance) and the gradient probe, "
        "0.01 x distance",
    },
)
def _hopskipjump(job: ArtJob) -> AdapterOutput:
    """HopSkipJump: steps -> max_iter, max_evals -> max_eval, init_evals -> init_eval."""
    return job.run(
        {
            "batch_size": job.n,
            "targeted": False,
            "norm": job.norm,
            "max_iter": job.p["steps"],
            "max_eval": job.p["max_evals"],
            "init_eval": job.p["init_evals"],
            "init_size": 100,
            "verbose": False,
        }
    )


@ART.add(
    "boundary",
    Capability(
        {"l2": "BoundaryAttack"},
        _UNTARGETED,
        note="ART's default is targeted=True; set to False explicitly; tries up to "
        "num_trial x sample_size (25 x 20) proposals per step (Foolbox: 1)",
    ),
    names={"spherical_step": "delta", "source_step": "epsilon"},
    facts={
        "dtype": "float64 inside ART (cast to float32 by the model wrapper)",
        "proposals_per_step": "up to num_trial x sample_size (25 x 20) orthogonal, each "
        "adversarial one stepped toward the original, the nearest kept; stops at a step "
        "whose 25 rounds find none",
    },
)
def _boundary(job: ArtJob) -> AdapterOutput:
    """BoundaryAttack: spherical_step -> delta, source_step -> epsilon, steps -> max_iter;
    targeted=False set explicitly (ART's default is True)."""
    return job.run(
        {
            "batch_size": job.n,
            "targeted": False,
            "delta": job.p["spherical_step"],
            "epsilon": job.p["source_step"],
            "step_adapt": 0.667,
            "max_iter": job.p["steps"],
            "num_trial": 25,
            "sample_size": 20,
            "init_size": 100,
            "min_epsilon": 0.0,
            "verbose": False,
        }
    )


@ART.add(
    "gaussian_noise",
    Capability(
        {"l2": "GaussianAugmentation"},
        _UNTARGETED,
        note="ART has no noise attack: its GaussianAugmentation preprocessor used as a corruption",
    ),
)
def _gaussian_noise(job: ArtJob) -> AdapterOutput:
    """art.defences.preprocessor.GaussianAugmentation as a corruption: std -> sigma."""
    from art.defences.preprocessor import GaussianAugmentation

    kwargs = {
        "sigma": job.p["std"],
        "augmentation": False,
        "ratio": 1.0,
        "clip_values": job.adapter.model.input_range,
        "apply_fit": False,
        "apply_predict": True,
    }
    x_noisy, _ = GaussianAugmentation(**kwargs)(job.x)
    call = {
        "class": "art.defences.preprocessor.GaussianAugmentation",
        "kwargs": kwargs,
        "semantics": "x + N(0, std^2) per pixel, clipped",
    }
    return AdapterOutput(x_noisy.astype(np.float32), call)


class ArtAdapter(Adapter):
    name = "art"
    distribution = "adversarial-robustness-toolbox"
    update_order = "step -> clip -> project"
    translators = ART

    names = {
        "eps": "eps",
        "step_size": "eps_step",
        "steps": "max_iter",
        "random_starts": "num_random_init",
        "decay": "decay",
        "overshoot": "epsilon",
        "candidates": "nb_grads",
        "lr": "learning_rate",
        "c": "initial_const",
        "confidence": "confidence",
        "binary_search_steps": "binary_search_steps",
        "pixels": "th",
        "max_iter": "max_iter",
        "delta": "delta",
        "attacker": "attacker",
        "queries": "max_iter",
        "p_init": "p_init",
        "restarts": "nb_restarts",
        "max_evals": "max_eval",
        "init_evals": "init_eval",
        "std": "sigma",
    }

    loss_convention = "cross-entropy, mean over the batch"
    l2_step_rule = "g / ||g||_2"

    @property
    def n_classes(self) -> int:
        """The model's class count, learnt when the first estimator is built."""
        return self._n_classes

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> ArtJob:
        eot = int(request.params.get("eot_samples", 1))
        estimator, est_args = self._classifier(
            x, pad_two_classes=request.attack == "one_pixel", eot=eot
        )
        if eot > 1:
            est_args = {**est_args, "eot": {"samples": eot, "average": "loss gradients (summed)"}}
        return ArtJob(self, request, x, y, target, estimator, est_args)

    def _classifier(
        self, x: np.ndarray, *, pad_two_classes: bool = False, eot: int = 1
    ) -> tuple[Any, dict[str, Any]]:
        """The ART estimator over the model wrapper, built once per adapter and input shape.

        ``eot`` > 1: ART's expectation over transformation (an ``EoTPyTorch`` preprocessor)
        copies each input ``eot`` times; the transformation is the identity because the
        randomness lives in the (defended) model, which draws it anew for every copy, and
        the loss gradients of the copies are summed back onto the input.
        """
        from art.estimators.classification import PyTorchClassifier

        if not hasattr(self, "_estimators"):
            self._estimators: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
            # Through the bare network: a defence's random draws are not spent on a probe.
            with torch.no_grad():
                probe = self.model.net(torch.from_numpy(x[:1]).to(self.model.device))
            self._n_classes = int(probe.shape[1])
        pad = pad_two_classes and self._n_classes == 2
        key = (*x.shape[1:], pad, eot)
        if key not in self._estimators:
            args: dict[str, Any] = {
                "loss": "torch.nn.CrossEntropyLoss()",
                "input_shape": tuple(x.shape[1:]),
                "nb_classes": self._n_classes + int(pad),
                "clip_values": self.model.input_range,
                "channels_first": True,
                "preprocessing": (0.0, 1.0),
                "device_type": "cpu" if self.model.device.type == "cpu" else "gpu",
            }
            model = _PadClass(self.model) if pad else self.model
            defences = []
            if eot > 1:
                defences.append(
                    _identity_eot()(
                        nb_samples=eot,
                        clip_values=tuple(self.model.input_range),
                        apply_fit=False,
                        apply_predict=True,
                    )
                )
                args["preprocessing_defences"] = (
                    f"EoTPyTorch(nb_samples={eot}, apply_predict=True), identity transform"
                )
            real = {**args, "loss": nn.CrossEntropyLoss()}
            if defences:
                real["preprocessing_defences"] = defences
            estimator = PyTorchClassifier(model=model, **real)
            record: dict[str, Any] = {"PyTorchClassifier": args}
            if pad:
                record["two_class_workaround"] = (
                    "constant third logit -1e4 (never wins) for PixelAttack"
                )
            self._estimators[key] = (estimator, record)
        return self._estimators[key]

    def view_estimator(self, x: np.ndarray, lo: float, width: float, order: list[int]) -> Any:
        """An ART estimator over u in [0, 1] -> model(lo + width * u)[:, order]."""
        from art.estimators.classification import PyTorchClassifier

        return PyTorchClassifier(
            model=_View(self.model, lo, width, order),
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=self._n_classes,
            clip_values=(0.0, 1.0),
            channels_first=True,
            preprocessing=(0.0, 1.0),
            device_type="cpu" if self.model.device.type == "cpu" else "gpu",
        )
