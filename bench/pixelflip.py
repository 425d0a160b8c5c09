"""Exhaustive one-pixel flips: engine throughput against the model's forward limit, and
the exhaustive search against the differential-evolution one-pixel attacks.

Part 1, on the paper's LineCNN at D = 32 (trained on every line image at 2°, the cached
builtin) and D = 64 (untrained, seeded: training it takes minutes, and the cost of a
forward pass does not depend on the weights): candidates per second of the brute-force
reference, the generic engine and the fast engine, each as a ratio to the forward limit
(plain forward passes over pre-built candidate batches of the reference's size, 256).
All four run interleaved in this process after a warm-up; figures are medians over the
repetitions. The fast engine runs on more images than the others (its per-candidate
cost is what is compared; it needs more work to be timed reliably).

Part 2, on the D = 16 line images (trained LineCNN, 2°): share of images with a one-pixel
adversarial example found by the exhaustive search, by torchattacks' OnePixel and by
ART's PixelAttack (canonical one_pixel: pixels 1, steps 10, popsize 10), and their time.
ART refuses two-class labels ("not yet been tested for binary classification"), so it
attacks the net with a constant third logit of −1e4 appended, which changes no decision.
torchattacks may set the pixel to any value in [0, 1], so its threat model is wider than
a flip; ART casts values to int, i.e. flips or no change.

Writes bench/results_pixelflip.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.analyses.pixelflip import (
    REF_BATCH,
    bruteforce_flips,
    exhaustive_flips,
    fast_flips,
    generic_flips,
)
from unified_adv.sources.builtin.line_cnn import LineCNN, builtin_line_cnn
from unified_adv.sources.lines import generate_lines
from unified_adv.sources.models import ModelWrapper


class ThirdLogit(nn.Module):
    """The net's two logits plus a constant −1e4: ART's PixelAttack refuses 2 classes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return torch.cat([z, torch.full_like(z[:, :1], -1e4)], 1)


def evenly(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(np.int64))


def candidate_batches(images: np.ndarray, batch: int) -> list[torch.Tensor]:
    """Every flip candidate of the images, pre-built, in batches of ``batch``."""
    n, _, h, w = images.shape
    cands = np.repeat(images, h * w, axis=0).reshape(n, h * w, h * w)
    idx = np.arange(h * w)
    cands[:, idx, idx] = 1.0 - cands[:, idx, idx]
    flat = torch.from_numpy(cands.reshape(n * h * w, 1, h, w))
    return [flat[s : s + batch].clone() for s in range(0, len(flat), batch)]


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def engine_speeds(size: int, args: argparse.Namespace) -> dict[str, Any]:
    if size == 32:
        net, details = builtin_line_cnn(32, 2.0, seed=0)
        weights = f"trained on all D=32 2° lines ({details['epochs']} epochs)"
    else:
        torch.manual_seed(0)
        net = LineCNN(size).eval()
        weights = "untrained (seeded); speed does not depend on weights"
    lines = generate_lines(size, 2.0)
    n_ref = args.images_32 if size == 32 else args.images_64
    x = lines.images[evenly(len(lines), n_ref)]
    x_fast = lines.images[evenly(len(lines), n_ref * args.fast_factor)]
    cands, cands_fast = len(x) * size * size, len(x_fast) * size * size
    batches = candidate_batches(x, REF_BATCH)

    def forward() -> None:
        with torch.no_grad():
            for b in batches:
                net(b)

    runs = {
        "forward": lambda: forward(),
        "bruteforce": lambda: bruteforce_flips(net, x),
        "generic": lambda: generic_flips(net, x),
        "fast": lambda: fast_flips(net, x_fast),
    }
    for name, fn in runs.items():  # warm-up
        if name != "fast":
            timed(fn)
    fast_flips(net, x_fast[:4])
    times: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            dt, outs[name] = timed(fn)
            times[name].append(dt)
    n_of = {"forward": cands, "bruteforce": cands, "generic": cands, "fast": cands_fast}
    rate = {k: n_of[k] / statistics.median(v) for k, v in times.items()}
    ref = outs["bruteforce"]
    fast_on_ref = fast_flips(net, x)
    return {
        "size": size,
        "weights": weights,
        "images": len(x),
        "images_fast": len(x_fast),
        "candidates": cands,
        "candidates_fast": cands_fast,
        "candidates_per_s": rate,
        "ratio_to_forward": {k: rate[k] / rate["forward"] for k in rate},
        "seconds": times,
        "verdicts_equal": {
            "generic": bool(np.array_equal(outs["generic"], ref)),
            "fast": bool(np.array_equal(fast_on_ref, ref)),
        },
        "adversarial_candidates": int(ref.sum()),
    }


