"""torchattacks backend.

torchattacks clamps inputs to [0, 1] and puts the model in eval mode, so it is
offered only for models whose input range is [0, 1] (normalisation lives in
the model wrapper). Updates: step -> project -> clip.
"""

from __future__ import annotations

from collections.abc import Callable
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
from unified_adv.catalogue.ensemble import RAND_EOT

_ALL = ("untargeted", "class", "least_likely", "random", "each_other_class")
_UNTARGETED = ("untargeted",)
#: What PGD and BIM return (adv-lib and secml-torch return another point: catalogue/gradient.py).
_LAST = "the point after the last step, adversarial or not"


@dataclass
class TorchattacksJob(Job):
    """One request on torchattacks: the inputs and the common steps of a call."""

    adapter: TorchattacksAdapter

    @property
    def eot(self) -> int:
        return int(self.p.get("eot_samples", 1))

    def run(
        self,
        kwargs: dict[str, Any],
        cls_name: str = "",
        configure: Callable[[Any], dict[str, Any]] | None = None,
        **extra: Any,
    ) -> AdapterOutput:
        """``torchattacks.<cls_name>(model, **kwargs)(x, labels)`` in eval mode, targeted by
        label when asked (the class defaults to the capability's class for the norm).
        ``configure(attack)``, where given, adjusts the built attack before the call and
        returns what it did, recorded beside the call."""
        import torchattacks

        req, model = self.request, self.adapter.model
        cls_name = cls_name or self.adapter.capabilities[req.attack].classes[req.norm]
        attack = getattr(torchattacks, cls_name)(model, **kwargs)
        if configure is not None:
            extra = {**extra, **configure(attack)}
        attack.set_model_training_mode(
            model_training=False, batchnorm_training=False, dropout_training=False
        )
        xt = torch.from_numpy(self.x).to(model.device)
        if req.targeted:
            assert self.target is not None
            attack.set_mode_targeted_by_label(quiet=True)
            labels = torch.from_numpy(self.target).to(model.device)
        else:
            labels = torch.from_numpy(self.y).to(model.device)
        x_adv = attack(xt, labels)
        eot = self.eot
        call: dict[str, Any] = {
            "class": f"torchattacks.{cls_name}",
            "kwargs": kwargs,
            "mode": "targeted_by_label" if req.targeted else "default",
            "eot": {"samples": eot, "average": "loss gradients (summed)"} if eot > 1 else None,
            "model_training": False,
            "update_order": self.adapter.update_order,
            **extra,
        }
        return AdapterOutput(x_adv, call)


def _eot_pgd(job: TorchattacksJob, step: float, steps: int) -> AdapterOutput:
    """EOTPGD for ``eot_samples`` > 1: it sums the loss gradients of ``eot_iter`` forward
    passes per step; FGSM is its one step of size eps, BIM its run without a random start."""
    kwargs = {
        "eps": job.request.eps,
        "alpha": step,
        "steps": steps,
        "eot_iter": job.eot,
        "random_start": bool(job.p.get("random_starts", 0)),
    }
    return job.run(kwargs, "EOTPGD")


TORCHATTACKS = Translators()


@TORCHATTACKS.add("fgsm", Capability({"linf": "FGSM"}, _ALL, eot_norms=("linf",)))
def _fgsm(job: TorchattacksJob) -> AdapterOutput:
    """FGSM (EOTPGD with one step of size eps when eot_samples > 1)."""
    eps = job.request.eps
    assert eps is not None
    if job.eot > 1:
        return _eot_pgd(job, eps, 1)
    return job.run({"eps": eps})


@TORCHATTACKS.add(
    "bim", Capability({"linf": "BIM"}, _ALL, eot_norms=("linf",)), facts={"returned_iterate": _LAST}
)
def _bim(job: TorchattacksJob) -> AdapterOutput:
    """BIM: step_size -> alpha (EOTPGD without a random start when eot_samples > 1)."""
    if job.eot > 1:
        return _eot_pgd(job, job.p["step_size"], job.p["steps"])
    return job.run({"eps": job.request.eps, "alpha": job.p["step_size"], "steps": job.p["steps"]})


