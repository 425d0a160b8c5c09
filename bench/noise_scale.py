"""Lim's noise_param 0.1 against the digits, relative to the pixel standard deviation.

Lim adds N(0, 0.1²) noise to standardised CIFAR-10 inputs (per-channel std 1), i.e. 10 % of
the pixels' std. On the digits in [0, 1] the same std 0.1 is a share of the digits' own pixel
std; this prints it for the held-out split, per image (the range over images) and pooled.

Usage: python bench/noise_scale.py
"""

from __future__ import annotations

import numpy as np

from unified_adv.sources.builtin.digits import digits_split


def main() -> None:
    _, _, x, _, _, _ = digits_split()
    per_image = x.reshape(len(x), -1).std(axis=1)
    pooled = float(x.std())
    print(f"held-out digits: {len(x)} images in [{x.min():g}, {x.max():g}]")
    print(f"pixel std pooled over all pixels: {pooled:.3f} -> std 0.1 is {0.1 / pooled:.0%}")
    q5, q50, q95 = np.quantile(per_image, [0.05, 0.5, 0.95])
    print(
        f"pixel std per image: 5 % {q5:.3f}, median {q50:.3f}, 95 % {q95:.3f} -> std 0.1 is "
        f"{0.1 / q95:.0%} to {0.1 / q5:.0%} of it (median {0.1 / q50:.0%})"
    )
    per_position = x.reshape(len(x), -1).std(axis=0)
    lit = per_position[per_position > 0.05]  # positions that ever carry ink
    print(
        f"pixel std per position (over images), median of the {len(lit)} inked positions: "
        f"{np.median(lit):.3f} -> std 0.1 is {0.1 / np.median(lit):.0%}"
    )
    for std in (0.1, 0.3):
        print(f"std {std}: {std / pooled:.0%} of the pooled pixel std")
    print("Lim, standardised CIFAR-10 (std 1 per channel): std 0.1 is 10 %")


if __name__ == "__main__":
    main()
