"""Backend speed table: every catalogued attack on every backend that declares it.

Runs ``adapter.generate`` on the first N correctly classified held-out digits (N = 100,
or 20 for the black-box/slow attacks) with modest budgets, untargeted, in the attack's
default norm. Fast rows: median of 3 after a warm-up; slow rows: one run after a
2-sample warm-up. Reports seconds
per sample, success rate (prediction on the returned inputs != label, minus samples the
backend reports as failed) and each backend's time relative to the fastest backend of the
same attack. Writes bench/results_speed.json.
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

import torch

from unified_adv.adapters import AttackRequest, adapter_class, backend_names
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

SLOW = ("one_pixel", "hopskipjump", "boundary", "square", "cw_l2", "deepfool")
EPS = {"linf": 0.1, "l2": 1.0}
OVERRIDES: dict[str, dict[str, Any]] = {
    "square": {"queries": 300},
    "hopskipjump": {"steps": 5, "max_evals": 200, "init_evals": 50},
    "boundary": {"steps": 100},
    "one_pixel": {"steps": 5},
}
FLAG = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--slow-n", type=int, default=20)
    args = parser.parse_args()
    t_start = time.perf_counter()

    net, _ = builtin_digits_cnn()
    wrapper = ModelWrapper(net)
    _, _, x_all, y_all, _, _ = digits_split()
    correct = wrapper.logits(x_all).argmax(1) == y_all
    x_ok, y_ok = x_all[correct], y_all[correct]

    # Import every library once, outside the timings.
    warm = AttackRequest("fgsm", "linf", 0.1, ATTACKS["fgsm"].resolve(0.1, {}), False)
    for b in backend_names():
        if "fgsm" in adapter_class(b).capabilities:  # the libraries, not project code
            adapter_class(b)(model=wrapper).generate(warm, x_ok[:2], y_ok[:2], None, seed=0)

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.attacks.split(","):
        adef = ATTACKS[name]
        norm = adef.default_norm
        eps = EPS[norm] if adef.takes_eps else None
        params = adef.resolve(eps, OVERRIDES.get(name, {}))
        req = AttackRequest(name, norm, eps, params, False)
        slow = name in SLOW
        n = args.slow_n if slow else args.n
        x, y = x_ok[:n], y_ok[:n]
        for b in backend_names():
            cls = adapter_class(b)
            cap = cls.capabilities.get(name)
            if cap is None or norm not in cap.norms:
                continue
            adapter = cls(model=wrapper)
            if slow:  # a short warm-up (2 samples) keeps first-call costs out of the one run
                adapter.generate(req, x[:2], y[:2], None, seed=0)
            times = []
            runs = 1 if slow else 4  # fast rows: a warm-up, then 3 timed
            for i in range(runs):
                t0 = time.perf_counter()
                out = adapter.generate(req, x, y, None, seed=0)
                dt = time.perf_counter() - t0
                if slow or i > 0:
                    times.append(dt)
            pred = wrapper.logits(out.x_adv).argmax(1)
            success = pred != y
            if out.backend_failed is not None:
                success &= ~out.backend_failed
            row = {
                "seconds_per_sample": statistics.median(times) / n,
                "success_rate": float(success.mean()),
                "samples": n,
                "norm": norm,
                "eps": eps,
                "params": dict(params),
                "runs": len(times),
            }
            table.setdefault(name, {})[b] = row
            print(
                f"  {name:14s} {b:13s} n={n:3d} {row['seconds_per_sample'] * 1000:9.2f} ms/sample"
                f"  success {row['success_rate']:.2f}",
                flush=True,
            )

    for backends in table.values():
        fastest = min(r["seconds_per_sample"] for r in backends.values())
        for r in backends.values():
            r["ratio_to_fastest"] = r["seconds_per_sample"] / fastest

    print()
    print(f"{'attack':14s} {'backend':13s} {'norm':4s} {'n':>4s} {'ms/sample':>10s} "
          f"{'success':>7s} {'x fastest':>9s}")  # fmt: skip
    for name, backends in table.items():
        for b, r in backends.items():
            mark = "  <-- >=10x slower" if r["ratio_to_fastest"] >= FLAG else ""
            print(
                f"{name:14s} {b:13s} {r['norm']:4s} {r['samples']:4d} "
                f"{r['seconds_per_sample'] * 1000:10.2f} {r['success_rate']:7.2f} "
                f"{r['ratio_to_fastest']:9.1f}{mark}"
            )
    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    total = time.perf_counter() - t_start
    result = {"attacks": table, "machine": machine, "total_seconds": total}
    Path(__file__).with_name("results_speed.json").write_text(json.dumps(result, indent=2))
    print(f"\ntotal {total:.1f} s; machine {machine}")


if __name__ == "__main__":
    main()
