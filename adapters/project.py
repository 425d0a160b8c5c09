"""The project's own attacks, as a fourth backend: L-BFGS, which no backend library has.

Registered like the libraries so that it flows through the same units, results,
cross-check and report; its capability note says plainly that it is project code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_adv.adapters.base import Adapter, AttackRequest, Capability, library_version

_TARGETED = ("class", "least_likely", "random", "each_other_class")


class ProjectAdapter(Adapter):
    name = "unified-adv"
    distribution = "unified-adv"
    capabilities = {
        "lbfgs": Capability(
            {"l2": "unified_adv.adapters.lbfgs.lbfgs_attack"},
            _TARGETED,
            note="project code (scipy.optimize L-BFGS-B with a line search on c), not a "
            "backend library: none of ART, Foolbox, torchattacks has L-BFGS",
        ),
    }
    names = {"c": "c", "binary_search_steps": "search_steps", "steps": "max_iter"}
    attack_facts = {
        "lbfgs": {
            "objective": "c * sqrt(||delta||_2^2 + s^2) - s + cross-entropy(target), "
            "s = 1e-3 * (hi - lo)",
            "optimiser": f"scipy L-BFGS-B (scipy {library_version('scipy')}), from delta = 0",
            "line_search": "largest c reaching the target: x10 bracket, then log bisection",
        },
    }

    @classmethod
    def version(cls) -> str:
        from unified_adv import __version__

        return __version__

    def _generate(
        self, request: AttackRequest, x: np.ndarray, y: np.ndarray, target: np.ndarray | None
    ) -> tuple[Any, ...]:
        from unified_adv.adapters.lbfgs import lbfgs_attack

        if target is None:  # pragma: no cover - the capabilities list targeted modes only
            raise ValueError("lbfgs is a targeted attack: it needs target labels")
        p = request.params
        kwargs: dict[str, Any] = {
            "c": p["c"],
            "search_steps": p["binary_search_steps"],
            "max_iter": p["steps"],
            "input_range": list(self.model.input_range),
        }
        result = lbfgs_attack(self.model, x, target, **kwargs)
        call = {
            "class": self.capabilities[request.attack].classes[request.norm],
            "kwargs": kwargs,
            "solves": result.total_solves,
            "reached_target": int(result.success.sum()),
        }
        # Samples that never reached the target come back unchanged: never a success.
        return result.x_adv, call, ~result.success
