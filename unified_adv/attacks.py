"""The canonical attack catalogue: names, parameters and their defaults.

Scenarios speak this vocabulary; adapters translate it. Defaults are ours and
are resolved here, once, so that every backend receives the same explicit
values and no library default can leak into a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NORMS = ("linf", "l2")
TARGET_MODES = ("untargeted", "class", "least_likely", "random")


@dataclass(frozen=True)
class AttackDef:
    """What a canonical attack accepts. ``params`` excludes eps, norm and target."""

    name: str
    summary: str
    norms: tuple[str, ...]
    params: tuple[str, ...]
    iterative: bool

    def resolve(self, eps: float, given: Mapping[str, Any]) -> dict[str, Any]:
        """Fill our defaults for the canonical parameters this attack takes."""
        out: dict[str, Any] = {}
        if "steps" in self.params:
            out["steps"] = int(given.get("steps") or 10)
        if "step_size" in self.params:
            # Madry et al.'s convention: 2.5 * eps / steps reaches the boundary from anywhere.
            step = given.get("step_size")
            out["step_size"] = float(step) if step is not None else 2.5 * eps / out["steps"]
        if "random_starts" in self.params:
            out["random_starts"] = int(given.get("random_starts") or 0)
        return out


ATTACKS: dict[str, AttackDef] = {
    "fgsm": AttackDef(
        name="fgsm",
        summary="Fast gradient (sign) method, one step of size eps (Goodfellow et al. 2015)",
        norms=("linf", "l2"),
        params=(),
        iterative=False,
    ),
    "pgd": AttackDef(
        name="pgd",
        summary="Projected gradient descent, `steps` steps of `step_size` (Madry et al. 2018)",
        norms=("linf", "l2"),
        params=("steps", "step_size", "random_starts"),
        iterative=True,
    ),
}
