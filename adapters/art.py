"""ART (adversarial-robustness-toolbox) backend.

ART steps, then clips to the input range, then projects onto the ε-ball;
Foolbox and torchattacks project before clipping. Identical for L∞, not for L2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from .base import Adapter, AttackRequest, Capability

_ALL_TARGETS = ("untargeted", "class", "least_likely", "random")


class ArtAdapter(Adapter):
    name = "art"
    distribution = "adversarial-robustness-toolbox"
    update_order = "step -> clip -> project"
    capabilities = {
        "fgsm": Capability(
            classes={"linf": "FastGradientMethod", "l2": "FastGradientMethod"},
            targets=_ALL_TARGETS,
        ),
        "pgd": Capability(
            classes={"linf": "ProjectedGradientDescent", "l2": "ProjectedGradientDescent"},
            targets=_ALL_TARGETS,
            max_random_starts=None,
        ),
    }

    _estimator: Any = None
    _estimator_shape: tuple[int, ...] | None = None

    def _classifier(self, x: np.ndarray) -> tuple[Any, dict[str, Any]]:
        from art.estimators.classification import PyTorchClassifier

        n_classes = int(self.model.logits(x[:1]).shape[1])
        args: dict[str, Any] = {
            "loss": "torch.nn.CrossEntropyLoss()",
            "input_shape": tuple(x.shape[1:]),
            "nb_classes": n_classes,
            "clip_values": self.model.input_range,
            "channels_first": True,
            "preprocessing": (0.0, 1.0),
            "device_type": "cpu" if self.model.device.type == "cpu" else "gpu",
        }
        key = tuple(x.shape[1:])
        if self._estimator is None or self._estimator_shape != key:
            # Built once per adapter and input shape, not once per unit.
            self._estimator = PyTorchClassifier(
                model=self.model, **{**args, "loss": nn.CrossEntropyLoss()}
            )
            self._estimator_shape = key
        return self._estimator, {"PyTorchClassifier": args}

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, dict[str, Any]]:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

        estimator, est_args = self._classifier(x)
        norm: float = np.inf if request.norm == "linf" else 2
        common: dict[str, Any] = {
            "norm": norm,
            "eps": request.eps,
            "targeted": request.targeted,
            "batch_size": len(x),
        }
        if request.attack == "fgsm":
            cls: Any = FastGradientMethod
            kwargs = {
                **common,
                "eps_step": request.eps,
                "num_random_init": 0,
                "minimal": False,
                "summary_writer": False,
            }
        elif request.attack == "pgd":
            cls = ProjectedGradientDescent
            kwargs = {
                **common,
                "eps_step": request.params["step_size"],
                "max_iter": request.params["steps"],
                "num_random_init": request.params["random_starts"],
                "decay": None,
                "random_eps": False,
                "summary_writer": False,
                "verbose": False,
            }
        else:  # pragma: no cover - guarded by capabilities
            raise ValueError(request.attack)
        attack = cls(estimator, **kwargs)
        # Always hand labels over: without y, ART attacks its own predictions.
        labels = target if request.targeted else y
        x_adv = attack.generate(x=x, y=labels)
        call = {
            **est_args,
            "class": f"{type(attack).__module__}.{type(attack).__name__}",
            "kwargs": {k: ("inf" if v == np.inf else v) for k, v in kwargs.items()},
            "generate": {"y": "target labels" if request.targeted else "true labels (indices)"},
            "update_order": self.update_order,
        }
        return x_adv, call
