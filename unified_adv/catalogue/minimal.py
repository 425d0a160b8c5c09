"""Minimal-perturbation attacks: DeepFool, Carlini & Wagner L2, L-BFGS.

No eps: each searches for the smallest L2 perturbation that fools the model; the cross-check
compares the distances of the samples two backends both fooled. Their many steps accumulate
rounding: tolerance 1e-4 (the fallback).
"""

from __future__ import annotations

from unified_adv.catalogue.entry import TARGETED, UNTARGETED, AttackDef
from unified_adv.catalogue.params import Param, steps
from unified_adv.catalogue.threats import Minimization

DEEPFOOL = AttackDef(
    "deepfool",
    "DeepFool: the smallest L2 step across the linearised nearest decision boundary",
    "Moosavi-Dezfooli et al. 2016",
    Minimization(("l2",)),
    (
        steps(50),
        Param(
            "overshoot",
            float,
            0.02,
            "relative overshoot past the boundary",
            minimum=0,
            inclusive=True,
        ),
        Param("candidates", int, 10, "number of top classes considered", minimum=1, inclusive=True),
    ),
    targets=UNTARGETED,
    tolerance={"l2": 1e-4},
    # The libraries clip, overshoot and offset the steps differently (the translators' recorded facts).
    matters={"step_clip": ("l2",), "overshoot_applied_to": ("l2",), "step_offset": ("l2",)},
    doc="Linearises the `candidates` top classes' boundaries and steps to the nearest, "
    "`steps` times at most, then overshoots by (1 + overshoot). Deterministic.",
)

CW_L2 = AttackDef(
    "cw_l2",
    "Carlini & Wagner L2: minimise ‖δ‖² + c·margin with Adam in tanh space",
    "Carlini & Wagner 2017",
    Minimization(("l2",)),
    (
        steps(100),
        Param("lr", float, 0.01, "optimiser learning rate", minimum=0),
        Param("c", float, 1.0, "initial trade-off constant", minimum=0),
        Param("confidence", float, 0.0, "margin kappa", minimum=0, inclusive=True),
        Param(
            "binary_search_steps", int, 1, "binary search steps over c", minimum=1, inclusive=True
        ),
    ),
    tolerance={"l2": 1e-4},
    # binary_search_rule matters only with more than one search step (evaluate/crosscheck.py).
    matters={
        "optimiser": ("l2",),
        "start": ("l2",),
        "margin": ("l2",),
        "binary_search_rule": ("l2",),
    },
    doc="`steps` optimiser steps per value of c, `binary_search_steps` values of c "
    "(the first `c`); a sample counts as fooled with a margin of `confidence`. Deterministic.",
)

LBFGS = AttackDef(
    "lbfgs",
    "Box-constrained L-BFGS: minimise c·‖δ‖₂ + loss(x+δ, target) in the input box, "
    "searching for the largest c that still reaches the target",
    "Szegedy et al. 2014",
    Minimization(("l2",)),
    (
        steps(100),
        Param("c", float, 0.1, "initial trade-off constant", minimum=0),
        Param("binary_search_steps", int, 8, "line-search steps over c", minimum=1, inclusive=True),
    ),
    targets=TARGETED,
    doc="Targeted only, as Szegedy et al. Project code (no library has it): scipy's L-BFGS-B "
    "with `steps` iterations per c, `binary_search_steps` steps of the search over c.",
)
