"""adv-lib backend (Rony et al.'s Adversarial Library, the library behind AttackBench).

adv-lib's attacks are functions ``attack(model, inputs, labels, **kwargs)`` on a model that
takes inputs in [0, 1] (its DDN and FMN raise otherwise), so it is offered only for models
whose input range is [0, 1] (normalisation lives in the model wrapper). ``labels`` are the
target labels when ``targeted=True``, the true labels otherwise. Its minimal-norm attacks
return the smallest adversarial they saw and the input itself for a sample never fooled.
Updates: step -> project -> clip.
"""

from __future__ import annotations

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
_P = {"linf": float("inf"), "l2": 2.0, "l1": 1.0, "l0": 0.0}


@dataclass
class AdvLibJob(Job):
    """One request on adv-lib: the inputs and the common steps of a call."""

    adapter: AdvLibAdapter

    @property
    def classes(self) -> int:
        return int(self.adapter.model.logits(self.x[:1]).shape[1])

    def run(
        self, kwargs: dict[str, Any], function: str = "", live: dict[str, Any] | None = None
    ) -> AdapterOutput:
        """``adv_lib.attacks.<function>(model, inputs, labels, **kwargs)``: labels are the
        targets for a targeted request. ``kwargs`` are recorded as passed; ``live`` replaces
        some of them by the objects the library needs (a penalty function recorded by name)."""
        import adv_lib.attacks

        req, model = self.request, self.adapter.model
        function = function or self.adapter.capabilities[req.attack].classes[req.norm]
        inputs = torch.from_numpy(self.x).to(model.device)
        labels = self.target if req.targeted else self.y
        assert labels is not None
        x_adv = getattr(adv_lib.attacks, function)(
            model, inputs, torch.from_numpy(labels).to(model.device), **{**kwargs, **(live or {})}
        )
        call: dict[str, Any] = {
            "class": f"adv_lib.attacks.{function}",
            "kwargs": kwargs,
            "labels": "target labels" if req.targeted else "true labels",
            "update_order": self.adapter.update_order,
        }
        eot = int(kwargs.get("eot_iter", 1))
        call["eot"] = (
            {"samples": eot, "average": "loss gradients (mean over eot_iter)"} if eot > 1 else None
        )
        return AdapterOutput(x_adv, call)


ADVLIB = Translators()


@ADVLIB.add(
    "apgd",
    Capability(
        {"linf": "apgd", "l2": "apgd"},
        _ALL,
        max_random_starts=None,
        eot_norms=("linf", "l2"),
        note="a failed sample comes back as the input; loss dlr_targeted runs apgd_targeted "
        "(AutoAttack's APGD-T) on every other class, any misclassification counting",
    ),
    names={"eps": "eps", "steps": "n_iter", "restarts": "n_restarts", "loss": "loss_function"},
    facts={
        "initial_step": "2 * eps, fixed inside adv-lib",
        "checkpoints": "first after max(int(0.22 steps), 1), the period then shrinking by "
        "max(int(0.03 steps), 1) down to max(int(0.06 steps), 1)",
        "momentum": "0.75, fixed",
        "start": "every restart on the ball's surface: linf x + eps t / max|t| (t uniform), "
        "l2 x + eps g / ||g|| (g Gaussian), clamped to [0, 1]",
        "restart_rule": "n_restarts runs, each on the samples not yet adversarial",
        "failed_samples": "returned unchanged (the input)",
        "seed": "torch's global RNG, seeded from the unit seed",
        "targeted_dlr": "apgd_targeted: -(z_y - z_t)/(z_1 - (z_3 + z_4)/2) against each of "
        "the num_targets most likely other classes of the clean input, n_restarts each",
    },
)
def _apgd(job: AdvLibJob) -> AdapterOutput:
    """apgd (apgd_targeted for loss dlr_targeted): steps -> n_iter, restarts -> n_restarts,
    loss -> loss_function ("dlr" for apgd_targeted), eot_samples -> eot_iter, norm -> inf / 2;
    no large-reps schedule (an L1 device), best_loss False (stop at the first success)."""
    p, req = job.p, job.request
    kwargs: dict[str, Any] = {
        "eps": req.eps,
        "norm": _P[req.norm],
        "targeted": req.targeted,
        "n_iter": p["steps"],
        "n_restarts": p["restarts"],
        "loss_function": p["loss"],
        "eot_iter": p["eot_samples"],
        "rho": p["rho"],
        "use_large_reps": False,
        "use_rs": True,
    }
    if p["loss"] != "dlr_targeted":
        return job.run({**kwargs, "best_loss": False})
    if req.targeted:
        raise ValueError(
            "backend 'adv-lib': loss dlr_targeted (apgd_targeted) is an untargeted attack on "
            "every other class; use target: untargeted"
        )
    return job.run(
        {**kwargs, "loss_function": "dlr", "num_targets": job.classes - 1}, "apgd_targeted"
    )


