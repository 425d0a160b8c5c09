"""Minimal-perturbation attacks: DeepFool, Carlini & Wagner L2, L-BFGS, FAB, FMN, DDN, ALMA.

No eps: each searches for the smallest perturbation (L2, or the norm asked for FAB and FMN)
that fools the model; the cross-check compares the distances of the samples two backends both
fooled. Their many steps accumulate rounding: tolerance 1e-4 (the fallback).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unified_adv.catalogue.entry import TARGETED, UNTARGETED, AttackDef
from unified_adv.catalogue.params import RANDOM_STARTS, Param, steps
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

#: FAB and FMN iterate many steps: rounding accumulates (the fallback tolerance, per norm).
_ITERATED = 1e-4

FAB = AttackDef(
    "fab",
    "Fast adaptive boundary: projects onto the linearised nearest decision boundary, biased "
    "toward the input, and keeps the smallest adversarial found; FAB-T runs it targeted at "
    "each of the top other classes in turn",
    "Croce & Hein 2020",
    Minimization(("linf", "l2", "l1")),
    (
        steps(100),
        RANDOM_STARTS,
        Param(
            "alpha_max",
            float,
            0.1,
            "largest weight of the step from the input (the bias toward the input)",
            minimum=0,
            maximum=1,
        ),
        Param(
            "overshoot",
            float,
            0.05,
            "relative overshoot past the boundary: each projection step times (1 + overshoot)",
            minimum=0,
            inclusive=True,
        ),
        Param(
            "beta",
            float,
            0.9,
            "backward step: an adversarial point is pulled to x + beta * (x_adv - x)",
            minimum=0,
            maximum=1,
        ),
        Param(
            "target_classes",
            int,
            0,
            "FAB-T: run targeted at each of the top `target_classes` other classes in turn "
            "(success: any misclassification); 0: untargeted FAB",
            minimum=0,
            inclusive=True,
        ),
    ),
    targets=UNTARGETED,
    tolerance={"linf": _ITERATED, "l2": _ITERATED, "l1": _ITERATED},
    # With more than one run (random starts, FAB-T targets) the libraries differ (source):
    # torchattacks keeps a sample's first success, adv-lib the smallest over runs; their random
    # starts have different radii.
    matters={"restart_rule": ("linf", "l2", "l1"), "start": ("linf", "l2", "l1")},
    doc="`steps` projections per run; the first run starts at the input, each of "
    "`random_starts` more from a random point. Defaults are AutoAttack's FAB (100 steps, "
    "alpha_max 0.1, eta = 1 + overshoot = 1.05, beta 0.9); AutoAttack's FAB-T is "
    "`target_classes: 9`. "
    "Deterministic without random starts.",
)


def _final_step(eps: float | None, p: Mapping[str, Any]) -> float:
    """FMN's cosine annealing ends at step_size / 100 (Pintor et al., Foolbox, adv-lib)."""
    return float(p["step_size"]) / 100


FMN = AttackDef(
    "fmn",
    "Fast minimum-norm: steps along the normalised loss gradient while an adaptive norm "
    "bound shrinks around the best adversarial found (grows while none is)",
    "Pintor et al. 2021",
    Minimization(("l2", "linf", "l1", "l0")),
    (
        steps(100),
        Param(
            "step_size",
            float,
            1.0,
            "first step along the L2-normalised gradient, in input units (cosine-annealed)",
            minimum=0,
        ),
        Param("min_step_size", float, _final_step, "last step of the annealing", minimum=0),
        Param(
            "gamma",
            float,
            0.05,
            "first relative change of the norm bound per step (cosine-annealed)",
            minimum=0,
            maximum=1,
        ),
        Param(
            "min_gamma",
            float,
            0.001,
            "last relative change of the norm bound",
            minimum=0,
            maximum=1,
        ),
    ),
    tolerance={n: _ITERATED for n in ("l2", "linf", "l1", "l0")},
    # Foolbox's L2 projection is the identity (source: factor = min(1, norms / norms)), and
    # its L0 projection keeps the epsilon + 1 largest components: both change the result.
    matters={"l2_projection": ("l2",), "l0_projection": ("l0",)},
    doc="From the input (no initial attack), `steps` steps of `step_size` annealed to "
    "`min_step_size` along the L2-normalised gradient of the logit margin, each projected "
    "onto the norm ball of the adaptive bound, which shrinks by gamma (annealed to "
    "`min_gamma`) while adversarial and grows otherwise; the smallest adversarial is kept. "
    "Defaults: Foolbox's and adv-lib's (the paper tunes step_size per norm). Deterministic.",
)

DDN = AttackDef(
    "ddn",
    "Decoupled Direction and Norm: a normalised gradient step, then the perturbation "
    "rescaled to a norm that shrinks while adversarial and grows while not",
    "Rony et al. 2019",
    Minimization(("l2",)),
    (
        steps(100),
        Param(
            "gamma",
            float,
            0.05,
            "norm change per step: eps * (1 - gamma) while adversarial, * (1 + gamma) while not",
            minimum=0,
            maximum=1,
        ),
        Param("init_norm", float, 1.0, "the perturbation's first L2 norm", minimum=0),
    ),
    tolerance={"l2": 1e-4},
    # adv-lib rescales the perturbation to norm eps exactly (onto the sphere), secml-torch
    # only projects it into the ball (its L2Constraint leaves a shorter perturbation alone).
    # Measured on 8 digits, 2 steps: the two results point the same way (cosine 1.0000) and
    # differ in norm by the factor 1.05 = 1 + gamma of the first step, which adv-lib grows to
    # eps = 1.05 and secml-torch leaves at 1 (tests/test_advlib_secml.py).
    matters={"norm_projection": ("l2",)},
    doc="Each step: a step of length alpha (cosine-annealed from 1 to 0.01) along the "
    "cross-entropy gradient normalised to unit L2 norm, then the perturbation scaled to the "
    "current norm eps, which is multiplied by (1 - gamma) after an adversarial step and by "
    "(1 + gamma) otherwise; the smallest adversarial seen is returned. No quantisation of "
    "the result (adv-lib's 256 levels switched off). Deterministic except adv-lib's random "
    "direction for a zero gradient (seeded).",
)

ALMA = AttackDef(
    "alma",
    "Augmented Lagrangian Method for Adversarial attacks: minimise the L2 distance plus a "
    "penalty on the logit margin, with multipliers adapted as in an augmented Lagrangian",
    "Rony et al. 2021",
    Minimization(("l2",)),
    (
        steps(1000),
        Param(
            "init_lr_distance",
            float,
            1.0,
            "L2 length of the first step: the initial learning rate is line-searched to it",
            minimum=0,
        ),
        Param(
            "ema_alpha",
            float,
            0.9,
            "exponential moving-average weight of the multiplier update, RMSProp's smoothing "
            "and its momentum",
            minimum=0,
            maximum=1,
        ),
        Param(
            "lr_reduction",
            float,
            0.01,
            "learning rate decay: after the first success it decays exponentially to "
            "lr * lr_reduction at the last step",
            minimum=0,
            maximum=1,
        ),
    ),
    tolerance={"l2": 1e-4},
    doc="The penalty P2 of the paper on the difference of logits ratio (margin 1e-4), "
    "RMSProp with momentum, the penalty parameter rho multiplied by 1.2 every 10 steps "
    "unless the constraint improved by 5 %; the smallest adversarial seen is returned. Our "
    "defaults are AttackBench's for L2 (1000 steps, alpha 0.9, first step 1). Deterministic "
    "except a random first direction where the gradient is zero (seeded).",
)
