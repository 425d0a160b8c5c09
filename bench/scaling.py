"""Time and peak memory of the quickstart attacks as the number of samples grows.

Each size runs in its own process (so its peak resident memory is its own) on all
1,797 scikit-learn digits (the quickstart's held-out split has only 540): FGSM and PGD
(L-inf, eps 0.1, 50 steps) on all three backends. Reports seconds and peak RSS per size
and the least-squares slope (seconds per sample) with its R². Writes
bench/results_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCENARIO = """
name: scaling-{n}
model: {{builtin: digits-cnn}}
data: {{npz: digits.npz, limit: {n}, only_correct: true}}
attacks:
  - {{name: fgsm, eps: 0.1}}
  - {{name: pgd, eps: 0.1, steps: 50, step_size: 0.01, random_starts: 0}}
report: {{triptychs: 0}}
"""

CHILD = """
import sys, time, unified_adv
t0 = time.perf_counter()
unified_adv.run(unified_adv.load_scenario(sys.argv[1]), sys.argv[2], progress=False)
print(time.perf_counter() - t0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 1797])
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.savez(
            folder / "digits.npz", x=(digits.images / 16.0).astype(np.float32), y=digits.target
        )
        for n in args.sizes:
            path = folder / f"scaling-{n}.yaml"
            path.write_text(SCENARIO.format(n=n))
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(folder / f"out-{n}")],
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            rows.append(
                {
                    "samples": n,
                    "run_seconds": float(done.stdout.strip().splitlines()[-1]),
                    "process_seconds": wall,
                    # ru_maxrss of children is the largest so far: report it only when it grew.
                    "peak_rss_mib": peak / 1024 if peak > before else None,
                }
            )
            print(
                f"{n:5d} samples  run {rows[-1]['run_seconds']:6.2f} s  "
                f"process {wall:6.2f} s  peak RSS {peak / 1024:7.1f} MiB",
                flush=True,
            )
    x = np.array([r["samples"] for r in rows], dtype=float)
    y = np.array([r["run_seconds"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
    result = {
        "benchmark": "quickstart attacks (FGSM + PGD on 3 backends) vs number of samples",
        "rows": rows,
        "slope_ms_per_sample": slope * 1000,
        "intercept_s": intercept,
        "r2": r2,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    Path(__file__).with_name("results_scaling.json").write_text(json.dumps(result, indent=2))
    print(f"slope {slope * 1000:.2f} ms/sample, intercept {intercept:.2f} s, R² {r2:.4f}")


if __name__ == "__main__":
    main()
