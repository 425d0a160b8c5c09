"""The cifar_shapes example at its real size, measured as a user would run it.

    python bench/shapes_example.py [--threads 1]

1. makes the data (``scripts/make_shapes_cifar.py``'s defaults: 5 x 1,000 training and 1,000
   test images in build/shapes/cifar-10-batches-py);
2. trains the ResNet-18 with ``scripts/train_shapes_resnet.py``'s defaults (build/shapes/
   resnet18_shapes.ts and .safetensors) and measures its held-out test accuracy;
3. runs ``unified-adv run scenarios/cifar_shapes.yaml`` in a child process
   (``scripts/run_with_peak_rss.py``): its wall time and peak RSS (``ru_maxrss`` of the whole
   process, report included), and from its summary.json the clean accuracy, the units and each
   attack's success rate per backend.

Writes bench/results_shapes_example.json; README.md's ``bench:shapes-example`` block quotes it
(``python bench/readme_numbers.py --only bench:shapes-example``). Every step uses ``--threads``
torch threads (default 1; the figures depend on it). About 6 min on one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "scenarios/cifar_shapes.yaml"
SHAPES = REPO / "build" / "shapes"  # where the scenario reads its data and model
#: The issue's bound on the example run's peak resident memory.
LIMIT_GIB = 4


def _script(name: str) -> ModuleType:
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_and_train(threads: int) -> dict[str, Any]:
    """Steps 1 and 2 with the scripts' defaults."""
    make, train = _script("make_shapes_cifar"), _script("train_shapes_resnet")
    t0 = time.perf_counter()
    make.write_shapes_cifar(SHAPES)
    data_s = time.perf_counter() - t0
    defaults = inspect.signature(train.train).parameters  # the command line's defaults
    t0 = time.perf_counter()
    _, test_accuracy = train.train(SHAPES, threads=threads)
    return {
        "data_seconds": data_s,
        "train_images": len(train.load_split(SHAPES, "train")[1]),
        "test_images": len(train.load_split(SHAPES, "test")[1]),
        "train_seconds": time.perf_counter() - t0,
        "epochs": defaults["epochs"].default,
        "seed": defaults["seed"].default,
        "test_accuracy": test_accuracy,
        # Seeded and deterministic on a given thread count: a rerun writes the same bytes.
        "weights_sha256": hashlib.sha256((SHAPES / "resnet18_shapes.safetensors").read_bytes()).hexdigest(),
    }


def run_example(threads: int) -> dict[str, Any]:
    """Step 3: the scenario through the command line in a child process."""
    measure = _script("run_with_peak_rss")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        m = measure.run_measured(["run", SCENARIO, "--out", str(out)], env=env, cwd=REPO)
        if m.returncode != 0:
            raise SystemExit(f"unified-adv run {SCENARIO} exited {m.returncode}")
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        report_bytes = (out / "index.html").stat().st_size
    attacks = [
        {k: a[k] for k in ("attack", "backend", "eps", "eps_text", "n_samples", "success_rate",
                           "n_ties", "robust_accuracy", "median_l2_fooled", "time_s")}
        for a in summary["attacks"]
        if a["status"] == "ok"
    ]
    return {
        "command": f"unified-adv run {SCENARIO}",
        "seconds": m.seconds,
        "peak_rss_mib": m.peak_rss_bytes / 2**20,
        "limit_gib": LIMIT_GIB,
        "under_limit": m.peak_rss_bytes < LIMIT_GIB * 2**30,
        "n_evaluated": summary["data"]["n_evaluated"],
        "n_attacked": summary["data"]["n_attacked"],
        "clean_accuracy": summary["data"]["clean_accuracy"],
        "model_fingerprint": summary["model"]["fingerprint"],
        "data_fingerprint": summary["data"]["fingerprint"],
        "units": len(summary["units"]),
        "units_ok": sum(u["status"] == "ok" for u in summary["units"]),
        "findings": sorted({f["code"] for f in summary["findings"]}),
        "report_bytes": report_bytes,
        "attacks": attacks,
        "crosscheck": [
            {k: p[k] for k in ("attack", "eps", "backends", "verdict", "explained")}
            for p in summary["crosscheck"]["pairs"]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every step")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results_shapes_example.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"benchmark": "the cifar_shapes example at size", "scenario": SCENARIO}
    result["train"] = make_and_train(args.threads)
    print(f"trained in {result['train']['train_seconds']:.0f} s, test accuracy "
          f"{100 * result['train']['test_accuracy']:.1f} %", flush=True)
    result["run"] = run_example(args.threads)
    result["command"] = " ".join(sys.argv[1:])
    result["machine"] = {
        "platform": platform.platform(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": args.threads,
        "load_average_at_end": os.getloadavg(),
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["run"]
    print(f"{r['command']}: {r['seconds']:.0f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
          f"clean accuracy {100 * r['clean_accuracy']:.1f} % -> {args.out}")


if __name__ == "__main__":
    main()
