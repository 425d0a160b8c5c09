"""Black-box attacks: they query the model's outputs only (no gradient) and search at
random, so they are randomised whatever their parameters: backends agree only
statistically. One-pixel (L0), Square (score-based), HopSkipJump and Boundary
(decision-based)."""

from __future__ import annotations

from unified_adv.catalogue.entry import AttackDef
from unified_adv.catalogue.params import Param, steps
from unified_adv.catalogue.threats import FixedEpsilon, Minimization, PixelBudget

ONE_PIXEL = AttackDef(
    "one_pixel",
    "One-pixel attack: differential evolution over the position and value of `pixels` pixels",
    "Su et al. 2019",
    PixelBudget(),
    (
        Param("pixels", int, 1, "pixels changed", minimum=1, inclusive=True),
        steps(10),
        Param("popsize", int, 10, "population size multiplier", minimum=1, inclusive=True),
    ),
    black_box=True,
    randomised=True,
    doc="Differential evolution over (row, column, value) of `pixels` pixels, `steps` "
    "generations of `popsize` candidates per pixel.",
)

SQUARE = AttackDef(
    "square",
    "Square attack: score-based random search with square-shaped updates",
    "Andriushchenko et al. 2020",
    FixedEpsilon(("linf", "l2")),
    (
        Param("queries", int, 1000, "query budget per sample", minimum=0),
        Param("p_init", float, 0.8, "initial share of pixels changed", minimum=0, maximum=1),
        Param("restarts", int, 1, "restarts", minimum=1, inclusive=True),
    ),
    black_box=True,
    randomised=True,
    doc="Random square-shaped updates at the ball's vertices, kept when the margin loss "
    "drops; `queries` model queries per sample, `restarts` times.",
)

HOPSKIPJUMP = AttackDef(
    "hopskipjump",
    "HopSkipJump: decision-based, estimates the gradient at the boundary",
    "Chen et al. 2020",
    Minimization(("l2", "linf")),
    (
        steps(20),
        Param("max_evals", int, 1000, "most model queries per gradient estimate", minimum=0),
        Param("init_evals", int, 100, "model queries for the first gradient estimate", minimum=0),
    ),
    black_box=True,
    randomised=True,
    # ART: threshold 0.01/sqrt(d); Foolbox: gamma/d^1.5.
    matters={"search_threshold": ("l2", "linf")},
    doc="From a misclassified start, `steps` rounds of: binary search to the boundary, a "
    "gradient estimate from random probes (`init_evals` growing to `max_evals`), a step.",
)

BOUNDARY = AttackDef(
    "boundary",
    "Boundary attack: decision-based random walk along the decision boundary",
    "Brendel et al. 2018",
    Minimization(("l2",)),
    (
        steps(200),
        Param("spherical_step", float, 0.01, "orthogonal step, relative", minimum=0),
        Param("source_step", float, 0.01, "step toward the original, relative", minimum=0),
    ),
    black_box=True,
    randomised=True,
    # ART tries up to num_trial x sample_size proposals per step, Foolbox one.
    matters={"proposals_per_step": ("l2",)},
    doc="From a misclassified start, `steps` random proposals on a sphere around the "
    "input (`spherical_step`) followed by a step toward it (`source_step`).",
)
