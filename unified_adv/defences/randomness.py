"""Randomised defences' seeding protocol: which modules draw random numbers, and how to
reseed them all from one seed.

A module is randomised when its ``randomized`` attribute is True and reseedable when it
has a ``reseed(seed)`` method; :class:`DefenceChain` composes such layers. This module
sits below both the layers (``defences.layers`` re-exports these names) and the adapters,
which reseed a model before every library call.
"""

from __future__ import annotations

import numpy as np
from torch import nn


class DefenceChain(nn.Sequential):
    """Defences applied in the given order (Lim's best: autoencoder, then randomization)."""

    @property
    def randomized(self) -> bool:
        return any(is_randomized(m) for m in self)

    def reseed(self, seed: int) -> dict[str, int]:
        return reseed(self, seed)


def is_randomized(module: nn.Module) -> bool:
    """True if any submodule draws random numbers (its ``randomized`` attribute is True)."""
    return any(
        getattr(m, "randomized", False) is True
        for m in module.modules()
        if not isinstance(m, DefenceChain)
    )


def reseed(module: nn.Module, seed: int) -> dict[str, int]:
    """Reseed every submodule that has ``reseed``, each with its own derived seed.

    Sub-seeds come from ``np.random.SeedSequence(seed).spawn`` in module order, so two
    identical layers in one chain do not draw the same numbers. Returns {name: sub-seed}.
    """
    targets = [
        (name, m)
        for name, m in module.named_modules()
        if callable(getattr(m, "reseed", None)) and not isinstance(m, DefenceChain)
    ]
    children = np.random.SeedSequence(int(seed)).spawn(len(targets))
    used: dict[str, int] = {}
    for (name, m), child in zip(targets, children, strict=True):
        sub = int(child.generate_state(1, dtype=np.uint32)[0])
        m.reseed(sub)  # type: ignore[operator]
        used[name] = sub
    return used
