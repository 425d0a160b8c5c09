"""secml-torch backend (SecML-Torch, ``secmlt``), its native implementations.

secml-torch builds an attack object from a creator (``DDN(...)``, ``FMN(...)``) with
``backend="native"`` (its own modular implementation; its "foolbox" and "advlib" backends
would only call those libraries again) and runs it on a ``BasePyTorchClassifier`` over a
``DataLoader``. A targeted attack takes one target class (``y_target``) for the whole batch:
a targeted request runs once per distinct target class, on the samples that have it.
Domain bounds ``lb``, ``ub`` are the model's input range. Each step: optimiser step on the
perturbation, then (at the next iteration) projection onto the Lp ball, then clip to the
domain: step -> project -> clip.
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


@dataclass
class SecmlJob(Job):
    """One request on secml-torch: the inputs and the common steps of a call."""

    adapter: SecmlTorchAdapter

    def run(self, module: str, kwargs: dict[str, Any]) -> AdapterOutput:
        """``secmlt.adv.evasion.<module>.<creator>(**kwargs, y_target=..., lb, ub,
        backend="native", trackers=None)(model, loader)``, one call per target class for a
        targeted request (``y_target`` None otherwise)."""
        import importlib

        from secmlt.models.pytorch.base_pytorch_nn import BasePyTorchClassifier
        from torch.utils.data import DataLoader, TensorDataset

        req, wrapper = self.request, self.adapter.model
        creator = self.adapter.capabilities[req.attack].classes[req.norm]
        cls = getattr(importlib.import_module(f"secmlt.adv.evasion.{module}"), creator)
        lo, hi = wrapper.input_range
        fixed = {"lb": lo, "ub": hi, "backend": "native", "trackers": None}
        model = BasePyTorchClassifier(model=wrapper)
        x_adv = np.empty_like(self.x)
        target = self.target if req.targeted else None
        groups: list[int | None] = [None] if target is None else np.unique(target).tolist()
        for t in groups:
            rows = np.arange(len(self.x)) if target is None else np.flatnonzero(target == t)
            attack = cls(**kwargs, y_target=t, **fixed)
            data = TensorDataset(torch.from_numpy(self.x[rows]), torch.from_numpy(self.y[rows]))
            out = attack(model, DataLoader(data, batch_size=len(rows), shuffle=False))
            x_adv[rows] = torch.cat([b for b, _ in out]).detach().cpu().numpy()
        call: dict[str, Any] = {
            "class": f"secmlt.adv.evasion.{module}.{creator}",
            "kwargs": {**kwargs, **fixed},
            "y_target": "one call per target class" if req.targeted else None,
            "calls": len(groups),
            "batch_size": "every sample (of a target class) in one batch",
            "update_order": self.adapter.update_order,
        }
        return AdapterOutput(x_adv, call)


SECML = Translators()


@SECML.add(
    "ddn",
    Capability(
        {"l2": "DDN"},
        _ALL,
        # DDNNative stores gamma, then its parent's __init__ (which it calls without gamma)
        # overwrites it with the parent's default 0.05: any other value would be ignored.
        fixed={"gamma": 0.05},
        note="projects the perturbation into the ball of radius eps (adv-lib: rescales it "
        "to norm eps exactly); gamma fixed at 0.05 (secml-torch 1.5 drops its gamma "
        "argument); targeted: one call per target class",
    ),
    names={"steps": "num_steps", "gamma": "gamma", "init_norm": "eps_init"},
    facts={
        "norm_projection": "projected into the ball of radius eps (a shorter perturbation is "
        "left alone); eps not capped",
        "step": "SGD on grad / ||grad||_2 of the cross-entropy, lr cosine-annealed 1 -> 0.01",
        "zero_gradient": "left zero",
        "quantisation": "none",
        "failed_samples": "returned as the input",
    },
)
def _ddn(job: SecmlJob) -> AdapterOutput:
    """DDN (DDNNative): steps -> num_steps, init_norm -> eps_init, gamma -> gamma."""
    p = job.p
    return job.run(
        "ddn", {"num_steps": p["steps"], "eps_init": p["init_norm"], "gamma": p["gamma"]}
    )


@SECML.add(
    "fmn",
    Capability(
        {"l2": "FMN", "linf": "FMN", "l1": "FMN", "l0": "FMN"},
        _ALL,
        fixed={"min_gamma": 0.001},
        note="the norm bound stays infinite until the first success; targeted: one call per "
        "target class",
    ),
    names={"steps": "num_steps", "step_size": "step_size", "min_step_size": "min_step_size"},
    facts={
        "l2_projection": "into the ball of the bound (a shorter perturbation is left alone)",
        "l0_projection": "keeps the eps largest components (>= the eps-th)",
        "start": "the input (zero perturbation)",
        "gradient_normalisation": "L2 for every norm, as the paper",
        "bound_before_success": "infinite (best distance, still inf, + distance to boundary)",
        "failed_samples": "returned unchanged (the input)",
    },
)
def _fmn(job: SecmlJob) -> AdapterOutput:
    """FMN (FMNNative): steps -> num_steps, step_size (its max_step_size), min_step_size,
    gamma, norm -> perturbation_model; min_gamma is secml-torch's fixed 0.001."""
    p = job.p
    kwargs = {
        "perturbation_model": job.request.norm,
        "num_steps": p["steps"],
        "step_size": p["step_size"],
        "min_step_size": p["min_step_size"],
        "gamma": p["gamma"],
    }
    return job.run("fmn", kwargs)


