"""Speed and memory at real sizes: a torchvision ResNet-18 (num_classes=10, random init:
the speed of an attack does not depend on the weights) at 32x32x3 and 224x224x3.

Side by side in one run, in one process, interleaved (ours, direct, ours, direct, ...) after
a warm-up, medians over ``--reps`` repetitions:

* **ours**: one unit through unified-adv (``execute_unit``: the library call(s) in batches
  of ``execution.batch_size``, then unified-adv's own scoring forward passes), the model and
  data given in memory (the notebook API's path, ``prepare(scenario, model=, data=)``);
* **direct**: the same library called directly with the arguments the adapter passed
  (replayed from the unit's ``library_call`` record; estimators built once, outside the
  timed region), then one scoring forward pass, as overhead.py does;
* **limit**: the model's batched forward+backward time, times the attack's gradient steps,
  plus one forward pass: what no attack can beat on this machine.

Then **memory**: FGSM on every backend on 1k -> 10k images at 32x32 through ``unified_adv.run``
(cross-check and report included; ``execution.shard_size`` 512, the default), each size in a
fresh subprocess reading its own ``ru_maxrss`` before the run (model and images loaded) and at
its end; and the
**report** at 224x224: the time to evaluate, write the tables and render, and index.html's size.

The issue's sizes are ``--n 1000 --n224 64``; the defaults (128 images at 32x32, 8 at
224x224, one torch thread: ``--threads 1``) keep the whole bench near 20 min under ``nice`` on
a shared 2-core machine. ``--device cuda`` runs it on a GPU (writes
results_at_size_cuda.json). Writes bench/results_at_size.json after each part.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
BACKENDS = ("art", "foolbox", "torchattacks")
EPS = 8 / 255
#: attack -> (parameters, gradient steps per sample) at 32x32; 224x224 uses fewer steps.
ATTACKS_32: dict[str, tuple[dict[str, Any], int]] = {
    "fgsm": ({}, 1),
    "pgd": ({"steps": 10, "step_size": 2 / 255, "random_starts": 0}, 10),
    "apgd": ({"steps": 10, "restarts": 1}, 10),
}
ATTACKS_224: dict[str, tuple[dict[str, Any], int]] = {
    "fgsm": ({}, 1),
    "pgd": ({"steps": 3, "step_size": 2 / 255, "random_starts": 0}, 3),
}


def resnet18(device: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval().to(device)


def images(n: int, side: int, net: nn.Module, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random images; labels are the model's own predictions (every sample is
    correctly classified, so every sample is attacked)."""
    x = np.random.default_rng(0).random((n, 3, side, side), dtype=np.float32)
    with torch.no_grad():
        y = np.concatenate(
            [
                net(torch.from_numpy(x[i : i + 64]).to(device)).argmax(1).cpu().numpy()
                for i in range(0, n, 64)
            ]
        )
    return x, y.astype(np.int64)


def fb_seconds(
    net: nn.Module, x: np.ndarray, batch: int, device: str, reps: int
) -> tuple[float, float]:
    """Median wall and CPU time of one batched forward+backward (input gradients) over x."""
    times = []
    labels = torch.zeros(len(x), dtype=torch.long, device=device)
    for _ in range(reps + 1):

        def once() -> None:
            for i in range(0, len(x), batch):
                xb = torch.from_numpy(x[i : i + batch]).to(device).requires_grad_(True)
                nn.functional.cross_entropy(net(xb), labels[i : i + batch]).backward()

        times.append(_timed(once))
    return _median(times[1:])