@TORCHATTACKS.add(
    "pgd",
    Capability(
        {"linf": "PGD", "l2": "PGDL2"},
        _ALL,
        eot_norms=("linf",),
        scoped_notes={
            "l2": "PGDL2 divides the gradient of the batch-mean loss by ||g|| + 1e-10: "
            "short steps for confidently classified samples"
        },
    ),
    facts={"returned_iterate": _LAST},
)
def _pgd(job: TorchattacksJob) -> AdapterOutput:
    """PGD / PGDL2: step_size -> alpha, random_starts -> random_start (one start: a bool);
    PGDL2's eps_for_division set explicitly (EOTPGD when eot_samples > 1)."""
    p = job.p
    if job.eot > 1:
        return _eot_pgd(job, p["step_size"], p["steps"])
    kwargs: dict[str, Any] = {
        "eps": job.request.eps,
        "alpha": p["step_size"],
        "steps": p["steps"],
        "random_start": bool(p["random_starts"]),
    }
    if job.request.norm == "l2":
        kwargs["eps_for_division"] = 1e-10
    return job.run(kwargs)


@TORCHATTACKS.add(
    "mifgsm",
    Capability(
        {"linf": "MIFGSM"},
        _ALL,
        note="normalises by mean |g| (NaN where the gradient is zero)",
    ),
    # grad/mean|grad| = d * grad/||grad||_1: the same direction as the paper's update.
    facts={"momentum": "paper: mu*g + grad/||grad||_1, step along sign"},
)
def _mifgsm(job: TorchattacksJob) -> AdapterOutput:
    """MIFGSM: step_size -> alpha, decay -> decay."""
    p = job.p
    return job.run(
        {"eps": job.request.eps, "alpha": p["step_size"], "steps": p["steps"], "decay": p["decay"]}
    )


@TORCHATTACKS.add(
    "deepfool",
    Capability(
        {"l2": "DeepFool"},
        _UNTARGETED,
        note="considers every class (candidates is not used); clamps every step to [0, 1] "
        "and applies the overshoot to each step rather than to the total perturbation, so "
        "many of its results stop on the decision boundary (mainly because of the clamp)",
    ),
    facts={
        "step_clip": "every step clamped to [0, 1]",
        "overshoot_applied_to": "each step",
        "step_offset": "none",
        "labels": "given labels",
    },
)
def _deepfool(job: TorchattacksJob) -> AdapterOutput:
    """DeepFool: steps, overshoot; candidates not passed (it considers every class)."""
    out = job.run({"steps": job.p["steps"], "overshoot": job.p["overshoot"]})
    out.library_call["classes"] = int(job.adapter.model.logits(job.x[:1]).shape[1])
    return out


@TORCHATTACKS.add(
    "cw_l2",
    Capability(
        {"l2": "CW"},
        _ALL,
        fixed={"binary_search_steps": 1},
        note="no binary search over c; bug: its margin is wrong for negative logits "
        "(torchattacks issue 184, fix unreleased in 3.5.1); its tanh-space start maps "
        "pixels at exactly 0 or 1 to +-inf, which freezes them",
    ),
    facts={
        "optimiser": "Adam",
        "binary_search_steps": 1,
        "binary_search_rule": "none",
        "start": "atanh(2x - 1): pixels at exactly 0 or 1 frozen (bug)",
        "margin": "max over (1 - onehot) * logits: wrong for negative logits (bug)",
    },
)
def _cw_l2(job: TorchattacksJob) -> AdapterOutput:
    """CW: confidence -> kappa; no binary search (binary_search_steps fixed at 1)."""
    p = job.p
    return job.run({"c": p["c"], "kappa": p["confidence"], "steps": p["steps"], "lr": p["lr"]})


@TORCHATTACKS.add(
    "one_pixel",
    Capability({"l0": "OnePixel"}, _ALL, note="returns the perturbed image even when it fails"),
)
def _one_pixel(job: TorchattacksJob) -> AdapterOutput:
    """OnePixel: pixels, steps, popsize under their own names; inf_batch 128."""
    p = job.p
    return job.run(
        {"pixels": p["pixels"], "steps": p["steps"], "popsize": p["popsize"], "inf_batch": 128}
    )


