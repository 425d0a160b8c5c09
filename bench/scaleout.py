"""Scale-out: the exhaustive one-pixel sweep of the D = 32 line data set (Kügler et al.)
on a Dask LocalCluster of 1 worker process vs 2 worker processes.

Every unique 32×32 line image at the given angle step (854 images at 2°), every pixel
flipped (1024 candidates per image), classified by the paper's LineCNN trained on all of
them (the cached builtin, :func:`unified_adv.sources.builtin.line_cnn.builtin_line_cnn`), with the fast
engine (:func:`unified_adv.analyses.pixelflip.exhaustive_flips`). The images are cut into shards of
``--shard`` images, one task per shard, submitted through
:meth:`unified_adv.run.executors.DaskExecutor.map`. A task carries only plain data (size, angle
step, seed, image range): each worker rebuilds the line images and loads the cached net
once (``cached_on_worker``), as the unit tasks of a scenario do.

Workers: one thread each (``threads_per_worker=1``; Dask's nanny starts them with
``OMP_NUM_THREADS=1``, and the task sets torch to one thread too). The in-process baseline
runs the whole sweep in one call on one torch thread. Both clusters are started and warmed
up (line images built, net loaded on every worker) before timing; then the three runs are
interleaved per repetition (in-process, 1 worker, 2 workers) and medians reported, so a
change in the machine's load hits all three alike. Every run's verdicts must be equal to
the in-process ones (checked, recorded).

Writes bench/results_scaleout.json.
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

from unified_adv.analyses.pixelflip import exhaustive_flips
from unified_adv.run.executors import DaskExecutor, cached_on_worker
from unified_adv.sources.builtin.line_cnn import builtin_line_cnn
from unified_adv.sources.lines import generate_lines

HERE = Path(__file__).resolve().parent


def _lines_and_net(size: int, step: float, seed: int) -> tuple[np.ndarray, Any]:
    """This process's line images and trained net (built once per process)."""

    def build() -> tuple[np.ndarray, Any]:
        torch.set_num_threads(1)
        images = generate_lines(size, step).images
        net, _ = builtin_line_cnn(size, step, seed)
        return images, net

    return cached_on_worker(("scaleout-lines", size, step, seed), build)  # type: ignore[no-any-return]


def flip_shard(task: tuple[int, float, int, int, int]) -> dict[str, Any]:
    """One task: every one-pixel flip of images [start, stop), from plain data."""
    size, step, seed, start, stop = task
    torch.set_num_threads(1)
    images, net = _lines_and_net(size, step, seed)
    t0 = time.perf_counter()
    res = exhaustive_flips(net, images[start:stop], engine="fast")
    return {
        "start": start,
        "adversarial": res.adversarial,
        "clean_pred": res.clean_pred,
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
    }


def warm(size: int, step: float, seed: int) -> int:
    _lines_and_net(size, step, seed)
    return os.getpid()


