"""torchattacks backend.

torchattacks clamps inputs to [0, 1] and puts the model in eval mode, so it is
offered only for models whose input range is [0, 1] (normalisation lives in
the model wrapper). Updates: step -> project -> clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import Adapter, AttackRequest, Capability

_ALL_TARGETS = ("untargeted", "class", "least_likely", "random")


class TorchattacksAdapter(Adapter):
    name = "torchattacks"
    distribution = "torchattacks"
    requires_unit_range = True
    update_order = "step -> project -> clip"
    capabilities = {
        "fgsm": Capability(classes={"linf": "FGSM"}, targets=_ALL_TARGETS),
        "pgd": Capability(classes={"linf": "PGD", "l2": "PGDL2"}, targets=_ALL_TARGETS),
    }

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, dict[str, Any]]:
        import torchattacks

        cls_name = self.capabilities[request.attack].classes[request.norm]
        cls = getattr(torchattacks, cls_name)
        kwargs: dict[str, Any] = {"eps": request.eps}
        if request.attack == "pgd":
            kwargs.update(
                alpha=request.params["step_size"],
                steps=request.params["steps"],
                random_start=bool(request.params["random_starts"]),
            )
            if request.norm == "l2":
                kwargs["eps_for_division"] = 1e-10
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
        call = {
            "class": f"torchattacks.{cls_name}",
            "kwargs": kwargs,
            "mode": "targeted_by_label" if request.targeted else "default",
            "model_training": False,
            "update_order": self.update_order,
        }
        return x_adv, call