@TORCHATTACKS.add(
    "square",
    Capability({"linf": "Square", "l2": "Square"}, _ALL, note="loss='margin', seeded explicitly"),
)
def _square(job: TorchattacksJob) -> AdapterOutput:
    """Square: queries -> n_queries, restarts -> n_restarts, norm "Linf"/"L2"; its own
    ``seed`` drawn from the unit-seeded torch RNG."""
    p = job.p
    kwargs = {
        "norm": "Linf" if job.request.norm == "linf" else "L2",
        "eps": job.request.eps,
        "n_queries": p["queries"],
        "n_restarts": p["restarts"],
        "p_init": p["p_init"],
        "loss": "margin",
        "resc_schedule": True,
        "seed": int(torch.randint(0, 2**31 - 1, (1,)).item()),
        "verbose": False,
    }
    return job.run(kwargs)


@TORCHATTACKS.add(
    "apgd",
    Capability(
        {"linf": "APGD", "l2": "APGD"},
        _UNTARGETED,
        max_random_starts=None,
        eot_norms=("linf", "l2"),
        note="its own seed argument reseeds torch's global RNG (unified-adv passes one drawn "
        "from the unit seed); a failed sample comes back as the input; loss dlr_targeted runs "
        "APGDT (AutoAttack's APGD-T) on every other class, any misclassification counting",
    ),
    names={"restarts": "n_restarts", "loss": "loss", "rho": "rho"},
    facts={
        "initial_step": "2 * eps, fixed inside torchattacks",
        "checkpoints": "first after int(0.22 steps), the period then shrinking by "
        "int(0.03 steps) down to int(0.06 steps)",
        "momentum": "0.75, fixed",
        "start": "every restart on the ball's surface: linf x + eps t / max|t| (t uniform), "
        "l2 x + eps g / ||g|| (g Gaussian)",
        "restart_rule": "n_restarts runs, each on the samples not yet adversarial",
        "failed_samples": "returned unchanged (the input)",
        "seed": "its own seed argument: torch.manual_seed(seed) inside the attack",
        "targeted_dlr": "APGDT: -(z_y - z_t)/(z_1 - (z_3 + z_4)/2) against each of the top "
        "n_classes - 1 other classes, n_restarts each",
    },
)
def _apgd(job: TorchattacksJob) -> AdapterOutput:
    """APGD (APGDT for loss dlr_targeted): restarts -> n_restarts, eot_samples -> eot_iter,
    norm "Linf"/"L2"; its own ``seed`` drawn from the unit-seeded torch RNG; APGDT gets
    n_classes = the model's class count, so every other class is a target."""
    p = job.p
    kwargs: dict[str, Any] = {
        "norm": "Linf" if job.request.norm == "linf" else "L2",
        "eps": job.request.eps,
        "steps": p["steps"],
        "n_restarts": p["restarts"],
        "seed": int(torch.randint(0, 2**31 - 1, (1,)).item()),
        "eot_iter": p["eot_samples"],
        "rho": p["rho"],
        "verbose": False,
    }
    if p["loss"] == "dlr_targeted":
        kwargs["n_classes"] = int(job.adapter.model.logits(job.x[:1]).shape[1])
        out = job.run(kwargs, "APGDT")
    else:
        out = job.run({**kwargs, "loss": p["loss"]})
    if out.library_call["eot"]:
        out.library_call["eot"]["average"] = "loss gradients (mean over eot_iter)"
    return out


#: torchattacks' AutoAttack: its components per version, in the order MultiAttack runs them.
_TA_AA_COMPONENTS = {
    "standard": "APGD (ce); APGDT (targeted DLR, against the top n_classes - 1 other classes); "
    "FAB (multi_targeted, the same targets); Square (margin loss)",
    "rand": "APGD (ce, eot_iter 20); APGD (dlr, eot_iter 20)",
}


