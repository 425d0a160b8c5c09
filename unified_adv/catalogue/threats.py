"""Threat models as classes, in the style of Foolbox 3 (``FixedEpsilonAttack``,
``MinimizationAttack``): each one owns its invariants.

* which norms an attack of this kind measures its perturbation in;
* whether it takes ``eps`` (and, when not, how a scenario error explains why);
* how the adapter contract checks a backend's output (:meth:`ThreatModel.violation`).

``kind`` is the short name the rest of the code and the summary use
(``"ball"``, ``"minimal"``, ``"l0"``, ``"noise"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: Slack of the ball check: float32 rounding of x + delta (L∞ absolute, L2 relative).
LINF_TOL = 1e-6
L2_RTOL = 1e-5
#: A pixel counts as changed when it moved by more than this.
PIXEL_TOL = 1e-6


@dataclass(frozen=True)
class ThreatModel:
    """How an attack's result is bounded. Subclasses set ``kind`` and the invariants."""

    norms: tuple[str, ...]
    kind: ClassVar[str]
    takes_eps: ClassVar[bool] = False
    #: Completes "ATTACK is ... and takes no eps" (the scenario error for a stray eps).
    without_eps: ClassVar[str] = ""

    def violation(
        self,
        x: np.ndarray,
        x_adv: np.ndarray,
        norm: str,
        eps: float | None,
        params: Mapping[str, Any],
    ) -> str | None:
        """What ``x_adv`` breaks of the threat model, or None: no bound by default."""
        return None


@dataclass(frozen=True)
class FixedEpsilon(ThreatModel):
    """‖δ‖_norm ≤ eps, for every eps a scenario lists (FGSM, PGD, Square, ...)."""

    kind: ClassVar[str] = "ball"
    takes_eps: ClassVar[bool] = True

    def violation(
        self,
        x: np.ndarray,
        x_adv: np.ndarray,
        norm: str,
        eps: float | None,
        params: Mapping[str, Any],
    ) -> str | None:
        assert eps is not None
        delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
        if norm == "linf":
            worst = float(np.abs(delta).max(initial=0.0))
            limit = eps + LINF_TOL
        else:
            worst = float(np.linalg.norm(delta, axis=1).max(initial=0.0))
            limit = eps * (1 + L2_RTOL) + LINF_TOL
        if worst > limit:
            return f"left the {norm} ball: largest perturbation {worst:.8g} > eps {eps:.8g}"
        return None


@dataclass(frozen=True)
class Minimization(ThreatModel):
    """No bound: the attack minimises the distance, which is reported and, across
    backends, compared on the samples both fooled (DeepFool, C&W, decision-based)."""

    kind: ClassVar[str] = "minimal"
    without_eps: ClassVar[str] = "a minimal-perturbation attack"


@dataclass(frozen=True)
class PixelBudget(ThreatModel):
    """L0: at most ``pixels`` pixel positions changed, in any channel (one-pixel attack)."""

    norms: tuple[str, ...] = ("l0",)
    kind: ClassVar[str] = "l0"
    without_eps: ClassVar[str] = "bounded by `pixels`"

    def violation(
        self,
        x: np.ndarray,
        x_adv: np.ndarray,
        norm: str,
        eps: float | None,
        params: Mapping[str, Any],
    ) -> str | None:
        changed = (np.abs(x_adv - x) > PIXEL_TOL).any(axis=1).reshape(len(x), -1).sum(1)
        allowed = int(params["pixels"])
        if changed.max(initial=0) > allowed:
            return f"changed {int(changed.max())} pixels, more than pixels={allowed}"
        return None


@dataclass(frozen=True)
class Noise(ThreatModel):
    """A random corruption, not an optimised attack: no bound, model-independent, so it is
    scored as the mean over backends and never run adaptively against a defence."""

    kind: ClassVar[str] = "noise"
    without_eps: ClassVar[str] = "a random corruption"
