"""Morph sweep throughput vs the model's batched forward throughput, side by side.

The sweep is only forward passes (plus building the interpolations), so the ratio
should approach 1. Both sides run in this process, interleaved, after a warm-up;
the figures are medians over the repetitions. Writes bench/results_morph.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from unified_adv.analyses.base import select_images
from unified_adv.analyses.morph import MORPH_BATCH, morph_pairs, morph_sweep
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images-per-class", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    net, _ = builtin_digits_cnn()
    model = ModelWrapper(net)
    _, _, x, y, _, _ = digits_split()
    correct = model.logits(x).argmax(1) == y
    images = select_images(y, correct, args.images_per_class, 10)
    xs, labels = x[images], y[images]
    pairs = morph_pairs(labels, None, 0)
    n_images = len(pairs) * args.steps
    # The forward limit: the same number of images through the model in batches of the
    # sweep's size, from one prepared batch (no interpolation work at all).
    batch = np.random.default_rng(0).random((MORPH_BATCH, *x.shape[1:]), dtype=np.float32)
    full, rest = divmod(n_images, MORPH_BATCH)

    def forward_only() -> float:
        t0 = time.perf_counter()
        for _ in range(full):
            model.logits(batch, batch_size=MORPH_BATCH)
        if rest:
            model.logits(batch[:rest], batch_size=MORPH_BATCH)
        return time.perf_counter() - t0

    def sweep() -> float:
        t0 = time.perf_counter()
        morph_sweep(model, xs, labels, pairs, args.steps)
        return time.perf_counter() - t0

    forward_only(), sweep()  # warm-up
    fwd, swp = [], []
    for _ in range(args.repeats):
        fwd.append(forward_only())
        swp.append(sweep())
    result = {
        "benchmark": "morph sweep vs batched forward",
        "pairs": len(pairs),
        "steps": args.steps,
        "images": n_images,
        "repeats": args.repeats,
        "forward_images_per_s": n_images / statistics.median(fwd),
        "sweep_images_per_s": n_images / statistics.median(swp),
        "ratio_sweep_to_forward": statistics.median(f / s for f, s in zip(fwd, swp, strict=True)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    }
    out = Path(__file__).with_name("results_morph.json")
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
