"""Foolbox 3 backend.

Foolbox returns raw and clipped adversarials; the clipped ones (projected to ε)
are the result. Its FGSM refuses target labels. Updates: step -> project -> clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import Adapter, AttackRequest, Capability

_ALL_TARGETS = ("untargeted", "class", "least_likely", "random")


class FoolboxAdapter(Adapter):
    name = "foolbox"
    distribution = "foolbox"
    update_order = "step -> project -> clip"
    capabilities = {
        "fgsm": Capability(
            classes={"linf": "LinfFastGradientAttack", "l2": "L2FastGradientAttack"},
            targets=("untargeted",),
            note="Foolbox's FGSM raises on targeted criteria",
        ),
        "pgd": Capability(classes={"linf": "LinfPGD", "l2": "L2PGD"}, targets=_ALL_TARGETS),
    }

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, dict[str, Any]]:
        import foolbox as fb

        device = self.model.device
        fmodel = fb.PyTorchModel(
            self.model, bounds=self.model.input_range, device=device, preprocessing=None
        )
        cls_name = self.capabilities[request.attack].classes[request.norm]
        cls = getattr(fb.attacks, cls_name)
        if request.attack == "fgsm":
            kwargs: dict[str, Any] = {"random_start": False}
        else:
            kwargs = {
                "abs_stepsize": request.params["step_size"],
                "steps": request.params["steps"],
                "random_start": bool(request.params["random_starts"]),
            }
        attack = cls(**kwargs)
        xt = torch.from_numpy(x).to(device)
        if request.targeted:
            assert target is not None
            criterion: Any = fb.criteria.TargetedMisclassification(
                torch.from_numpy(target).to(device)
            )
        else:
            criterion = fb.criteria.Misclassification(torch.from_numpy(y).to(device))
        _raw, clipped, _success = attack(fmodel, xt, criterion, epsilons=request.eps)
        call = {
            "PyTorchModel": {
                "bounds": self.model.input_range,
                "preprocessing": None,
                "device": str(device),
            },
            "class": f"foolbox.attacks.{cls_name}",
            "kwargs": kwargs,
            "call": {
                "criterion": type(criterion).__name__,
                "epsilons": request.eps,
                "result": "clipped",
            },
            "update_order": self.update_order,
        }
        return clipped, call