def sweep_dask(
    ex: DaskExecutor, n: int, args: argparse.Namespace
) -> tuple[float, np.ndarray, np.ndarray, dict[int, float]]:
    tasks = [
        (args.size, args.step, args.seed, s, min(n, s + args.shard))
        for s in range(0, n, args.shard)
    ]
    adv = np.zeros((n, 1, args.size, args.size), dtype=bool)
    clean = np.zeros(n, dtype=np.int64)
    busy: dict[int, float] = {}
    t0 = time.perf_counter()
    for _, out in ex.map(flip_shard, tasks, name="flip-shard"):
        s = out["start"]
        adv[s : s + len(out["clean_pred"])] = out["adversarial"]
        clean[s : s + len(out["clean_pred"])] = out["clean_pred"]
        busy[out["pid"]] = busy.get(out["pid"], 0.0) + out["seconds"]
    return time.perf_counter() - t0, adv, clean, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--step", type=float, default=2.0, help="angle step in degrees")
    parser.add_argument("--seed", type=int, default=0, help="the LineCNN's training seed")
    parser.add_argument(
        "--shard", type=int, default=64, help="images per task (the fast engine batches 64)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results_scaleout.json")
    args = parser.parse_args()

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lines = generate_lines(args.size, args.step)
    net, details = builtin_line_cnn(args.size, args.step, args.seed)  # trains once, cached
    images = lines.images
    n = len(images)
    print(
        f"D={args.size}, {args.step:g}°: {n} images, {n * args.size**2} candidates; "
        f"net ready in {time.perf_counter() - t0:.1f} s ({details.get('cache')})",
        flush=True,
    )

    executors: dict[int, DaskExecutor] = {}
    startup: dict[int, float] = {}
    try:
        for w in args.workers:
            t0 = time.perf_counter()
            ex = DaskExecutor(workers=w)
            ex.client.wait_for_workers(w, timeout=120)
            pids = ex.client.run(warm, args.size, args.step, args.seed)
            startup[w] = time.perf_counter() - t0
            executors[w] = ex
            print(f"cluster of {w} worker(s) up and warm in {startup[w]:.1f} s: {pids}", flush=True)

        times: dict[str, list[float]] = {
            "in_process": [],
            **{f"workers_{w}": [] for w in args.workers},
        }
        busy: dict[str, list[dict[int, float]]] = {f"workers_{w}": [] for w in args.workers}
        equal: dict[str, bool] = {f"workers_{w}": True for w in args.workers}
        ref = None
        for r in range(args.repeats):
            t = time.perf_counter()
            res = exhaustive_flips(net, images, engine="fast")
            times["in_process"].append(time.perf_counter() - t)
            if ref is None:
                ref = res
            assert np.array_equal(res.adversarial, ref.adversarial)
            for w, ex in executors.items():
                dt, adv, clean, per_pid = sweep_dask(ex, n, args)
                key = f"workers_{w}"
                times[key].append(dt)
                busy[key].append(per_pid)
                equal[key] &= bool(
                    np.array_equal(adv, ref.adversarial) and np.array_equal(clean, ref.clean_pred)
                )
            print(
                f"repeat {r + 1}/{args.repeats}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                flush=True,
            )
    finally:
        for ex in executors.values():
            ex.close()

    assert ref is not None
    med = {k: statistics.median(v) for k, v in times.items()}
    candidates = n * args.size * args.size
    base = f"workers_{args.workers[0]}"
    rows = []
    for k in times:
        w = int(k.split("_")[1]) if k.startswith("workers_") else None
        rows.append(
            {
                "run": k,
                "workers": w,
                "median_s": med[k],
                "candidates_per_s": candidates / med[k],
                "speedup_vs_1_worker": med[base] / med[k] if w is not None else None,
                "speedup_vs_in_process": med["in_process"] / med[k],
                "parallel_efficiency": (med[base] * args.workers[0]) / (med[k] * w)
                if w is not None
                else None,
                "equal_to_in_process": equal.get(k, True),
            }
        )
    result = {
        "benchmark": "exhaustive one-pixel sweep of the line data set, Dask LocalCluster 1 vs 2 workers",
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_after": os.getloadavg(),
        "size": args.size,
        "angle_step": args.step,
        "images": n,
        "candidates": candidates,
        "adversarial_candidates": ref.n_adversarial,
        "images_with_adversarial_flip": int(ref.image_success().sum()),
        "engine": ref.engine,
        "shard_images": args.shard,
        "tasks": -(-n // args.shard),
        "repeats": args.repeats,
        "threads_per_worker": 1,
        "cluster_startup_s": startup,
        "seconds": times,
        "worker_busy_s": busy,
        "rows": rows,
        "speedup_2_vs_1_workers": (
            med["workers_1"] / med["workers_2"] if {1, 2} <= set(args.workers) else None
        ),
        "all_equal": all(equal.values()),
    }
    args.out.write_text(json.dumps(result, indent=2, default=str))

    print(
        f"\n{'run':<14}{'median s':>10}{'cand/s':>12}{'vs 1 worker':>13}{'vs in-proc':>12}{'equal':>7}"
    )
    for row in rows:
        sp = row["speedup_vs_1_worker"]
        print(
            f"{row['run']:<14}{row['median_s']:>10.2f}{row['candidates_per_s']:>12.0f}"
            f"{(f'{sp:.2f}x' if sp else '-'):>13}{row['speedup_vs_in_process']:>11.2f}x"
            f"{str(row['equal_to_in_process']):>7}"
        )
    if result["speedup_2_vs_1_workers"]:
        print(f"speed-up 2 vs 1 workers: {result['speedup_2_vs_1_workers']:.2f}x")
    print(
        f"-> {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out}"
    )
    if not result["all_equal"]:
        raise SystemExit("scale-out verdicts differ from the in-process sweep")


if __name__ == "__main__":
    main()
