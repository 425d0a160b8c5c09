"""torchattacks backend.

torchattacks clamps inputs to [0, 1] and puts the model in eval mode, so it is
offered only for models whose input range is [0, 1] (normalisation lives in
the model wrapper). Updates: step -> project -> clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unified_adv.adapters.base import Adapter, AttackRequest, Capability

_ALL = ("untargeted", "class", "least_likely", "random", "each_other_class")
_UNTARGETED = ("untargeted",)


class TorchattacksAdapter(Adapter):
    name = "torchattacks"
    distribution = "torchattacks"
    requires_unit_range = True
    update_order = "step -> project -> clip"
    capabilities = {
        "fgsm": Capability({"linf": "FGSM"}, _ALL, eot_norms=("linf",)),
        "bim": Capability({"linf": "BIM"}, _ALL, eot_norms=("linf",)),
        "pgd": Capability(
            {"linf": "PGD", "l2": "PGDL2"},
            _ALL,
            eot_norms=("linf",),
            scoped_notes={
                "l2": "PGDL2 divides the gradient of the batch-mean loss by ||g|| + 1e-10: "
                "short steps for confidently classified samples"
            },
        ),
        "mifgsm": Capability(
            {"linf": "MIFGSM"},
            _ALL,
            note="normalises by mean |g| (NaN where the gradient is zero)",
        ),
        "deepfool": Capability(
            {"l2": "DeepFool"},
            _UNTARGETED,
            note="considers every class (candidates is not used); clamps every step to [0, 1] "
            "and applies the overshoot to each step rather than to the total perturbation, so "
            "many of its results stop on the decision boundary (mainly because of the clamp)",
        ),
        "cw_l2": Capability(
            {"l2": "CW"},
            _ALL,
            fixed={"binary_search_steps": 1},
            note="no binary search over c; bug: its margin is wrong for negative logits "
            "(torchattacks issue 184, fix unreleased in 3.5.1); its tanh-space start maps "
            "pixels at exactly 0 or 1 to +-inf, which freezes them",
        ),
        "one_pixel": Capability(
            {"l0": "OnePixel"}, _ALL, note="returns the perturbed image even when it fails"
        ),
        "square": Capability(
            {"linf": "Square", "l2": "Square"}, _ALL, note="loss='margin', seeded explicitly"
        ),
        "gaussian_noise": Capability(
            {"l2": "GN"}, _UNTARGETED, note="x + std * N(0, 1), clamped to [0, 1]"
        ),
    }

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
    attack_facts = {
        # grad/mean|grad| = d * grad/||grad||_1: the same direction as the paper's update.
        "mifgsm": {"momentum": "paper: mu*g + grad/||grad||_1, step along sign"},
        "deepfool": {
            "step_clip": "every step clamped to [0, 1]",
            "overshoot_applied_to": "each step",
            "step_offset": "none",
            "labels": "given labels",
        },
        "cw_l2": {
            "optimiser": "Adam",
            "binary_search_steps": 1,
            "binary_search_rule": "none",
            "start": "atanh(2x - 1): pixels at exactly 0 or 1 frozen (bug)",
            "margin": "max over (1 - onehot) * logits: wrong for negative logits (bug)",
        },
    }

    def _semantics(self, request: AttackRequest, call: Any) -> dict[str, Any]:
        out = super()._semantics(request, call)
        if request.attack == "deepfool":
            out["candidates"] = call["classes"]  # every class, whatever was asked
        return out

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, ...]:
        import torchattacks

        cls_name = self.capabilities[request.attack].classes[request.norm]
        p = request.params
        a = request.attack
        eot = int(p.get("eot_samples", 1))
        if eot > 1:
            # torchattacks' EOTPGD sums the loss gradients of `eot_iter` forward passes per
            # step; FGSM is its one step of size eps, BIM its run without a random start.
            cls_name = "EOTPGD"
        cls = getattr(torchattacks, cls_name)
        kwargs: dict[str, Any]
        if eot > 1:
            kwargs = {
                "eps": request.eps,
                "alpha": request.eps if a == "fgsm" else p["step_size"],
                "steps": 1 if a == "fgsm" else p["steps"],
                "eot_iter": eot,
                "random_start": bool(p.get("random_starts", 0)),
            }
        elif a == "fgsm":
            kwargs = {"eps": request.eps}
        elif a == "bim":
            kwargs = {"eps": request.eps, "alpha": p["step_size"], "steps": p["steps"]}
        elif a == "pgd":
            kwargs = {
                "eps": request.eps,
                "alpha": p["step_size"],
                "steps": p["steps"],
                "random_start": bool(p["random_starts"]),
            }
            if request.norm == "l2":
                kwargs["eps_for_division"] = 1e-10
        elif a == "mifgsm":
            kwargs = {
                "eps": request.eps,
                "alpha": p["step_size"],
                "steps": p["steps"],
                "decay": p["decay"],
            }
        elif a == "deepfool":
            kwargs = {"steps": p["steps"], "overshoot": p["overshoot"]}
        elif a == "cw_l2":
            kwargs = {"c": p["c"], "kappa": p["confidence"], "steps": p["steps"], "lr": p["lr"]}
        elif a == "one_pixel":
            kwargs = {
                "pixels": p["pixels"],
                "steps": p["steps"],
                "popsize": p["popsize"],
                "inf_batch": 128,
            }
        elif a == "square":
            kwargs = {
                "norm": "Linf" if request.norm == "linf" else "L2",
                "eps": request.eps,
                "n_queries": p["queries"],
                "n_restarts": p["restarts"],
                "p_init": p["p_init"],
                "loss": "margin",
                "resc_schedule": True,
                "seed": int(torch.randint(0, 2**31 - 1, (1,)).item()),
                "verbose": False,
            }
        elif a == "gaussian_noise":
            kwargs = {"std": p["std"]}
        else:  # pragma: no cover - guarded by capabilities
            raise ValueError(a)
        attack = cls(self.model, **kwargs)
        attack.set_model_training_mode(
            model_training=False, batchnorm_training=False, dropout_training=False
        )
        device = self.model.device
        xt = torch.from_numpy(x).to(device)
        if request.targeted:
            assert target is not None
            attack.set_mode_targeted_by_label(quiet=True)
            labels = torch.from_numpy(target).to(device)
        else:
            labels = torch.from_numpy(y).to(device)
        x_adv = attack(xt, labels)
        call: dict[str, Any] = {
            "class": f"torchattacks.{cls_name}",
            "kwargs": kwargs,
            "mode": "targeted_by_label" if request.targeted else "default",
            "eot": {"samples": eot, "average": "loss gradients (summed)"} if eot > 1 else None,
            "model_training": False,
            "update_order": self.update_order,
        }
        if a == "deepfool":
            call["classes"] = int(self.model.logits(x[:1]).shape[1])
        return x_adv, call
