"""The canonical attack catalogue: names, threat models, parameters and their defaults.

Scenarios speak this vocabulary; adapters translate it. Defaults are ours and
are resolved here, once, so that every backend receives the same explicit
values and no library default can leak into a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NORMS = ("linf", "l2", "l0")
TARGET_MODES = ("untargeted", "class", "least_likely", "random", "each_other_class")

#: How the result of an attack is bounded, which decides what the adapter contract checks.
#: ball: ‖δ‖_norm ≤ eps; l0: at most `pixels` pixel positions changed; minimal: no bound
#: (the attack minimises the distance, which is reported); noise: random corruption, no bound.
THREATS = ("ball", "l0", "minimal", "noise")
#: The largest value any numeric parameter may take (iterations, queries, constants, ...).
MAX_NUMBER = 10**6


@dataclass(frozen=True)
class Param:
    """One canonical parameter: its type, default and valid range."""

    name: str
    kind: type
    default: Any  # a value, or a callable(eps, resolved-so-far) -> value
    doc: str
    minimum: float | None = None  # exclusive lower bound for numbers, unless inclusive
    inclusive: bool = False
    choices: tuple[str, ...] = ()
    #: Inclusive upper bound: every number has a finite, sane one (10^6 iterations, queries,
    #: pixels, ...; a larger value is a typo that would run for days or overflow).
    maximum: float = MAX_NUMBER

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


def _steps(default: int) -> Param:
    return Param("steps", int, default, "iterations", minimum=0)


def _madry_step(eps: float | None, p: Mapping[str, Any]) -> float:
    # Madry et al.: 2.5 * eps / steps reaches the boundary from anywhere in the ball.
    assert eps is not None
    return 2.5 * eps / p["steps"]


def _even_step(eps: float | None, p: Mapping[str, Any]) -> float:
    # Dong et al. (MI-FGSM): alpha = eps / T.
    assert eps is not None
    return eps / p["steps"]


STEP_SIZE = Param("step_size", float, _madry_step, "step per iteration, in input units", minimum=0)
#: Expectation over transformation (Athalye et al. 2018): gradients averaged over this many
#: draws of a randomised model's randomness. 1: a plain attack. Set by the runner for attacks on
#: a randomised defence unless the scenario sets it.
EOT_SAMPLES = Param(
    "eot_samples",
    int,
    1,
    "draws of a randomised model averaged per gradient",
    minimum=1,
    inclusive=True,
)


@dataclass(frozen=True)
class AttackDef:
    """What a canonical attack is and accepts. ``params`` excludes eps, norm and target."""

    name: str
    summary: str
    paper: str
    norms: tuple[str, ...]
    threat: str
    params: tuple[Param, ...] = ()
    targets: tuple[str, ...] = TARGET_MODES
    #: Gradient-free attacks (query the model's outputs only).
    black_box: bool = False

    @property
    def default_norm(self) -> str:
        return self.norms[0]

    @property
    def takes_eps(self) -> bool:
        return self.threat == "ball"

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def resolve(self, eps: float | None, given: Mapping[str, Any]) -> dict[str, Any]:
        """Our defaults for every parameter the attack takes, given values checked."""
        out: dict[str, Any] = {}
        for p in self.params:
            value = given.get(p.name)
            if value is None:
                value = p.default(eps, out) if isinstance(p.default, Callable) else p.default  # type: ignore[arg-type]
            out[p.name] = p.check(value)
        return out


_UNTARGETED = ("untargeted",)

_CATALOGUE = [
    AttackDef(
        "fgsm",
        "Fast gradient (sign) method: one step of size eps",
        "Goodfellow et al. 2015",
        ("linf", "l2"),
        "ball",
        (EOT_SAMPLES,),
    ),
    AttackDef(
        "bim",
        "Basic iterative method: FGSM repeated with clipping to the eps-ball, no random start",
        "Kurakin et al. 2017",
        ("linf",),
        "ball",
        (_steps(10), STEP_SIZE, EOT_SAMPLES),
    ),
    AttackDef(
        "pgd",
        "Projected gradient descent, optionally from a random start in the eps-ball",
        "Madry et al. 2018",
        ("linf", "l2"),
        "ball",
        (
            _steps(10),
            STEP_SIZE,
            Param("random_starts", int, 0, "random initialisations", minimum=0, inclusive=True),
            EOT_SAMPLES,
        ),
    ),
    AttackDef(
        "mifgsm",
        "Momentum iterative FGSM",
        "Dong et al. 2018",
        ("linf",),
        "ball",
        (
            _steps(10),
            Param("step_size", float, _even_step, "step per iteration", minimum=0),
            Param("decay", float, 1.0, "momentum decay factor mu", minimum=0, inclusive=True),
        ),
    ),
    AttackDef(
        "deepfool",
        "DeepFool: the smallest L2 step across the linearised nearest decision boundary",
        "Moosavi-Dezfooli et al. 2016",
        ("l2",),
        "minimal",
        (
            _steps(50),
            Param(
                "overshoot",
                float,
                0.02,
                "relative overshoot past the boundary",
                minimum=0,
                inclusive=True,
            ),
            Param(
                "candidates", int, 10, "number of top classes considered", minimum=1, inclusive=True
            ),
        ),
        targets=_UNTARGETED,
    ),
    AttackDef(
        "cw_l2",
        "Carlini & Wagner L2: minimise ‖δ‖² + c·margin with Adam in tanh space",
        "Carlini & Wagner 2017",
        ("l2",),
        "minimal",
        (
            _steps(100),
            Param("lr", float, 0.01, "optimiser learning rate", minimum=0),
            Param("c", float, 1.0, "initial trade-off constant", minimum=0),
            Param("confidence", float, 0.0, "margin kappa", minimum=0, inclusive=True),
            Param(
                "binary_search_steps",
                int,
                1,
                "binary search steps over c",
                minimum=1,
                inclusive=True,
            ),
        ),
    ),
    AttackDef(
        "lbfgs",
        "Box-constrained L-BFGS: minimise c·‖δ‖₂ + loss(x+δ, target) in the input box, "
        "searching for the largest c that still reaches the target",
        "Szegedy et al. 2014",
        ("l2",),
        "minimal",
        (
            _steps(100),
            Param("c", float, 0.1, "initial trade-off constant", minimum=0),
            Param(
                "binary_search_steps",
                int,
                8,
                "line-search steps over c",
                minimum=1,
                inclusive=True,
            ),
        ),
        targets=("class", "least_likely", "random", "each_other_class"),
    ),
    AttackDef(
        "one_pixel",
        "One-pixel attack: differential evolution over the position and value of `pixels` pixels",
        "Su et al. 2019",
        ("l0",),
        "l0",
        (
            Param("pixels", int, 1, "pixels changed", minimum=1, inclusive=True),
            _steps(10),
            Param("popsize", int, 10, "population size multiplier", minimum=1, inclusive=True),
        ),
        black_box=True,
    ),
    AttackDef(
        "universal",
        "Universal adversarial perturbation: one perturbation for all images",
        "Moosavi-Dezfooli et al. 2017",
        ("linf", "l2"),
        "ball",
        (
            Param("attacker", str, "fgsm", "inner attack", choices=("fgsm", "deepfool")),
            Param("max_iter", int, 10, "passes over the data", minimum=0),
            Param(
                "delta",
                float,
                0.2,
                "stop once the fooling rate reaches 1 - delta",
                minimum=0,
                maximum=1,
            ),
        ),
        targets=("untargeted", "class"),
    ),
    AttackDef(
        "square",
        "Square attack: score-based random search with square-shaped updates",
        "Andriushchenko et al. 2020",
        ("linf", "l2"),
        "ball",
        (
            Param("queries", int, 1000, "query budget per sample", minimum=0),
            Param("p_init", float, 0.8, "initial share of pixels changed", minimum=0, maximum=1),
            Param("restarts", int, 1, "restarts", minimum=1, inclusive=True),
        ),
        black_box=True,
    ),
    AttackDef(
        "apgd",
        "Auto-PGD: PGD from a random start whose step size (2*eps at first) is halved at "
        "checkpoints where the loss stalls, with momentum 0.75; loss cross-entropy, DLR, or "
        "APGD-T's targeted DLR against each of the top other classes in turn",
        "Croce & Hein 2020",
        ("linf", "l2"),
        "ball",
        (
            _steps(100),
            Param(
                "loss",
                str,
                "ce",
                "loss maximised: ce (cross-entropy), dlr (difference of logits ratio), "
                "dlr_targeted (APGD-T: targeted DLR against each other class, top-ranked first; "
                "success is any misclassification)",
                choices=("ce", "dlr", "dlr_targeted"),
            ),
            Param(
                "restarts",
                int,
                1,
                "random starts (per target class for dlr_targeted)",
                minimum=1,
                inclusive=True,
            ),
            Param(
                "rho",
                float,
                0.75,
                "checkpoint rule: halve the step where fewer than rho of the steps since the "
                "last checkpoint raised the loss",
                minimum=0,
                maximum=1,
            ),
            EOT_SAMPLES,
        ),
    ),
    AttackDef(
        "hopskipjump",
        "HopSkipJump: decision-based, estimates the gradient at the boundary",
        "Chen et al. 2020",
        ("l2", "linf"),
        "minimal",
        (
            _steps(20),
            Param("max_evals", int, 1000, "most model queries per gradient estimate", minimum=0),
            Param(
                "init_evals", int, 100, "model queries for the first gradient estimate", minimum=0
            ),
        ),
        black_box=True,
    ),
    AttackDef(
        "boundary",
        "Boundary attack: decision-based random walk along the decision boundary",
        "Brendel et al. 2018",
        ("l2",),
        "minimal",
        (
            _steps(200),
            Param("spherical_step", float, 0.01, "orthogonal step, relative", minimum=0),
            Param("source_step", float, 0.01, "step toward the original, relative", minimum=0),
        ),
        black_box=True,
    ),
    AttackDef(
        "gaussian_noise",
        "Additive Gaussian noise, clipped to the input range: a corruption, not an optimised attack",
        "Lim 2021 (noise_param 0.1)",
        ("l2",),
        "noise",
        (Param("std", float, 0.1, "standard deviation, in input units", minimum=0),),
        targets=_UNTARGETED,
        black_box=True,
    ),
]

ATTACKS: dict[str, AttackDef] = {a.name: a for a in _CATALOGUE}
ALL_PARAMS: tuple[str, ...] = tuple(sorted({p.name for a in _CATALOGUE for p in a.params}))