#: Recorded as ``start`` only for a run with a random start (a start from the input is
#: what every library does).
_RANDOM_START = (
    "project(x + eps u) onto the eps-ball, u uniform in the unit ball: bug, the start "
    "depends on the image (linf: +eps on every pixel above 2 eps), not on eps u alone"
)
_PGD_FACTS = {
    "returned_iterate": "the highest-loss point among the start and the points after each "
    "of the steps updates (num_steps = steps + 1: secml-torch scores a point before stepping "
    "from it), adversarial or not",
    "failed_samples": "returned at their highest-loss point (not the input)",
}


def _pgd_native(job: SecmlJob, random_start: bool) -> AdapterOutput:
    """PGD (PGDNative): steps -> num_steps = steps + 1 (secml-torch scores each point
    before stepping from it and keeps the highest-loss one, so the point after its last step
    is never looked at: one more step reaches the point the catalogue's last step makes),
    step_size, random_starts -> random_start (one start: a bool), norm -> perturbation_model,
    eps -> epsilon."""
    kwargs = {
        "perturbation_model": job.request.norm,
        "epsilon": job.request.eps,
        "num_steps": job.p["steps"] + 1,
        "step_size": job.p["step_size"],
        "random_start": random_start,
    }
    return job.run("pgd", kwargs)


@SECML.add(
    "pgd",
    Capability(
        {"linf": "PGD", "l2": "PGD"},
        _ALL,
        last_point=False,
        note="returns the highest-loss point it saw, not the last; its random start is "
        "project(x + eps u), which depends on the image; targeted: one call per target class",
    ),
    names={"eps": "epsilon", "step_size": "step_size", "random_starts": "random_start"},
    facts=_PGD_FACTS,
)
def _pgd(job: SecmlJob) -> AdapterOutput:
    """PGD (see _pgd_native)."""
    return _pgd_native(job, bool(job.p["random_starts"]))


@SECML.add(
    "bim",
    Capability(
        {"linf": "PGD"},
        _ALL,
        last_point=False,
        note="PGD without random_start; returns the highest-loss point it saw, not the last; "
        "targeted: one call per target class",
    ),
    names={"eps": "epsilon", "step_size": "step_size"},
    facts=_PGD_FACTS,
)
def _bim(job: SecmlJob) -> AdapterOutput:
    """PGD without random_start (see _pgd_native)."""
    return _pgd_native(job, False)


class SecmlTorchAdapter(Adapter):
    name = "secml-torch"
    distribution = "secml-torch"
    update_order = "step -> project -> clip"
    translators = SECML
    names = {"steps": "num_steps", "gamma": "gamma"}
    loss_convention = "cross-entropy, summed over the batch"
    l2_step_rule = "g / max(||g||_2, 1e-12)"

    def _semantics(self, request: AttackRequest, call: Any) -> dict[str, Any]:
        out = super()._semantics(request, call)
        if call.get("class") == "secmlt.adv.evasion.pgd.PGD":
            out["steps"] = call["kwargs"]["num_steps"] - 1  # one more: the last point scored
        return out

    def facts(self, request: AttackRequest) -> dict[str, Any]:
        out = super().facts(request)
        if request.attack == "pgd" and request.params.get("random_starts"):
            out["start"] = _RANDOM_START
        return out

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> SecmlJob:
        return SecmlJob(self, request, x, y, target)
