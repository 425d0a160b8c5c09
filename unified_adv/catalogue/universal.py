"""Data-level attacks: one perturbation for a whole data set."""

from __future__ import annotations

from unified_adv.catalogue.entry import AttackDef
from unified_adv.catalogue.params import Param
from unified_adv.catalogue.threats import FixedEpsilon

UNIVERSAL = AttackDef(
    "universal",
    "Universal adversarial perturbation: one perturbation for all images",
    "Moosavi-Dezfooli et al. 2017",
    FixedEpsilon(("linf", "l2")),
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
    # The passes visit the data in a random order.
    randomised=True,
    doc="Up to `max_iter` passes over the data: the inner `attacker` pushes each still "
    "correctly classified image across the boundary, and the sum is projected to the ball.",
)