def _configure_autoattack(job: TorchattacksJob) -> Callable[[Any], dict[str, Any]]:
    """Sets what torchattacks' AutoAttack does not pass to its components (their steps:
    their own default is 10, the original's 100) or passes fixed (n_restarts 1, Square's
    n_queries 5000 and p_init), and reads every value back from the built components."""
    p = job.p

    def configure(attack: Any) -> dict[str, Any]:
        components = attack._autoattack.attacks
        for c in components:
            c.n_restarts = p["restarts"]
            if hasattr(c, "steps"):
                c.steps = p["steps"]
            if type(c).__name__ == "Square":
                c.n_queries, c.p_init = p["queries"], p["p_init"]
        gradient = [c for c in components if hasattr(c, "steps")]
        squares = [c for c in components if type(c).__name__ == "Square"]
        read_back: dict[str, Any] = {
            "version": attack.version,
            "steps": sorted({int(c.steps) for c in gradient}),
            "restarts": sorted({int(c.n_restarts) for c in components}),
        }
        read_back = {
            k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in read_back.items()
        }
        if squares:
            read_back["queries"] = int(squares[0].n_queries)
            read_back["p_init"] = float(squares[0].p_init)
        return {
            "set_after_construction": {
                type(c).__name__: {
                    k: getattr(c, k)
                    for k in ("steps", "n_restarts", "n_queries", "p_init")
                    if hasattr(c, k)
                }
                for c in components
            },
            "read_back": read_back,
        }

    return configure


@TORCHATTACKS.add(
    "autoattack",
    Capability(
        {"linf": "AutoAttack", "l2": "AutoAttack"},
        _UNTARGETED,
        max_random_starts=None,
        note="AutoAttack passes its components no steps (their default is 10, the original's "
        "100): unified-adv sets steps, n_restarts and Square's budget on the built "
        "components; every component gets the same seed",
    ),
    facts={
        "component_steps": "not passed by AutoAttack (component default 10); set on the "
        "built components by unified-adv",
        "samples_per_component": "only the samples not yet fooled (MultiAttack), each from "
        "the input",
        "targeted_success": "any misclassification (APGDT, FAB-T: against the true label)",
        "target_order": "the top-ranked other classes first (n_classes - 1 of them)",
        "initially_misclassified": "attacked like the others",
        "success_check": "prediction changed (MultiAttack; no norm check)",
        "seed": "AutoAttack's seed, the same for every component (None would be the clock)",
    },
)
def _autoattack(job: TorchattacksJob) -> AdapterOutput:
    """AutoAttack(model, norm, eps, version, n_classes = the model's class count, seed drawn
    from the unit-seeded torch RNG, verbose=False); then steps, restarts -> n_restarts,
    queries -> Square's n_queries and p_init set on the built components (see
    ``_configure_autoattack``); version rand: EOT 20 inside its APGDs."""
    p = job.p
    kwargs = {
        "norm": "Linf" if job.request.norm == "linf" else "L2",
        "eps": job.request.eps,
        "version": p["version"],
        "n_classes": int(job.adapter.model.logits(job.x[:1]).shape[1]),
        "seed": int(torch.randint(0, 2**31 - 1, (1,)).item()),
        "verbose": False,
    }
    out = job.run(kwargs, configure=_configure_autoattack(job))
    read_back = out.library_call["read_back"]
    read_back["components"] = _TA_AA_COMPONENTS[p["version"]]
    if p["version"] == "rand":
        eot = {"samples": RAND_EOT, "average": "loss gradients (mean over eot_iter)"}
        out.library_call["eot"] = eot
        read_back["eot_samples"], read_back["eot_average"] = RAND_EOT, eot["average"]
    return out