@ADVLIB.add(
    "ddn",
    Capability(
        {"l2": "ddn"},
        _ALL,
        note="rescales the perturbation to norm eps exactly (secml-torch: only projects into "
        "the ball); quantisation switched off (levels=None)",
    ),
    names={"steps": "steps", "gamma": "γ", "init_norm": "init_norm"},
    facts={
        "norm_projection": "rescaled to norm eps exactly (onto the sphere); eps capped at the "
        "largest norm the input box allows",
        "step": "alpha * g / ||g||_2 on the cross-entropy, alpha cosine-annealed 1 -> 0.01",
        "zero_gradient": "replaced by a random Gaussian direction (seeded)",
        "quantisation": "none (levels=None passed)",
        "failed_samples": "returned as the input",
    },
)
def _ddn(job: AdvLibJob) -> AdapterOutput:
    """ddn: steps, gamma -> γ, init_norm; levels=None (no quantisation to 256 levels);
    callback None."""
    p = job.p
    return job.run(
        {
            "targeted": job.request.targeted,
            "steps": p["steps"],
            "γ": p["gamma"],
            "init_norm": p["init_norm"],
            "levels": None,
            "callback": None,
        }
    )


@ADVLIB.add(
    "alma",
    Capability({"l2": "alma"}, _ALL, note="penalty P2, distance l2, no quantisation"),
    names={
        "steps": "num_steps",
        "init_lr_distance": "init_lr_distance",
        "ema_alpha": "α",
        "lr_reduction": "lr_reduction",
    },
    facts={
        "penalty": "P2 (the paper's), on the difference of logits ratio + 1e-4",
        "optimiser": "RMSProp with momentum (smoothing and momentum = alpha)",
        "initial_lr": "line search so the first step moves init_lr_distance in L2 (lr_init unused)",
        "failed_samples": "returned as the input",
    },
)
def _alma(job: AdvLibJob) -> AdapterOutput:
    """alma: steps -> num_steps, init_lr_distance, ema_alpha -> α (α_rms and momentum passed
    equal to it), lr_reduction; the paper's penalty P2 and constants (μ_init 1, ρ_init 1,
    check_steps 10, τ 0.95, γ 1.2, logit_tolerance 1e-4) passed explicitly; distance l2."""
    from adv_lib.utils.lagrangian_penalties import all_penalties

    p = job.p
    kwargs = {
        "penalty": "P2",
        "targeted": job.request.targeted,
        "num_steps": p["steps"],
        "lr_init": 0.1,
        "lr_reduction": p["lr_reduction"],
        "distance": "l2",
        "init_lr_distance": p["init_lr_distance"],
        "μ_init": 1.0,
        "ρ_init": 1.0,
        "check_steps": 10,
        "τ": 0.95,
        "γ": 1.2,
        "α": p["ema_alpha"],
        "α_rms": p["ema_alpha"],
        "momentum": p["ema_alpha"],
        "logit_tolerance": 1e-4,
        "levels": None,
        "callback": None,
    }
    return job.run(kwargs, live={"penalty": all_penalties["P2"]})


@ADVLIB.add(
    "fab",
    Capability(
        {"linf": "fab", "l2": "fab", "l1": "fab"},
        _UNTARGETED,
        max_random_starts=None,
        note="keeps the smallest adversarial over all runs (torchattacks: the first success); "
        "FAB-T (target_classes) without random starts only",
    ),
    names={"steps": "n_iter", "alpha_max": "α_max", "beta": "β"},
    facts={
        "start": "the input; each random start x + min(best, ε) / 2 * t / ||t|| (linf: t "
        "uniform, l1 and l2: Gaussian), clamped to [0, 1]; ε = the box's diameter in the "
        "norm, so min(best, ε) = best",
        "restart_rule": "every run (and every FAB-T target class) on every sample, the best "
        "norm so far passed on: the smallest adversarial over runs is kept",
        "failed_samples": "returned unchanged (the input)",
        "seed": "torch's global RNG, seeded from the unit seed",
        "fab_t_targets": "the 2nd to (k+1)th largest logits of the input, in that order",
    },
)
def _fab(job: AdvLibJob) -> AdapterOutput:
    """fab: steps -> n_iter, alpha_max -> α_max, beta -> β, overshoot -> η = 1 + overshoot;
    random_starts -> restarts = 1 + random_starts (the first run from the input);
    target_classes > 0 -> targeted_restarts with restarts = target_classes (FAB-T); ε (the
    random starts' radius cap) = the input box's diameter in the norm."""
    p, norm = job.p, job.request.norm
    lo, hi = job.adapter.model.input_range
    dims = int(np.prod(job.x.shape[1:]))
    diameter = float(hi - lo) * {"linf": 1.0, "l2": float(np.sqrt(dims)), "l1": float(dims)}[norm]
    targets = min(p["target_classes"], job.classes - 1)
    if targets and p["random_starts"]:
        raise ValueError(
            "backend 'adv-lib': FAB-T (target_classes > 0) cannot add random starts here "
            "(adv-lib cycles them over every other class)"
        )
    kwargs = {
        "norm": _P[norm],
        "n_iter": p["steps"],
        "ε": diameter,
        "α_max": p["alpha_max"],
        "β": p["beta"],
        "η": 1 + p["overshoot"],
        "restarts": targets if targets else 1 + p["random_starts"],
        "targeted_restarts": targets > 0,
        "targeted": False,
    }
    return job.run(kwargs)


