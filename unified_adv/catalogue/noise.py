"""Random corruptions: not optimised attacks, the model's outputs are never read."""

from __future__ import annotations

from unified_adv.catalogue.entry import UNTARGETED, AttackDef
from unified_adv.catalogue.params import Param
from unified_adv.catalogue.threats import Noise

GAUSSIAN_NOISE = AttackDef(
    "gaussian_noise",
    "Additive Gaussian noise, clipped to the input range: a corruption, not an optimised attack",
    "Lim 2021 (noise_param 0.1)",
    Noise(("l2",)),
    (Param("std", float, 0.1, "standard deviation, in input units", minimum=0),),
    targets=UNTARGETED,
    black_box=True,
    randomised=True,
    # Foolbox rescales to an exact L2 norm, the others draw per pixel.
    matters={"noise": ("l2",)},
    doc="x + std * N(0, 1) per pixel, clipped to the input range.",
)