@TORCHATTACKS.add(
    "fab",
    Capability(
        {"linf": "FAB", "l2": "FAB"},
        _UNTARGETED,
        max_random_starts=None,
        note="its eps discards adversarials beyond it and sizes the random starts (half of "
        "it): unified-adv passes the input box's diameter in the norm, so nothing is "
        "discarded; its own seed argument reseeds torch's global RNG (drawn from the unit "
        "seed); no L1 (FAB.perturb leaves its distance undefined for L1: UnboundLocalError) "
        "and no target labels (targeted mode compares with the target as if it were the label)",
    ),
    facts={
        "start": "the input; each random start x + min(best, eps) / 2 * t / ||t|| (linf: t "
        "uniform, l2: Gaussian), clamped to [0, 1]",
        "restart_rule": "each run (and each FAB-T target class) only on the samples not yet "
        "fooled: the first success is kept, not the smallest over runs",
        "failed_samples": "returned unchanged (the input)",
        "seed": "its own seed argument: torch.manual_seed(seed) inside the attack",
        "fab_t_targets": "the 2nd to (n_classes)th largest logits of the input, in that order",
    },
    names={"alpha_max": "alpha_max", "beta": "beta"},
)
def _fab(job: TorchattacksJob) -> AdapterOutput:
    """FAB: steps, alpha_max, beta under their own names; overshoot -> eta = 1 + overshoot;
    random_starts -> n_restarts
    = 1 + random_starts; target_classes > 0 -> multi_targeted with n_classes =
    target_classes + 1 (FAB-T; at most every other class); eps = the box's diameter in the
    norm (no bound); norm "Linf"/"L2"; its own ``seed`` drawn from the unit-seeded torch RNG."""
    p, norm, model = job.p, job.request.norm, job.adapter.model
    dims = int(np.prod(job.x.shape[1:]))
    lo, hi = model.input_range
    targets = min(p["target_classes"], int(model.logits(job.x[:1]).shape[1]) - 1)
    kwargs = {
        "norm": "Linf" if norm == "linf" else "L2",
        "eps": float(hi - lo) * (1.0 if norm == "linf" else float(np.sqrt(dims))),
        "steps": p["steps"],
        "n_restarts": 1 + p["random_starts"],
        "alpha_max": p["alpha_max"],
        "eta": 1 + p["overshoot"],
        "beta": p["beta"],
        "verbose": False,
        "seed": int(torch.randint(0, 2**31 - 1, (1,)).item()),
        "multi_targeted": targets > 0,
        "n_classes": targets + 1,
    }
    return job.run(kwargs)


@TORCHATTACKS.add(
    "gaussian_noise",
    Capability({"l2": "GN"}, _UNTARGETED, note="x + std * N(0, 1), clamped to [0, 1]"),
)
def _gaussian_noise(job: TorchattacksJob) -> AdapterOutput:
    """GN: std -> std."""
    return job.run({"std": job.p["std"]})


class TorchattacksAdapter(Adapter):
    name = "torchattacks"
    distribution = "torchattacks"
    requires_unit_range = True
    update_order = "step -> project -> clip"
    translators = TORCHATTACKS

    names = {
        "eps": "eps",
        "step_size": "alpha",
        "steps": "steps",
        "random_starts": "random_start",
        "eot_samples": "eot_iter",
        "decay": "decay",
        "overshoot": "overshoot",
        "lr": "lr",
        "c": "c",
        "confidence": "kappa",
        "pixels": "pixels",
        "popsize": "popsize",
        "queries": "n_queries",
        "restarts": "n_restarts",
        "p_init": "p_init",
        "std": "std",
    }

    loss_convention = "cross-entropy, mean over the batch"
    l2_step_rule = "g / (||g||_2 + 1e-10)"

    def _semantics(self, request: AttackRequest, call: Any) -> dict[str, Any]:
        out = super()._semantics(request, call)
        if request.attack == "deepfool":
            out["candidates"] = call["classes"]  # every class, whatever was asked
        if call.get("class") == "torchattacks.APGDT":
            out["loss"] = "dlr_targeted"  # the class is the loss: APGDT takes no loss argument
        if request.attack == "fab":
            kwargs = call["kwargs"]
            out.pop("eps")  # the box's diameter: no bound (a minimal attack takes no eps)
            out["random_starts"] = kwargs["n_restarts"] - 1
            out["overshoot"] = round(kwargs["eta"] - 1, 12)
            out["target_classes"] = kwargs["n_classes"] - 1 if kwargs["multi_targeted"] else 0
        return out

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> TorchattacksJob:
        return TorchattacksJob(self, request, x, y, target)
