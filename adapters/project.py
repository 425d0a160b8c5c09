"""The project's own attacks, as a fourth backend: L-BFGS, which no backend library has.

Registered like the libraries so that it flows through the same units, results,
cross-check and report; its capability note says plainly that it is project code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unified_adv.adapters.base import (
    Adapter,
    AdapterOutput,
    AttackRequest,
    Capability,
    Translators,
    library_version,
)
from unified_adv.adapters.lbfgs import lbfgs_attack

_TARGETED = ("class", "least_likely", "random", "each_other_class")


@dataclass
class ProjectJob:
    adapter: ProjectAdapter
    request: AttackRequest
    x: np.ndarray
    target: np.ndarray | None


PROJECT = Translators()


@PROJECT.add(
    "lbfgs",
    Capability(
        {"l2": "unified_adv.adapters.lbfgs.lbfgs_attack"},
        _TARGETED,
        note="project code (scipy.optimize L-BFGS-B with a line search on c), not a "
        "backend library: none of ART, Foolbox, torchattacks has L-BFGS",
    ),
    facts={
        "objective": "c * sqrt(||delta||_2^2 + s^2) - s + cross-entropy(target), "
        "s = 1e-3 * (hi - lo)",
        "optimiser": f"scipy L-BFGS-B (scipy {library_version('scipy')}), from delta = 0",
        "line_search": "largest c reaching the target: x10 bracket, then log bisection",
    },
)
def _lbfgs(job: ProjectJob) -> AdapterOutput:
    """unified_adv.adapters.lbfgs.lbfgs_attack: binary_search_steps -> search_steps,
    steps -> max_iter; samples that never reached the target are failures."""
    if job.target is None:  # pragma: no cover - the capabilities list targeted modes only
        raise ValueError("lbfgs is a targeted attack: it needs target labels")
    p = job.request.params
    model = job.adapter.model
    kwargs: dict[str, Any] = {
        "c": p["c"],
        "search_steps": p["binary_search_steps"],
        "max_iter": p["steps"],
        "input_range": list(model.input_range),
    }
    result = lbfgs_attack(model, job.x, job.target, **kwargs)
    call = {
        "class": job.adapter.capabilities[job.request.attack].classes[job.request.norm],
        "kwargs": kwargs,
        "solves": result.total_solves,
        "reached_target": int(result.success.sum()),
    }
    # Samples that never reached the target come back unchanged: never a success.
    return AdapterOutput(result.x_adv, call, ~result.success)


class ProjectAdapter(Adapter):
    name = "unified-adv"
    distribution = "unified-adv"
    translators = PROJECT
    names = {"c": "c", "binary_search_steps": "search_steps", "steps": "max_iter"}

    def _job(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> ProjectJob:
        return ProjectJob(self, request, x, target)