def _median(times: list[tuple[float, float]]) -> tuple[float, float]:
    """(median wall, median CPU) of (wall, CPU) pairs."""
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def _cls(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def direct_call(call: dict[str, Any], wrapper: Any, n: int) -> Callable[..., np.ndarray]:
    """The library called directly with the arguments the adapter passed (its record)."""
    cls = _cls(call["class"])
    kw = dict(call["kwargs"])
    if call["library"] == "adversarial-robustness-toolbox":
        from art.estimators.classification import PyTorchClassifier

        est_args = dict(call["PyTorchClassifier"])
        est_args.update(
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(est_args["input_shape"]),
            clip_values=tuple(est_args["clip_values"]),
            preprocessing=tuple(est_args["preprocessing"]),
        )
        est = PyTorchClassifier(model=wrapper, **est_args)
        kw = {k: (np.inf if v == "inf" else v) for k, v in kw.items()}
        classes = est_args["nb_classes"]
        return lambda x, y: cls(est, **kw).generate(x=x, y=np.eye(classes, dtype=np.float32)[y])
    if call["library"] == "foolbox":
        import foolbox as fb

        fm = call["PyTorchModel"]
        fmodel = fb.PyTorchModel(
            wrapper, bounds=tuple(fm["bounds"]), device=fm["device"], preprocessing=None
        )
        eps = call["call"]["epsilons"]

        def fool(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            crit = fb.criteria.Misclassification(torch.from_numpy(y).to(wrapper.device))
            xt = torch.from_numpy(x).to(wrapper.device)
            return cls(**kw)(fmodel, xt, crit, epsilons=eps)[1].detach().cpu().numpy()

        return fool

    def ta(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        atk = cls(wrapper, **kw)
        atk.set_model_training_mode(
            model_training=False, batchnorm_training=False, dropout_training=False
        )
        xt, yt = torch.from_numpy(x).to(wrapper.device), torch.from_numpy(y).to(wrapper.device)
        return atk(xt, yt).detach().cpu().numpy()

    return ta


def _timed(f: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of ``f()``. On the CPU the ratios
    use CPU seconds: one torch thread does the work, and other processes on a shared
    machine inflate wall time, not the CPU time of this one. On a GPU: wall time."""
    t0, c0 = time.perf_counter(), time.process_time()
    f()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def size_rows(
    side: int, n: int, attacks: dict[str, tuple[dict[str, Any], int]], args: Any
) -> dict[str, Any]:
    """Every (attack, backend) at one image size: ours vs direct vs the f+b limit."""
    from unified_adv.adapters import adapter_class, backends_with
    from unified_adv.adapters.base import seed_everything
    from unified_adv.api import as_scenario
    from unified_adv.run.execute import execute_unit
    from unified_adv.run.plan import plan_units
    from unified_adv.run.prepare import prepare

    net = resnet18(args.device)
    x, y = images(n, side, net, args.device)
    batch = min(args.batch_size, n)
    scenario = {
        "name": f"at-size-{side}",
        "model": {"device": args.device},
        "data": {"only_correct": False},
        "attacks": [
            {"name": a, "eps": EPS, "backends": [b for b in BACKENDS if b in backends_with(a)], **p}
            for a, (p, _) in attacks.items()
        ],
        "execution": {"batch_size": batch, "shard_size": n},
        "report": {"triptychs": 0},
    }
    prep = prepare(as_scenario(scenario, model=net, data=(x, y)), model=net, data=(x, y))
    k = 0 if args.device.startswith("cuda") else 1  # which clock the ratios use: wall / CPU
    fwd = _median([_timed(lambda: prep.model.wrapper.logits(x)) for _ in range(3)])
    wrapper = prep.model.wrapper
    # On the wrapped model, as the attacks see it: parameters frozen (no weight gradients).
    fb = fb_seconds(wrapper, x, batch, args.device, args.reps)
    adapters = {b: adapter_class(b)(model=wrapper) for b in BACKENDS}
    rows = []
    for unit in plan_units(prep):
        steps = attacks[unit.attack][1]
        outcome = execute_unit(prep, unit, adapters[unit.backend])  # warm-up
        assert outcome.arrays is not None, outcome.meta.get("error")
        direct = direct_call(outcome.meta["library_call"], wrapper, batch)

        def lib() -> None:  # the library per batch, then one scoring pass over every image
            seed_everything(unit.seed)
            outs = [direct(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]
            wrapper.logits(np.concatenate(outs).astype(np.float32, copy=False))

        _timed(lib)
        ours_t, lib_t = [], []
        for _ in range(args.reps):
            ours_t.append(_timed(lambda: execute_unit(prep, unit, adapters[unit.backend])))
            lib_t.append(_timed(lib))
        ours, lib_s = _median(ours_t), _median(lib_t)
        limit = steps * fb[k] + fwd[k]
        row = {
            "attack": unit.attack, "backend": unit.backend, "images": n, "side": side,
            "steps": steps, "batch_size": batch, "repeats": args.reps,
            "clock": "wall" if k == 0 else "cpu",
            "ours_s": ours[k], "direct_s": lib_s[k], "ratio": ours[k] / lib_s[k],
            "ours_wall_s": ours[0], "direct_wall_s": lib_s[0], "ratio_wall": ours[0] / lib_s[0],
            "limit_s": limit, "ratio_to_limit": ours[k] / limit, "ours_runs_s": ours_t,
            "direct_runs_s": lib_t,
        }  # fmt: skip
        rows.append(row)
        print(
            f"{side}px {unit.attack:5s} {unit.backend:12s} n={n} ours {row['ours_s']:7.2f}s "
            f"direct {row['direct_s']:7.2f}s ratio {row['ratio']:5.3f} ({row['clock']}) limit "
            f"{limit:6.2f}s ({row['ratio_to_limit']:4.1f}x)",
            flush=True,
        )
    return {
        "side": side, "images": n, "clock": "wall" if k == 0 else "cpu", "fb_seconds": fb[k],
        "forward_seconds": fwd[k], "rows": rows,
    }  # fmt: skip


CHILD = """
import resource, sys, time, numpy as np, torch, torchvision, unified_adv
n, batch, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if int(sys.argv[5]):
    torch.set_num_threads(int(sys.argv[5]))
torch.manual_seed(0)
net = torchvision.models.resnet18(num_classes=10).eval()
x = np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32)
y = np.random.default_rng(1).integers(0, 10, n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scenario = {"name": f"mem-{n}", "model": {"device": device}, "data": {"only_correct": False},
            "attacks": [{"name": "fgsm", "eps": 8 / 255, "backends": sys.argv[6].split(",")}],
            "execution": {"batch_size": batch}}
t0 = time.perf_counter()
unified_adv.run(scenario, sys.argv[4], model=net, data=(x, y), progress=False, force=True)
print(time.perf_counter() - t0, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_rows(args: Any) -> dict[str, Any]:
    """Peak RSS of a whole run (FGSM, torchattacks, report included) per image count."""
    rows = []
    for n in args.memory_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), str(args.batch_size), args.device, tmp,
                 str(args.threads or 0), ",".join(BACKENDS)],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
        seconds, before, peak = float(out[-3]), int(out[-2]), int(out[-1])
        row = {
            "images": n, "batch_size": args.batch_size, "run_seconds": seconds,
            "rss_before_run_mib": before / 1024, "peak_rss_mib": peak / 1024,
            "run_increment_mib": (peak - before) / 1024,
            "data_mib": n * 3 * 32 * 32 * 4 / 2**20,
        }  # fmt: skip
        rows.append(row)
        print(
            f"memory n={n}: {seconds:.1f} s, peak RSS {peak / 1024:.0f} MiB, "
            f"{(peak - before) / 1024:.0f} MiB above the loaded model and images",
            flush=True,
        )
    a, b = rows[0], rows[-1]
    per_1000 = lambda key: (b[key] - a[key]) / max(b["images"] - a["images"], 1) * 1000  # noqa: E731
    return {
        "rows": rows,
        "backends": list(BACKENDS),
        "shard_size": 512,
        "mib_per_1000_images": per_1000("peak_rss_mib"),
        "run_increment_mib_per_1000_images": per_1000("run_increment_mib"),
        "data_mib_per_1000_images": 1000 * 3 * 32 * 32 * 4 / 2**20,
    }


def report_row(args: Any) -> dict[str, Any]:
    """A whole run at 224x224 (FGSM, every backend): evaluation + tables + report timed
    apart from the attacks; index.html's size."""
    from unified_adv import api
    from unified_adv.analyses.driver import run_analyses
    from unified_adv.run.execute import LocalExecutor, run_units
    from unified_adv.run.outdir import make_out_dir
    from unified_adv.run.plan import plan_units
    from unified_adv.run.prepare import prepare

    n = args.report_n
    net = resnet18(args.device)
    x, y = images(n, 224, net, args.device)
    raw = {
        "name": "report-224", "model": {"device": args.device}, "data": {"only_correct": False},
        "attacks": [{"name": "fgsm", "eps": EPS}],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        scenario = api.as_scenario(raw, model=net, data=(x, y))
        prep = prepare(scenario, model=net, data=(x, y))
        make_out_dir(out, scenario.name)
        started = datetime.datetime.now(datetime.timezone.utc)
        outcomes = run_units(prep, plan_units(prep), out / "units", executor=LocalExecutor())
        analysis = run_analyses(prep, out / "units")
        t0 = time.perf_counter()
        api._evaluate_and_report(prep, outcomes, analysis, {"executor": "local"}, out, started, 0.0)
        seconds = time.perf_counter() - t0
        size = (out / "index.html").stat().st_size
    print(
        f"report 224px, {n} images: {seconds:.1f} s, index.html {size / 1024:.0f} KiB", flush=True
    )
    return {"images": n, "side": 224, "report_seconds": seconds, "index_html_bytes": size}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=128, help="images at 32x32 (the issue: 1000)")
    p.add_argument("--n224", type=int, default=8, help="images at 224x224 (the issue: 64)")
    p.add_argument("--report-n", type=int, default=64, help="images in the 224x224 report")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128, help="execution.batch_size")
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--parts", default="32,224,memory,report")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--merge", action="store_true", help="keep the other parts already in the results file"
    )
    args = p.parse_args()
    parts = args.parts.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    name = "results_at_size.json" if args.device == "cpu" else "results_at_size_cuda.json"
    path = args.out or HERE / name
    result: dict[str, Any] = {}
    if args.merge and path.is_file():  # keep the parts this run does not redo
        result = json.loads(path.read_text())
    result.update(benchmark="at size: ResNet-18 at 32x32x3 and 224x224x3", eps=EPS)
    given = sys.argv[1:]
    if "--out" in given:  # where the file went is not how it was measured
        i = given.index("--out")
        given = given[:i] + given[i + 2 :]
    command = " ".join(given)
    result["command"] = (
        f"{result['command']}; {command}" if args.merge and "command" in result else command
    )
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "32": lambda: size_rows(32, args.n, ATTACKS_32, args),
        "224": lambda: size_rows(224, args.n224, ATTACKS_224, args),
        "memory": lambda: memory_rows(args),
        "report": lambda: report_row(args),
    }
    for part in parts:  # written after each part: a later failure keeps the earlier ones
        result[{"32": "at_32", "224": "at_224"}.get(part, part)] = steps[part]()
        result["machine"] = {
            "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "load_average_at_end": os.getloadavg(),
        }  # fmt: skip
        result["total_seconds"] = time.perf_counter() - t_start
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
