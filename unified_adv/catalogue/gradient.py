"""Gradient-step attacks bounded by an eps-ball: FGSM, BIM, PGD, MI-FGSM, APGD.

Every backend computes the same update here, so on a deterministic run they agree to
float32 rounding (one ulp of the range's top is 6e-8 of it): tolerance 1e-5.

Library facts known to change their outcome (``matters``):

* ``loss``: batch-mean vs summed loss. A saturated sample's gradient of the mean underflows
  to 0 (no step) where the sum keeps a denormal whose sign moves the pixel by a whole step;
  more often at [0, 255], where input gradients are 255 times smaller. L∞ only.
* ``update_order``: ART steps, clips, then projects; the others project, then clip: equal
  for L∞ only.
* ``l2_step``: torchattacks divides the gradient of the batch-mean loss by ||g|| + 1e-10.
* ``returned_iterate`` (PGD, BIM): ART, Foolbox and torchattacks return the point after the
  last step; adv-lib's ``pgd_linf`` the last adversarial point it saw (the input if none),
  secml-torch's PGD the highest-loss one (``_run_loop`` in its
  ``modular_attack_fixed_eps.py``): a sample fooled midway and not at the end, or a failed
  sample, comes back elsewhere.
* ``start`` (PGD with a random start): secml-torch's ``RandomPerturbLinf.get_perturb``
  returns ``x + eps u`` (the image plus the noise), projected onto the ball as the start.
"""

from __future__ import annotations

from unified_adv.catalogue.entry import AttackDef
from unified_adv.catalogue.params import (
    EOT_SAMPLES,
    RANDOM_STARTS,
    STEP_SIZE,
    Param,
    even_step,
    steps,
)
from unified_adv.catalogue.threats import FixedEpsilon

ROUNDING = 1e-5

FGSM = AttackDef(
    "fgsm",
    "Fast gradient (sign) method: one step of size eps",
    "Goodfellow et al. 2015",
    FixedEpsilon(("linf", "l2")),
    (EOT_SAMPLES,),
    sign_gradient=True,
    tolerance={"linf": ROUNDING, "l2": ROUNDING},
    matters={"loss": ("linf",)},
    doc="x + eps * sign(∇loss) (L∞) or x + eps * ∇loss / ||∇loss||₂ (L2), clipped to the "
    "input range. Deterministic.",
)

BIM = AttackDef(
    "bim",
    "Basic iterative method: FGSM repeated with clipping to the eps-ball, no random start",
    "Kurakin et al. 2017",
    FixedEpsilon(("linf",)),
    (steps(10), STEP_SIZE, EOT_SAMPLES),
    sign_gradient=True,
    tolerance={"linf": ROUNDING},
    matters={"loss": ("linf",), "returned_iterate": ("linf",)},
    doc="`steps` FGSM steps of `step_size` (default Madry's 2.5 * eps / steps), each "
    "projected to the eps-ball and clipped to the input range. Deterministic.",
)

PGD = AttackDef(
    "pgd",
    "Projected gradient descent, optionally from a random start in the eps-ball",
    "Madry et al. 2018",
    FixedEpsilon(("linf", "l2")),
    (steps(10), STEP_SIZE, RANDOM_STARTS, EOT_SAMPLES),
    sign_gradient=True,
    tolerance={"linf": ROUNDING, "l2": ROUNDING},
    matters={
        "update_order": ("l2",),
        "loss": ("linf",),
        "l2_step": ("l2",),
        "returned_iterate": ("linf", "l2"),
        "start": ("linf", "l2"),
    },
    doc="BIM from `random_starts` uniform random points in the ball (0: from the input, "
    "deterministic; > 0: randomised, so backends agree only statistically).",
)

MIFGSM = AttackDef(
    "mifgsm",
    "Momentum iterative FGSM",
    "Dong et al. 2018",
    FixedEpsilon(("linf",)),
    (
        steps(10),
        Param("step_size", float, even_step, "step per iteration", minimum=0),
        Param("decay", float, 1.0, "momentum decay factor mu", minimum=0, inclusive=True),
    ),
    sign_gradient=True,
    tolerance={"linf": ROUNDING},
    matters={"loss": ("linf",), "momentum": ("linf",)},
    doc="BIM whose step follows a momentum g = decay * g + ∇loss / ||∇loss||₁; "
    "`step_size` defaults to eps / steps, as in the paper. Deterministic.",
)

APGD = AttackDef(
    "apgd",
    "Auto-PGD: PGD from a random start whose step size (2*eps at first) is halved at "
    "checkpoints where the loss stalls, with momentum 0.75; loss cross-entropy, DLR, or "
    "APGD-T's targeted DLR against each of the top other classes in turn",
    "Croce & Hein 2020",
    FixedEpsilon(("linf", "l2")),
    (
        steps(100),
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
    randomised=True,
    tolerance={"linf": ROUNDING, "l2": ROUNDING},
    doc="Every restart starts from a random point in the ball, so backends agree only "
    "statistically. The libraries differ in where that start lies, what a failed sample comes "
    "back as and how checkpoints are rounded: recorded per backend, not yet shown to matter.",
)
