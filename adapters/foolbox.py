"""Foolbox 3 backend.

Foolbox returns raw and clipped adversarials; the clipped ones (projected to ε)
are the result. Its FGSM refuses target labels. Updates: step -> project -> clip.
Minimisation attacks (DeepFool, C&W, HopSkipJump, Boundary) run with epsilons=None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

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
_INIT_DIRECTIONS, _INIT_STEPS = 1000, 50
_INIT_ATTACK = {
    "class": "LinearSearchBlendedUniformNoiseAttack",
    "directions": _INIT_DIRECTIONS,
    "steps": _INIT_STEPS,
}


@dataclass
class FoolboxJob(Job):
    """One request on Foolbox: the inputs, the ``PyTorchModel`` (built once per adapter;
    wrapped for EOT when asked), and the common steps of a ``foolbox.attacks`` call."""

    adapter: FoolboxAdapter
    fmodel: Any
    eot: int

    def run(
        self,
        kwargs: dict[str, Any],
        *,
        bounded: bool = True,
        epsilons: float | None = None,
        **extra: Any,
    ) -> AdapterOutput:
        """``attack(fmodel, x, criterion, epsilons)`` of the capability's class; the clipped
        result. ``epsilons`` defaults to the request's eps; ``bounded=False``: a
        minimisation attack, run with epsilons=None."""
        import foolbox as fb

        req, device = self.request, self.adapter.model.device
        cls_name = self.adapter.capabilities[req.attack].classes[req.norm]
        if not bounded:
            epsilons = None
        elif epsilons is None:
            epsilons = req.eps
        attack = getattr(fb.attacks, cls_name)(**kwargs)
        if req.targeted:
            assert self.target is not None
            labels = torch.from_numpy(self.target).to(device)
            criterion: Any = fb.criteria.TargetedMisclassification(labels)
        else:
            criterion = fb.criteria.Misclassification(torch.from_numpy(self.y).to(device))
        xt = torch.from_numpy(self.x).to(device)
        _raw, clipped, _success = attack(self.fmodel, xt, criterion, epsilons=epsilons)
        return AdapterOutput(
            clipped.detach().cpu().numpy(),
            self.record(cls_name, kwargs, type(criterion).__name__, epsilons, extra),
        )

    def record(
        self,
        cls_name: str,
        kwargs: dict[str, Any],
        criterion: str,
        epsilons: float | None,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        recorded = dict(kwargs)
        if kwargs.get("init_attack") is not None:
            recorded["init_attack"] = dict(_INIT_ATTACK)
        model = self.adapter.model
        return {
            "PyTorchModel": {
                "bounds": model.input_range,
                "preprocessing": None,
                "device": str(model.device),
            },
            "class": f"foolbox.attacks.{cls_name}",
            "kwargs": recorded,
            "call": {"criterion": criterion, "epsilons": epsilons, "result": "clipped"},
            "update_order": self.adapter.update_order,
            "eot": {
                "samples": self.eot,
                "average": "logits (ExpectationOverTransformationWrapper)",
            }
            if self.eot > 1
            else None,
            **extra,
        }


def _init_attack() -> Any:
    """The starting point of the decision-based attacks, sized explicitly."""
    import foolbox as fb

    return fb.attacks.LinearSearchBlendedUniformNoiseAttack(
        directions=_INIT_DIRECTIONS, steps=_INIT_STEPS
    )


FOOLBOX = Translators()


@FOOLBOX.add(
    "fgsm",
    Capability(
        {"linf": "LinfFastGradientAttack", "l2": "L2FastGradientAttack"},
        _UNTARGETED,
        scoped_notes={"targeted": "Foolbox's FGSM raises on targeted criteria"},
        eot_norms=("linf", "l2"),
    ),
)
def _fgsm(job: FoolboxJob) -> AdapterOutput:
    """LinfFastGradientAttack / L2FastGradientAttack: eps -> epsilons, no random start."""
    return job.run({"random_start": False})


def _iterative(job: FoolboxJob) -> AdapterOutput:
    """LinfBasicIterativeAttack, LinfPGD, L2PGD: step_size -> abs_stepsize, random_starts
    -> random_start (Foolbox has one start: a bool)."""
    return job.run(
        {
            "abs_stepsize": job.p["step_size"],
            "steps": job.p["steps"],
            "random_start": bool(job.p.get("random_starts", 0)),
        }
    )


#: What PGD and BIM return (adv-lib and secml-torch return another point: catalogue/gradient.py).
_LAST = {"returned_iterate": "the point after the last step, adversarial or not"}
FOOLBOX.add(
    "bim",
    Capability({"linf": "LinfBasicIterativeAttack"}, _ALL, eot_norms=("linf",)),
    facts=_LAST,
)(_iterative)
FOOLBOX.add(
    "pgd",
    Capability({"linf": "LinfPGD", "l2": "L2PGD"}, _ALL, eot_norms=("linf", "l2")),
    facts=_LAST,
)(_iterative)


@FOOLBOX.add(
    "mifgsm",
    Capability(
        {"linf": "LinfMomentumIterativeFastGradientMethod"},
        _ALL,
        note="momentum accumulates sign(gradient) (the paper: gradient / its L1 norm), "
        "then steps along the sign of the sum",
    ),
    facts={"momentum": "mu*g + sign(grad) (not L1-normalised), step along sign"},
)
def _mifgsm(job: FoolboxJob) -> AdapterOutput:
    """LinfMomentumIterativeFastGradientMethod: step_size -> abs_stepsize, decay -> momentum."""
    return job.run(
        {
            "abs_stepsize": job.p["step_size"],
            "steps": job.p["steps"],
            "momentum": job.p["decay"],
            "random_start": False,
        }
    )


@FOOLBOX.add(
    "deepfool",
    Capability(
        {"l2": "L2DeepFoolAttack"},
        _UNTARGETED,
        note="loss='logits'; overshoots the unclipped running total at every step and adds "
        "1e-4 to each step's distance",
    ),
    facts={
        "step_clip": "none on the running total; x0 + (1 + overshoot) * total clipped",
        "overshoot_applied_to": "total perturbation, at every step",
        "step_offset": "1e-4 added to each step's distance",
        "labels": "given labels",
    },
)
def _deepfool(job: FoolboxJob) -> AdapterOutput:
    """L2DeepFoolAttack with loss='logits', unbounded (epsilons=None)."""
    kwargs = {
        "steps": job.p["steps"],
        "candidates": job.p["candidates"],
        "overshoot": job.p["overshoot"],
        "loss": "logits",
    }
    out = job.run(kwargs, bounded=False)
    out.library_call["classes"] = int(job.adapter.model.logits(job.x[:1]).shape[1])
    return out


@FOOLBOX.add(
    "cw_l2",
    Capability(
        {"l2": "L2CarliniWagnerAttack"},
        _ALL,
        note="returns all-zero images for failed samples: counted as failures; its binary "
        "search multiplies c by 10 until the first success (ART: x2)",
    ),
    facts={
        "optimiser": "Adam (crosses the boundary back and forth, keeps the best adversarial)",
        "binary_search_rule": "c x 10 until the first success, then bisect",
        "start": "the input (tanh space, no frozen pixels)",
        "margin": "max over the other classes' logits",
    },
)
def _cw_l2(job: FoolboxJob) -> AdapterOutput:
    """L2CarliniWagnerAttack: lr -> stepsize, c -> initial_const, no early abort; its
    all-zero images for failed samples become the failure mask."""
    p, x = job.p, job.x
    kwargs = {
        "binary_search_steps": p["binary_search_steps"],
        "steps": p["steps"],
        "stepsize": p["lr"],
        "confidence": p["confidence"],
        "initial_const": p["c"],
        "abort_early": False,
    }
    out = job.run(kwargs, bounded=False)
    # Foolbox's C&W keeps zeros for samples it never made adversarial.
    zeros = (out.x_adv == 0).reshape(len(x), -1).all(1)
    out.backend_failed = zeros & ~(x == 0).reshape(len(x), -1).all(1)
    return out


@FOOLBOX.add(
    "fmn",
    Capability(
        {"l2": "L2FMNAttack", "linf": "LInfFMNAttack", "l1": "L1FMNAttack", "l0": "L0FMNAttack"},
        _ALL,
        fixed={"min_gamma": 0.001},
        scoped_notes={
            "l2": "L2FMNAttack's projection is the identity (factor = min(1, norms / norms)): "
            "its norm bound never binds",
            "l0": "L0FMNAttack's projection keeps the epsilon + 1 largest components",
        },
    ),
    names={"step_size": "max_stepsize", "min_step_size": "min_stepsize", "gamma": "gamma"},
    facts={
        "l2_projection": "none: the identity (bug: factor = min(1, norms / norms))",
        "l0_projection": "keeps the epsilon + 1 largest components (>= the (epsilon+1)-th)",
        "start": "the input (init_attack None, so binary_search_steps is unused)",
        "gradient_normalisation": "L2 for every norm, as the paper",
        "failed_samples": "returned unchanged (the input)",
        "min_gamma": 0.001,  # fixed inside Foolbox (its gamma anneals to 0.001)
    },
)
def _fmn(job: FoolboxJob) -> AdapterOutput:
    """L2FMNAttack / LInfFMNAttack / L1FMNAttack / L0FMNAttack: step_size -> max_stepsize,
    min_step_size -> min_stepsize, gamma -> gamma (min_gamma is Foolbox's fixed 0.001); no
    init_attack (starts from the input); unbounded (epsilons=None)."""
    p = job.p
    kwargs = {
        "steps": p["steps"],
        "max_stepsize": p["step_size"],
        "min_stepsize": p["min_step_size"],
        "gamma": p["gamma"],
        "init_attack": None,
        "binary_search_steps": 10,
    }
    return job.run(kwargs, bounded=False)


@FOOLBOX.add(
    "hopskipjump",
    Capability(
        {"l2": "HopSkipJumpAttack", "linf": "HopSkipJumpAttack"},
        _UNTARGETED,
        note="starts from LinearSearchBlendedUniformNoiseAttack; binary-search threshold "
        "gamma/d^1.5 (ART: 0.01/sqrt(d))",
    ),
    facts={
        "search_threshold": "theta gamma / d^1.5 (L2), gamma / d^2 (Linf), gamma 1: the "
        "binary search's stop width (Linf: times the distance) and the gradient probe, "
        "gamma / d x distance"
    },
)
def _hopskipjump(job: FoolboxJob) -> AdapterOutput:
    """HopSkipJumpAttack: max_evals -> max_gradient_eval_steps, init_evals ->
    initial_gradient_eval_steps, norm -> constraint; unbounded."""
    return job.run(
        {
            "init_attack": _init_attack(),
            "steps": job.p["steps"],
            "initial_gradient_eval_steps": job.p["init_evals"],
            "max_gradient_eval_steps": job.p["max_evals"],
            "stepsize_search": "geometric_progression",
            "gamma": 1.0,
            "tensorboard": False,
            "constraint": job.request.norm,
        },
        bounded=False,
    )


@FOOLBOX.add(
    "boundary",
    Capability(
        {"l2": "BoundaryAttack"},
        _UNTARGETED,
        note="starts from LinearSearchBlendedUniformNoiseAttack; one proposal per step",
    ),
    facts={"proposals_per_step": "1 (orthogonal and toward the original in one)"},
)
def _boundary(job: FoolboxJob) -> AdapterOutput:
    """BoundaryAttack: spherical_step, source_step, steps under their own names; unbounded."""
    return job.run(
        {
            "init_attack": _init_attack(),
            "steps": job.p["steps"],
            "spherical_step": job.p["spherical_step"],
            "source_step": job.p["source_step"],
            "source_step_convergance": 1e-7,
            "step_adaptation": 1.5,
            "tensorboard": False,
            "update_stats_every_k": 10,
        },
        bounded=False,
    )


@FOOLBOX.add(
    "gaussian_noise",
    Capability(
        {"l2": "L2AdditiveGaussianNoiseAttack"},
        _UNTARGETED,
        note="noise rescaled to an exact L2 norm of std * sqrt(d) (the expected norm), then clipped",
    ),
    facts={"noise": "rescaled to an exact L2 norm std*sqrt(d)"},
)
def _gaussian_noise(job: FoolboxJob) -> AdapterOutput:
    """L2AdditiveGaussianNoiseAttack: std -> epsilons = std * sqrt(d), the expected norm."""
    dims = int(np.prod(job.x.shape[1:]))
    epsilons = float(job.p["std"]) * math.sqrt(dims)
    return job.run(
        {}, epsilons=epsilons, translation=f"epsilons = std * sqrt({dims}) = {epsilons:.6g}"
    )


class FoolboxAdapter(Adapter):
    name = "foolbox"
    distribution = "foolbox"
    update_order = "step -> project -> clip"
    translators = FOOLBOX

    names = {
        "step_size": "abs_stepsize",
        "steps": "steps",
        "random_starts": "random_start",
        "decay": "momentum",
        "overshoot": "overshoot",
        "candidates": "candidates",
        "lr": "stepsize",
        "c": "initial_const",
        "confidence": "confidence",
        "binary_search_steps": "binary_search_steps",
        "max_evals": "max_gradient_eval_steps",
        "init_evals": "initial_gradient_eval_steps",
        "spherical_step": "spherical_step",
        "source_step": "source_step",
    }

    _fmodel: Any = None

    loss_convention = "cross-entropy, summed over the batch"
    l2_step_rule = "g / max(||g||_2, 1e-12)"

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> FoolboxJob:
        import foolbox as fb

        if self._fmodel is None:  # built once per adapter, not once per unit
            self._fmodel = fb.PyTorchModel(
                self.model,
                bounds=self.model.input_range,
                device=self.model.device,
                preprocessing=None,
            )
        fmodel = self._fmodel
        eot = int(request.params.get("eot_samples", 1))
        if eot > 1:
            # Foolbox's EOT wrapper averages the logits of `n_steps` forward passes.
            fmodel = fb.models.ExpectationOverTransformationWrapper(fmodel, n_steps=eot)
        return FoolboxJob(self, request, x, y, target, fmodel, eot)
