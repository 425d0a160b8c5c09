"""Foolbox 3 backend.

Foolbox returns raw and clipped adversarials; the clipped ones (projected to ε)
are the result. Its FGSM refuses target labels. Updates: step -> project -> clip.
Minimisation attacks (DeepFool, C&W, HopSkipJump, Boundary) run with epsilons=None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from unified_adv.adapters.base import Adapter, AttackRequest, Capability

_ALL = ("untargeted", "class", "least_likely", "random", "each_other_class")
_UNTARGETED = ("untargeted",)
_INIT_DIRECTIONS, _INIT_STEPS = 1000, 50
_INIT_ATTACK = {
    "class": "LinearSearchBlendedUniformNoiseAttack",
    "directions": _INIT_DIRECTIONS,
    "steps": _INIT_STEPS,
}


class FoolboxAdapter(Adapter):
    name = "foolbox"
    distribution = "foolbox"
    update_order = "step -> project -> clip"
    capabilities = {
        "fgsm": Capability(
            {"linf": "LinfFastGradientAttack", "l2": "L2FastGradientAttack"},
            _UNTARGETED,
            scoped_notes={"targeted": "Foolbox's FGSM raises on targeted criteria"},
            eot_norms=("linf", "l2"),
        ),
        "bim": Capability({"linf": "LinfBasicIterativeAttack"}, _ALL, eot_norms=("linf",)),
        "pgd": Capability({"linf": "LinfPGD", "l2": "L2PGD"}, _ALL, eot_norms=("linf", "l2")),
        "mifgsm": Capability(
            {"linf": "LinfMomentumIterativeFastGradientMethod"},
            _ALL,
            note="momentum accumulates sign(gradient) (the paper: gradient / its L1 norm), "
            "then steps along the sign of the sum",
        ),
        "deepfool": Capability(
            {"l2": "L2DeepFoolAttack"},
            _UNTARGETED,
            note="loss='logits'; overshoots the unclipped running total at every step and adds "
            "1e-4 to each step's distance",
        ),
        "cw_l2": Capability(
            {"l2": "L2CarliniWagnerAttack"},
            _ALL,
            note="returns all-zero images for failed samples: counted as failures; its binary "
            "search multiplies c by 10 until the first success (ART: x2)",
        ),
        "hopskipjump": Capability(
            {"l2": "HopSkipJumpAttack", "linf": "HopSkipJumpAttack"},
            _UNTARGETED,
            note="starts from LinearSearchBlendedUniformNoiseAttack; binary-search threshold "
            "gamma/d^1.5 (ART: 0.01/sqrt(d))",
        ),
        "boundary": Capability(
            {"l2": "BoundaryAttack"},
            _UNTARGETED,
            note="starts from LinearSearchBlendedUniformNoiseAttack; one proposal per step",
        ),
        "gaussian_noise": Capability(
            {"l2": "L2AdditiveGaussianNoiseAttack"},
            _UNTARGETED,
            note="noise rescaled to an exact L2 norm of std * sqrt(d) (the expected norm), then clipped",
        ),
    }

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
    attack_facts = {
        "mifgsm": {"momentum": "mu*g + sign(grad) (not L1-normalised), step along sign"},
        "deepfool": {
            "step_clip": "none on the running total; x0 + (1 + overshoot) * total clipped",
            "overshoot_applied_to": "total perturbation, at every step",
            "step_offset": "1e-4 added to each step's distance",
            "labels": "given labels",
        },
        "cw_l2": {
            "optimiser": "Adam (crosses the boundary back and forth, keeps the best adversarial)",
            "binary_search_rule": "c x 10 until the first success, then bisect",
            "start": "the input (tanh space, no frozen pixels)",
            "margin": "max over the other classes' logits",
        },
        "hopskipjump": {
            "search_threshold": "theta gamma / d^1.5 (L2), gamma / d^2 (Linf), gamma 1: the "
            "binary search's stop width (Linf: times the distance) and the gradient probe, "
            "gamma / d x distance"
        },
        "boundary": {"proposals_per_step": "1 (orthogonal and toward the original in one)"},
        "gaussian_noise": {"noise": "rescaled to an exact L2 norm std*sqrt(d)"},
    }

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, ...]:
        import foolbox as fb

        device = self.model.device
        if self._fmodel is None:  # built once per adapter, not once per unit
            self._fmodel = fb.PyTorchModel(
                self.model, bounds=self.model.input_range, device=device, preprocessing=None
            )
        fmodel = self._fmodel
        eot = int(request.params.get("eot_samples", 1))
        if eot > 1:
            # Foolbox's EOT wrapper averages the logits of `n_steps` forward passes.
            fmodel = fb.models.ExpectationOverTransformationWrapper(fmodel, n_steps=eot)
        cls_name = self.capabilities[request.attack].classes[request.norm]
        cls = getattr(fb.attacks, cls_name)
        p = request.params
        a = request.attack
        epsilons: float | None = request.eps
        extra: dict[str, Any] = {}
        if a == "fgsm":
            kwargs: dict[str, Any] = {"random_start": False}
        elif a in ("bim", "pgd"):
            kwargs = {
                "abs_stepsize": p["step_size"],
                "steps": p["steps"],
                "random_start": bool(p.get("random_starts", 0)),
            }
        elif a == "mifgsm":
            kwargs = {
                "abs_stepsize": p["step_size"],
                "steps": p["steps"],
                "momentum": p["decay"],
                "random_start": False,
            }
        elif a == "deepfool":
            kwargs = {
                "steps": p["steps"],
                "candidates": p["candidates"],
                "overshoot": p["overshoot"],
                "loss": "logits",
            }
        elif a == "cw_l2":
            kwargs = {
                "binary_search_steps": p["binary_search_steps"],
                "steps": p["steps"],
                "stepsize": p["lr"],
                "confidence": p["confidence"],
                "initial_const": p["c"],
                "abort_early": False,
            }
        elif a in ("hopskipjump", "boundary"):
            init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(
                directions=_INIT_DIRECTIONS, steps=_INIT_STEPS
            )
            if a == "hopskipjump":
                kwargs = {
                    "init_attack": init,
                    "steps": p["steps"],
                    "initial_gradient_eval_steps": p["init_evals"],
                    "max_gradient_eval_steps": p["max_evals"],
                    "stepsize_search": "geometric_progression",
                    "gamma": 1.0,
                    "tensorboard": False,
                    "constraint": request.norm,
                }
            else:
                kwargs = {
                    "init_attack": init,
                    "steps": p["steps"],
                    "spherical_step": p["spherical_step"],
                    "source_step": p["source_step"],
                    "source_step_convergance": 1e-7,
                    "step_adaptation": 1.5,
                    "tensorboard": False,
                    "update_stats_every_k": 10,
                }
        elif a == "gaussian_noise":
            kwargs = {}
            dims = int(np.prod(x.shape[1:]))
            epsilons = float(p["std"]) * math.sqrt(dims)
            extra["translation"] = f"epsilons = std * sqrt({dims}) = {epsilons:.6g}"
        else:  # pragma: no cover - guarded by capabilities
            raise ValueError(a)
        if a not in ("fgsm", "bim", "pgd", "mifgsm", "gaussian_noise"):
            epsilons = None  # minimisation attacks: unbounded
        attack = cls(**kwargs)
        xt = torch.from_numpy(x).to(device)
        if request.targeted:
            assert target is not None
            criterion: Any = fb.criteria.TargetedMisclassification(
                torch.from_numpy(target).to(device)
            )
        else:
            criterion = fb.criteria.Misclassification(torch.from_numpy(y).to(device))
        _raw, clipped, _success = attack(fmodel, xt, criterion, epsilons=epsilons)
        out = clipped.detach().cpu().numpy()
        failed = None
        if a == "cw_l2":
            # Foolbox's C&W keeps zeros for samples it never made adversarial.
            failed = (out == 0).reshape(len(x), -1).all(1) & ~(x == 0).reshape(len(x), -1).all(1)
        recorded = {k: (type(v).__name__ if k == "init_attack" else v) for k, v in kwargs.items()}
        if "init_attack" in kwargs:
            recorded["init_attack"] = dict(_INIT_ATTACK)
        call = {
            "PyTorchModel": {
                "bounds": self.model.input_range,
                "preprocessing": None,
                "device": str(device),
            },
            "class": f"foolbox.attacks.{cls_name}",
            "kwargs": recorded,
            "call": {
                "criterion": type(criterion).__name__,
                "epsilons": epsilons,
                "result": "clipped",
            },
            "update_order": self.update_order,
            "eot": {
                "samples": eot,
                "average": "logits (ExpectationOverTransformationWrapper)",
            }
            if eot > 1
            else None,
            **extra,
        }
        if a == "deepfool":
            call["classes"] = int(self.model.logits(x[:1]).shape[1])
        return out, call, failed