@ADVLIB.add(
    "fmn",
    Capability({"l2": "fmn", "linf": "fmn", "l1": "fmn", "l0": "fmn"}, _ALL),
    names={
        "steps": "steps",
        "step_size": "α_init",
        "min_step_size": "α_final",
        "gamma": "γ_init",
        "min_gamma": "γ_final",
    },
    facts={
        "l2_projection": "rescaled to norm eps exactly (onto the sphere), then each "
        "component clamped at 1",
        "l0_projection": "keeps the eps largest components (>= the eps-th)",
        "start": "the input (starting_points None, so binary_search_steps is unused)",
        "gradient_normalisation": "L2 for every norm, as the paper",
        "bound_before_success": "||delta|| + |margin| / ||grad||_dual",
        "failed_samples": "returned unchanged (the input)",
    },
)
def _fmn(job: AdvLibJob) -> AdapterOutput:
    """fmn: steps, step_size -> α_init, min_step_size -> α_final, gamma -> γ_init,
    min_gamma -> γ_final, norm -> 0 / 1 / 2 / inf; no starting points."""
    p = job.p
    kwargs = {
        "norm": _P[job.request.norm],
        "targeted": job.request.targeted,
        "steps": p["steps"],
        "α_init": p["step_size"],
        "α_final": p["min_step_size"],
        "γ_init": p["gamma"],
        "γ_final": p["min_gamma"],
        "starting_points": None,
        "binary_search_steps": 10,
    }
    return job.run(kwargs)


_PGD_FACTS = {
    "random_init": "uniform in the eps-ball, clamped to [0, 1], at each restart (as the "
    "other libraries); none without random starts",
    "returned_iterate": "the last adversarial point among the start and the points after "
    "each of the steps updates (n_steps = steps + 1: adv-lib checks a point before "
    "stepping from it); the input if none was adversarial",
    "restart_rule": "restarts runs, each on the samples not yet adversarial",
    "failed_samples": "returned unchanged (the input)",
}


def _pgd_linf(job: AdvLibJob, random_starts: int) -> AdapterOutput:
    """pgd_linf: steps -> steps + 1 (adv-lib checks each point before stepping from it, so
    the point after its last step is never looked at: one more step reaches the point the
    catalogue's last step makes), step_size -> absolute_step_size, random_starts -> restarts
    with random_init (0: one run from the input), loss "ce"."""
    return job.run(
        {
            "ε": job.request.eps,
            "targeted": job.request.targeted,
            "steps": job.p["steps"] + 1,
            "random_init": random_starts > 0,
            "restarts": max(random_starts, 1),
            "loss_function": "ce",
            "relative_step_size": None,
            "absolute_step_size": job.p["step_size"],
            "callback": None,
        }
    )


@ADVLIB.add(
    "pgd",
    Capability(
        {"linf": "pgd_linf"},
        _ALL,
        max_random_starts=None,
        last_point=False,
        note="returns the last adversarial point it saw (a sample fooled midway and not at "
        "the end still counts), the input where none was",
    ),
    names={"eps": "ε", "step_size": "absolute_step_size", "random_starts": "restarts"},
    facts=_PGD_FACTS,
)
def _pgd(job: AdvLibJob) -> AdapterOutput:
    """pgd_linf (see _pgd_linf)."""
    return _pgd_linf(job, job.p["random_starts"])


@ADVLIB.add(
    "bim",
    Capability(
        {"linf": "pgd_linf"},
        _ALL,
        last_point=False,
        note="pgd_linf without random_init; returns the last adversarial point it saw, the "
        "input where none was",
    ),
    names={"eps": "ε", "step_size": "absolute_step_size"},
    facts=_PGD_FACTS,
)
def _bim(job: AdvLibJob) -> AdapterOutput:
    """pgd_linf without random_init, one run (see _pgd_linf)."""
    return _pgd_linf(job, 0)