def de_comparison(args: argparse.Namespace) -> dict[str, Any]:
    lines = generate_lines(16, 2.0)
    net, _ = builtin_line_cnn(16, 2.0, seed=0)
    pick = np.arange(0, len(lines), args.de_every)
    x, y = lines.images[pick].copy(), lines.labels[pick].copy()
    dt, result = timed(lambda: exhaustive_flips(net, x))
    exhaustive = result.image_success()
    rows: dict[str, Any] = {
        "exhaustive": {
            "engine": result.engine,
            "success_rate": float(exhaustive.mean()),
            "seconds": dt,
            "adversarial_share": result.share(),
        }
    }
    req = AttackRequest(
        attack="one_pixel",
        norm="l0",
        eps=None,
        params={"pixels": 1, "steps": 10, "popsize": 10},
        targeted=False,
    )
    for backend, model in (
        ("torchattacks", ModelWrapper(net)),
        ("art", ModelWrapper(ThirdLogit(net))),
    ):
        dt, out = timed(
            lambda b=backend, m=model: adapter_class(b)(model=m).generate(req, x, y, None, seed=0)
        )
        ok = model.logits(out.x_adv).argmax(1) != y
        changed = np.abs(out.x_adv - x) > 1e-6
        is_flip = np.isin(out.x_adv[changed], (0.0, 1.0)).all()
        rows[backend] = {
            "class": out.library_call.get("class", "PixelAttack"),
            "success_rate": float(ok.mean()),
            "seconds": dt,
            "found_where_exhaustive_found": int((ok & exhaustive).sum()),
            "found_where_no_flip_works": int((ok & ~exhaustive).sum()),
            "changes_are_flips": bool(is_flip),
        }
    return {
        "size": 16,
        "angle_step": 2.0,
        "images": len(x),
        "images_with_adversarial_flip": int(exhaustive.sum()),
        "params": dict(req.params),
        "methods": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--images-32", type=int, default=8)
    parser.add_argument("--images-64", type=int, default=2)
    parser.add_argument("--fast-factor", type=int, default=8, help="fast engine: x more images")
    parser.add_argument("--de-every", type=int, default=2, help="DE attacks: every k-th D=16 image")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads ran up to "
        "10x slower whenever another process held a core; 0 keeps torch's default)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    speeds = [engine_speeds(size, args) for size in args.sizes]
    de = de_comparison(args)
    result = {
        "benchmark": "exhaustive one-pixel flips: engines vs forward limit; vs DE attacks",
        "speeds": speeds,
        "de_comparison": de,
        "total_seconds": time.perf_counter() - t0,
        "load_average_before_after": [load_before, os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    }
    out = Path(__file__).with_name("results_pixelflip.json")
    out.write_text(json.dumps(result, indent=2))

    print(f"{'D':>3}  {'engine':<11} {'cand/s':>10}  {'x forward':>9}  verdicts = brute")
    for s in speeds:
        for name in ("forward", "bruteforce", "generic", "fast"):
            same = s["verdicts_equal"].get(name, "")
            print(
                f"{s['size']:>3}  {name:<11} {s['candidates_per_s'][name]:>10.0f}  "
                f"{s['ratio_to_forward'][name]:>9.2f}  {same}"
            )
        print(f"     ({s['weights']}; {s['images']} images, fast {s['images_fast']})")
    print(
        f"\nD=16, {de['images']} images, {de['images_with_adversarial_flip']} with an "
        f"adversarial flip; one_pixel {de['params']}"
    )
    print(f"{'method':<13} {'success':>8} {'seconds':>8}  found/exhaustive  found elsewhere")
    for name, row in de["methods"].items():
        found = row.get("found_where_exhaustive_found", int(row["success_rate"] * de["images"]))
        elsewhere = row.get("found_where_no_flip_works", 0)
        print(
            f"{name:<13} {row['success_rate']:>8.3f} {row['seconds']:>8.2f}  "
            f"{found:>7} / {de['images_with_adversarial_flip']:<7}  {elsewhere:>6}"
        )
    print(f"\ntotal {result['total_seconds']:.0f} s; {result['machine']}; wrote {out}")


if __name__ == "__main__":
    main()
