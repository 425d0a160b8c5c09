"""Canonical attack parameters: type, default, valid range, and the shared ones.

A parameter means the same thing in every attack that takes it (``steps`` is always
iterations), so the scenario schema derives one field per name from the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The largest value any numeric parameter may take (iterations, queries, constants, ...).
MAX_NUMBER = 10**6


@dataclass(frozen=True)
class Param:
    """One canonical parameter: its type, default and valid range."""

    name: str
    kind: type  # int, float or str: the scenario field's type
    default: Any  # a value, or a callable(eps, resolved-so-far) -> value
    doc: str
    minimum: float | None = None  # exclusive lower bound for numbers, unless inclusive
    inclusive: bool = False
    choices: tuple[str, ...] = ()
    #: Inclusive upper bound: every number has a finite, sane one (10^6 iterations, queries,
    #: pixels, ...; a larger value is a typo that would run for days or overflow).
    maximum: float = MAX_NUMBER
    #: A non-zero value makes the attack draw random numbers (a random start), so backends
    #: can agree only statistically, not sample by sample.
    randomises: bool = False

    def check(self, value: Any) -> Any:
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be an integer, got {value!r}")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"must be a number, got {value!r}")
            value = float(value)
        if self.minimum is not None:
            ok = value >= self.minimum if self.inclusive else value > self.minimum
            if not ok:
                raise ValueError(
                    f"must be {'>=' if self.inclusive else '>'} {self.minimum:g}, "
                    f"got {shown(value)}"
                )
        if not value <= self.maximum:
            raise ValueError(f"must be <= {shown(self.maximum)}, got {shown(value)}")
        return value


def shown(value: Any) -> str:
    """A number as an error message shows it: never thousands of digits."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else f"{text[:8]}… ({len(text)} digits)"


def steps(default: int) -> Param:
    return Param("steps", int, default, "iterations", minimum=0)


def madry_step(eps: float, steps: int) -> float:
    """Madry et al.: 2.5 * eps / steps reaches the boundary from anywhere in the ball."""
    return 2.5 * eps / steps


def _madry_default(eps: float | None, p: Mapping[str, Any]) -> float:
    assert eps is not None
    return madry_step(eps, p["steps"])


def even_step(eps: float | None, p: Mapping[str, Any]) -> float:
    """Dong et al. (MI-FGSM): alpha = eps / T."""
    assert eps is not None
    return eps / p["steps"]


STEP_SIZE = Param(
    "step_size", float, _madry_default, "step per iteration, in input units", minimum=0
)
RANDOM_STARTS = Param(
    "random_starts", int, 0, "random initialisations", minimum=0, inclusive=True, randomises=True
)
#: Expectation over transformation (Athalye et al. 2018): gradients averaged over this many
#: draws of a randomised model's randomness. 1: a plain attack. Set by the runner for attacks on
#: a randomised defence unless the scenario sets it. An attack that takes it supports EOT.
EOT_SAMPLES = Param(
    "eot_samples",
    int,
    1,
    "draws of a randomised model averaged per gradient",
    minimum=1,
    inclusive=True,
)