@ADVLIB.add(
    "deepfool",
    Capability(
        {"l2": "df"},
        _UNTARGETED,
        note="considers every class (candidates is not used); returns the first adversarial "
        "point, the input for a sample never fooled",
    ),
    names={"overshoot": "overshoot"},
    facts={
        "step_clip": "every step clamped to [0, 1]",
        "overshoot_applied_to": "each step",
        "step_offset": "1e-4 added to each step's distance",
        "labels": "given labels",
        "success_check": "before each step (steps + 1 passed: the point after the catalogue's "
        "last step is checked)",
        "failed_samples": "returned unchanged (the input)",
    },
)
def _deepfool(job: AdvLibJob) -> AdapterOutput:
    """df: steps -> steps + 1 (adv-lib checks a point before stepping from it; Foolbox and
    torchattacks return the point after their last step), overshoot, norm 2; candidates not
    passed (adv-lib linearises every other class); return_unsuccessful False (a failed sample
    comes back as the input)."""
    kwargs = {
        "targeted": False,
        "steps": job.p["steps"] + 1,
        "overshoot": job.p["overshoot"],
        "norm": 2,
        "return_unsuccessful": False,
        "return_targets": False,
    }
    out = job.run(kwargs)
    out.library_call["classes"] = job.classes
    return out


@ADVLIB.add(
    "cw_l2",
    Capability(
        {"l2": "carlini_wagner_l2"},
        _ALL,
        note="its binary search multiplies c by 10 until the first success, then bisects "
        "(with 10 or more search steps the last one runs at the upper bound)",
    ),
    names={
        "lr": "learning_rate",
        "c": "initial_const",
        "steps": "max_iterations",
        "confidence": "confidence",
        "binary_search_steps": "binary_search_steps",
    },
    facts={
        "optimiser": "Adam (beta 0.9, 0.999, eps 1e-8; keeps the smallest adversarial)",
        "binary_search_rule": "c x 10 until the first success, then bisect",
        "start": "the input (tanh space, atanh((2x - 1)(1 - 1e-6)): no frozen pixels)",
        "margin": "max over the other classes' logits",
        "failed_samples": "returned unchanged (the input)",
    },
)
def _cw_l2(job: AdvLibJob) -> AdapterOutput:
    """carlini_wagner_l2: lr -> learning_rate, c -> initial_const, steps -> max_iterations,
    confidence, binary_search_steps; no early abort; Adam's β_1 0.9, β_2 0.999 explicit."""
    p = job.p
    kwargs = {
        "targeted": job.request.targeted,
        "confidence": p["confidence"],
        "learning_rate": p["lr"],
        "initial_const": p["c"],
        "binary_search_steps": p["binary_search_steps"],
        "max_iterations": p["steps"],
        "abort_early": False,
        "β_1": 0.9,
        "β_2": 0.999,
        "callback": None,
    }
    return job.run(kwargs)


class AdvLibAdapter(Adapter):
    name = "adv-lib"
    distribution = "adv-lib"
    requires_unit_range = True
    update_order = "step -> project -> clip"
    loss_convention = "cross-entropy, summed over the batch"
    translators = ADVLIB
    names = {"eps": "eps", "steps": "steps", "eot_samples": "eot_iter", "rho": "rho"}

    def _semantics(self, request: AttackRequest, call: Any) -> dict[str, Any]:
        out = super()._semantics(request, call)
        if call.get("class") == "adv_lib.attacks.apgd_targeted":
            out["loss"] = "dlr_targeted"  # the function is the loss: it runs targeted DLR
        if call.get("class") in ("adv_lib.attacks.pgd_linf", "adv_lib.attacks.df"):
            kwargs = call["kwargs"]
            out["steps"] = kwargs["steps"] - 1  # one more: the last point is checked
            if request.attack == "pgd":
                out["random_starts"] = kwargs["restarts"] if kwargs["random_init"] else 0
        if request.attack == "deepfool":
            out["candidates"] = call["classes"]  # every class, whatever was asked
        if request.attack == "fab":
            kwargs = call["kwargs"]
            fab_t = kwargs["targeted_restarts"]
            out["overshoot"] = round(kwargs["η"] - 1, 12)
            out["random_starts"] = 0 if fab_t else kwargs["restarts"] - 1
            out["target_classes"] = kwargs["restarts"] if fab_t else 0
        return out

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> AdvLibJob:
        return AdvLibJob(self, request, x, y, target)
