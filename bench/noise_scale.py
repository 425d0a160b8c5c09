"""Lim's noise_param 0.1 against the digits, relative to the pixel standard deviation.

Lim adds N(0, 0.1²) noise to standardised CIFAR-10 inputs (per-channel std 1), i.e. 10 % of
the pixels' std. On the digits in [0, 1] the same std 0.1 is a share of the digits' own pixel
std; this prints it for the held-out split, per image (the range over images) and pooled.
bench/audit_figures.py stores these figures for README.md (``measure``).

Usage: python bench/noise_scale.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_adv.sources.builtin.digits import digits_split


def measure() -> dict[str, Any]:
    """Pixel std of the held-out digits: pooled, per image (5 %, median, 95 %), per inked position."""
    _, _, x, _, _, _ = digits_split()
    per_image = x.reshape(len(x), -1).std(axis=1)
    q5, q50, q95 = np.quantile(per_image, [0.05, 0.5, 0.95])
    per_position = x.reshape(len(x), -1).std(axis=0)
    lit = per_position[per_position > 0.05]  # positions that ever carry ink
    return {
        "images": len(x), "range": [float(x.min()), float(x.max())], "pooled_std": float(x.std()),
        "per_image_std": {"q05": float(q5), "median": float(q50), "q95": float(q95)},
        "inked_positions": len(lit), "per_position_std_median": float(np.median(lit)),
    }


def main() -> None:
    m = measure()
    pooled, q = m["pooled_std"], m["per_image_std"]
    print(f"held-out digits: {m['images']} images in [{m['range'][0]:g}, {m['range'][1]:g}]")
    print(f"pixel std pooled over all pixels: {pooled:.3f} -> std 0.1 is {0.1 / pooled:.0%}")
    print(
        f"pixel std per image: 5 % {q['q05']:.3f}, median {q['median']:.3f}, 95 % {q['q95']:.3f} -> "
        f"std 0.1 is {0.1 / q['q95']:.0%} to {0.1 / q['q05']:.0%} of it (median {0.1 / q['median']:.0%})"
    )
    lit = m["per_position_std_median"]
    print(
        f"pixel std per position (over images), median of the {m['inked_positions']} inked "
        f"positions: {lit:.3f} -> std 0.1 is {0.1 / lit:.0%}"
    )
    for std in (0.1, 0.3):
        print(f"std {std}: {std / pooled:.0%} of the pooled pixel std")
    print("Lim, standardised CIFAR-10 (std 1 per channel): std 0.1 is 10 %")


if __name__ == "__main__":
    main()
