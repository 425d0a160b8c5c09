"""Adapter overhead: unified-adv's adapter vs the same library called directly.

For each (attack, backend) row, the same attack with the same parameters on the same
model and batch runs (a) through ``adapter_class(backend)(model=wrapper).generate(...)``
and (b) through the library directly, with exactly the arguments the adapter passes
(the ART PyTorchClassifier / Foolbox PyTorchModel built once, outside the timed region).
Both sides end with one forward pass to score. Both run in this process, interleaved
(a, b, a, b, ...) after a warm-up; the figures are medians over the repetitions.
Rows whose ratio is above 1.05 for a unit of >= 100 ms are profiled with cProfile.
Writes bench/results_overhead.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.adapters.base import seed_everything
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

# attack -> (norm, eps, canonical overrides, batch size, repetitions)
ROWS: dict[str, tuple[str, float | None, dict[str, Any], int, int]] = {
    "fgsm": ("linf", 0.1, {}, 540, 5),
    "pgd": ("linf", 0.1, {"steps": 20, "step_size": 0.01, "random_starts": 0}, 540, 5),
    "deepfool": ("l2", None, {"steps": 50, "overshoot": 0.02, "candidates": 10}, 100, 3),
    "cw_l2": (
        "l2",
        None,
        {"steps": 100, "lr": 0.05, "c": 1.0, "confidence": 0.0, "binary_search_steps": 1},
        100,
        3,
    ),
}
BACKENDS = ("art", "foolbox", "torchattacks")


def direct_art(wrapper: ModelWrapper, attack: str, req: AttackRequest, n: int) -> Callable:
    from art.attacks import evasion
    from art.estimators.classification import PyTorchClassifier

    est = PyTorchClassifier(
        model=wrapper,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=wrapper.input_range,
        channels_first=True,
        preprocessing=(0.0, 1.0),
        device_type="cpu",
    )
    p = req.params
    if attack == "fgsm":
        cls, kw = evasion.FastGradientMethod, {
            "norm": np.inf, "eps": req.eps, "eps_step": req.eps, "targeted": False,
            "num_random_init": 0, "batch_size": n, "minimal": False, "summary_writer": False,
        }  # fmt: skip
    elif attack == "pgd":
        cls, kw = evasion.ProjectedGradientDescent, {
            "norm": np.inf, "eps": req.eps, "eps_step": p["step_size"], "max_iter": p["steps"],
            "targeted": False, "num_random_init": p["random_starts"], "batch_size": n,
            "decay": None, "random_eps": False, "summary_writer": False, "verbose": False,
        }  # fmt: skip
    elif attack == "deepfool":
        cls, kw = evasion.DeepFool, {
            "max_iter": p["steps"], "epsilon": p["overshoot"], "nb_grads": p["candidates"],
            "batch_size": n, "verbose": False,
        }  # fmt: skip
    else:
        cls, kw = evasion.CarliniL2Method, {
            "confidence": p["confidence"], "targeted": False, "learning_rate": p["lr"],
            "binary_search_steps": p["binary_search_steps"], "max_iter": p["steps"],
            "initial_const": p["c"], "max_halving": 5, "max_doubling": 5, "batch_size": n,
            "verbose": False,
        }  # fmt: skip

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        labels = np.eye(10, dtype=np.float32)[y]
        return cls(est, **kw).generate(x=x, y=labels)

    return run


def direct_foolbox(wrapper: ModelWrapper, attack: str, req: AttackRequest, n: int) -> Callable:
    import foolbox as fb

    fmodel = fb.PyTorchModel(
        wrapper, bounds=wrapper.input_range, device=wrapper.device, preprocessing=None
    )
    p = req.params
    eps: float | None = req.eps
    if attack == "fgsm":
        cls, kw = fb.attacks.LinfFastGradientAttack, {"random_start": False}
    elif attack == "pgd":
        cls, kw = fb.attacks.LinfPGD, {
            "abs_stepsize": p["step_size"], "steps": p["steps"],
            "random_start": bool(p["random_starts"]),
        }  # fmt: skip
    elif attack == "deepfool":
        cls, kw = fb.attacks.L2DeepFoolAttack, {
            "steps": p["steps"], "candidates": p["candidates"], "overshoot": p["overshoot"],
            "loss": "logits",
        }  # fmt: skip
        eps = None
    else:
        cls, kw = fb.attacks.L2CarliniWagnerAttack, {
            "binary_search_steps": p["binary_search_steps"], "steps": p["steps"],
            "stepsize": p["lr"], "confidence": p["confidence"], "initial_const": p["c"],
            "abort_early": False,
        }  # fmt: skip
        eps = None

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x)
        crit = fb.criteria.Misclassification(torch.from_numpy(y))
        _raw, clipped, _ok = cls(**kw)(fmodel, xt, crit, epsilons=eps)
        return clipped.detach().cpu().numpy()

    return run


def direct_torchattacks(wrapper: ModelWrapper, attack: str, req: AttackRequest, n: int) -> Callable:
    import torchattacks

    p = req.params
    if attack == "fgsm":
        cls, kw = torchattacks.FGSM, {"eps": req.eps}
    elif attack == "pgd":
        cls, kw = torchattacks.PGD, {
            "eps": req.eps, "alpha": p["step_size"], "steps": p["steps"],
            "random_start": bool(p["random_starts"]),
        }  # fmt: skip
    elif attack == "deepfool":
        cls, kw = torchattacks.DeepFool, {"steps": p["steps"], "overshoot": p["overshoot"]}
    else:
        cls, kw = torchattacks.CW, {
            "c": p["c"], "kappa": p["confidence"], "steps": p["steps"], "lr": p["lr"],
        }  # fmt: skip

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        atk = cls(wrapper, **kw)
        atk.set_model_training_mode(
            model_training=False, batchnorm_training=False, dropout_training=False
        )
        return atk(torch.from_numpy(x), torch.from_numpy(y)).detach().cpu().numpy()

    return run


DIRECT = {"art": direct_art, "foolbox": direct_foolbox, "torchattacks": direct_torchattacks}


def top_functions(fn: Callable[[], Any], limit: int = 12) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(limit)
    return [line for line in buf.getvalue().splitlines() if line.strip()][-limit - 1 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attacks", default=",".join(ROWS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--slow-n", type=int, default=None, help="override DeepFool/C&W batch")
    args = parser.parse_args()
    t_start = time.perf_counter()

    net, _ = builtin_digits_cnn()
    wrapper = ModelWrapper(net)
    _, _, x_all, y_all, _, _ = digits_split()

    # The forward limit: batched forward passes over the held-out digits.
    wrapper.logits(x_all)
    fwd = []
    for _ in range(20):
        t0 = time.perf_counter()
        wrapper.logits(x_all)
        fwd.append(time.perf_counter() - t0)
    forward_ips = len(x_all) / statistics.median(fwd)

    rows: list[dict[str, Any]] = []
    for attack in args.attacks.split(","):
        norm, eps, overrides, n, reps = ROWS[attack]
        if args.slow_n and attack in ("deepfool", "cw_l2"):
            n = args.slow_n
        x, y = x_all[:n], y_all[:n]
        req = AttackRequest(attack, norm, eps, ATTACKS[attack].resolve(eps, overrides), False)
        for backend in args.backends.split(","):
            cls = adapter_class(backend)
            if attack not in cls.capabilities:
                continue
            direct = DIRECT[backend](wrapper, attack, req, n)
            # Like with like: the runner builds one adapter per backend per run, as the
            # direct side builds its estimator once, outside the timed region.
            adapter = cls(model=wrapper)

            def ours() -> np.ndarray:
                out = adapter.generate(req, x, y, None, seed=0).x_adv
                wrapper.logits(out)
                return out

            def lib() -> np.ndarray:
                seed_everything(0)
                out = np.asarray(direct(x, y), dtype=np.float32)
                wrapper.logits(out)
                return out

            def timed(f: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
                t0 = time.perf_counter()
                out = f()
                return time.perf_counter() - t0, out

            w_a, _ = timed(ours)  # warm-up
            w_b, _ = timed(lib)
            r = reps if max(w_a, w_b) < 6 else max(2, reps - 1)
            ta, tb = [], []
            for _ in range(r):
                da, xa = timed(ours)
                db, xb = timed(lib)
                ta.append(da)
                tb.append(db)
            ma, mb = statistics.median(ta), statistics.median(tb)
            row = {
                "attack": attack,
                "backend": backend,
                "samples": n,
                "repeats": r,
                "ours_s": ma,
                "direct_s": mb,
                "ratio": ma / mb,
                "fixed_cost_ms": 1000 * statistics.median(a - b for a, b in zip(ta, tb)),
                "identical": bool(np.array_equal(xa, xb)),
                "max_abs_diff": float(np.abs(xa - xb).max()),
            }
            if row["ratio"] > 1.05 and mb >= 0.1:
                row["profile_ours"] = top_functions(ours)
                row["profile_direct"] = top_functions(lib)
            rows.append(row)
            print(
                f"{attack:9s} {backend:13s} n={n:4d} reps={r} ours {ma:8.3f}s  direct {mb:8.3f}s"
                f"  ratio {ma / mb:5.3f}  fixed {row['fixed_cost_ms']:8.2f} ms"
                f"  identical={row['identical']} (max diff {row['max_abs_diff']:.2g})",
                flush=True,
            )

    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print()
    print(f"forward limit: {forward_ips:,.0f} images/s (batched logits over {len(x_all)} digits)")
    print(f"{'attack':9s} {'backend':13s} {'n':>4s} {'ours s':>9s} {'direct s':>9s} "
          f"{'ratio':>6s} {'fixed ms':>9s}  same")  # fmt: skip
    for r_ in rows:
        print(
            f"{r_['attack']:9s} {r_['backend']:13s} {r_['samples']:4d} {r_['ours_s']:9.3f} "
            f"{r_['direct_s']:9.3f} {r_['ratio']:6.3f} {r_['fixed_cost_ms']:9.2f}  "
            f"{'yes' if r_['identical'] else 'max diff %.2g' % r_['max_abs_diff']}"
        )
    for r_ in rows:
        if "profile_ours" in r_:
            print(f"\nprofile {r_['attack']}/{r_['backend']} (ours, by cumulative time):")
            print("\n".join(r_["profile_ours"]))
            print(f"profile {r_['attack']}/{r_['backend']} (direct):")
            print("\n".join(r_["profile_direct"]))
    result = {
        "benchmark": "adapter overhead: unified-adv generate vs direct library call",
        "forward_images_per_s": forward_ips,
        "rows": rows,
        "machine": machine,
        "total_seconds": time.perf_counter() - t_start,
    }
    Path(__file__).with_name("results_overhead.json").write_text(json.dumps(result, indent=2))
    print(f"\ntotal {result['total_seconds']:.1f} s; machine {machine}")


if __name__ == "__main__":
    main()
