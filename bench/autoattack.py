"""AutoAttack across libraries: time, robust accuracy, and the per-sample comparison.

On the builtin digits CNN at L∞ eps 0.1, the first ``--samples`` correctly classified
held-out digits (default 500, as issue 19 asks; ``--art-runs 1`` times ART once: one ART
AutoAttack on 500 digits takes minutes):

* per backend (ART, torchattacks through unified-adv) and torchattacks' ``AutoAttack``
  called directly with the same arguments, interleaved, ``--runs`` times (median): seconds
  and robust accuracy; ratio = seconds / the direct call's;
* PGD-40 (step 1/100, no random start) on every backend: AutoAttack must leave no more
  samples robust;
* once (run 0): each library's AutoAttack components run alone, in its own order
  (``COMPONENT_RUNS``: ART's untargeted and targeted passes and Square; torchattacks' APGD-CE,
  APGD-T, FAB-T and Square), the ensemble recomputed from them (``evaluate.ensemble``) and
  compared with each library's, and the two libraries' AutoAttacks compared sample by sample
  (McNemar).

Writes bench/results_autoattack.json. Run it under ``nice``.
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

from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.adapters.base import seed_everything
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate.crosscheck import mcnemar_exact
from unified_adv.evaluate.ensemble import AT_EPS_RTOL, compare, first_success
from unified_adv.evaluate.results import perturbation_sizes
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

EPS = 0.1
BACKENDS = ("art", "torchattacks")
#: Components run alone, per backend, in the library's own order: name -> (attack,
#: parameters, target mode). The first two run on every sample; the rest on the samples those
#: left (enough for the union and for who fooled each sample first; it saves minutes). ART's
#: order is its AutoAttack(targeted=True): untargeted APGD-CE, APGD-DLR, Square, then APGD-CE
#: and APGD-DLR aimed at each other class in class-index order (success: the target reached).
#: torchattacks' is the original's: APGD-CE, APGD-T, FAB-T (fooled at eps: its distance, the
#: smallest FAB found, at most eps), Square.
COMPONENT_RUNS: dict[str, dict[str, tuple[str, dict[str, Any], str]]] = {
    "art": {
        "apgd-ce": ("apgd", {"loss": "ce"}, "untargeted"),
        "apgd-dlr": ("apgd", {"loss": "dlr"}, "untargeted"),
        "square": ("square", {}, "untargeted"),
        "apgd-ce-t": ("apgd", {"loss": "ce"}, "each_other_class"),
        "apgd-dlr-t": ("apgd", {"loss": "dlr"}, "each_other_class"),
    },
    "torchattacks": {
        "apgd-ce": ("apgd", {"loss": "ce"}, "untargeted"),
        "apgd-t": ("apgd", {"loss": "dlr_targeted"}, "untargeted"),
        "fab-t": ("fab", {"target_classes": 9}, "untargeted"),
        "square": ("square", {}, "untargeted"),
    },
}
HEAD = 2  # components run on every sample


#: The components' budgets alone: AutoAttack's defaults (``--smoke``: tiny, to test the script).
BUDGET: dict[str, dict[str, Any]] = {
    "autoattack": {},
    "apgd": {"steps": 100},
    "fab": {"steps": 100},
    "square": {"queries": 5000},
}
SMOKE = {
    "autoattack": {"steps": 2, "queries": 10},
    "apgd": {"steps": 2},
    "fab": {"steps": 2},
    "square": {"queries": 10},
}


def _request(attack: str, targeted: bool = False, **given: Any) -> AttackRequest:
    params = ATTACKS[attack].resolve(
        EPS, {**BUDGET.get(attack, {}), **given} if attack == "autoattack" else given
    )
    eps = EPS if ATTACKS[attack].takes_eps else None
    return AttackRequest(attack=attack, norm="linf", eps=eps, params=params, targeted=targeted)


def _fooled(model: ModelWrapper, x_adv: np.ndarray, y: np.ndarray) -> np.ndarray:
    fooled: np.ndarray = model.logits(x_adv).argmax(1) != y
    return fooled


def direct_torchattacks(
    model: ModelWrapper, call: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """torchattacks' AutoAttack with the arguments and component settings the adapter used."""
    import torchattacks

    attack = torchattacks.AutoAttack(model, **call["kwargs"])
    for c in attack._autoattack.attacks:
        for key, value in call["set_after_construction"][type(c).__name__].items():
            setattr(c, key, value)
    out = attack(torch.from_numpy(x), torch.from_numpy(y))
    x_adv: np.ndarray = out.detach().cpu().numpy()
    return x_adv


class _Clock:
    """Wall and CPU seconds (this process, all its threads) of one timed block."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _record(row: dict[str, list[Any]], clock: _Clock, fooled: np.ndarray) -> None:
    row["seconds"].append(clock.wall)
    row["cpu_seconds"].append(clock.cpu)
    row["robust"].append(float(1 - fooled.mean()))


def timing(
    model: ModelWrapper, x: np.ndarray, y: np.ndarray, runs: int, art_runs: int
) -> dict[str, Any]:
    """Adapter runs and the direct call, interleaved; wall and CPU seconds and robust accuracy
    per run (ART only in the first ``art_runs``). The ratio to the direct call is of CPU
    seconds: one torch thread, so CPU time is the work done, and other processes on a shared
    machine do not inflate it as they inflate wall time (both are recorded)."""
    req = _request("autoattack")
    rows: dict[str, dict[str, list[Any]]] = {
        k: {"seconds": [], "cpu_seconds": [], "robust": []}
        for k in (*BACKENDS, "torchattacks_direct")
    }
    first: dict[str, Any] = {}
    for run in range(runs):
        for backend in BACKENDS:
            if backend == "art" and run >= art_runs:
                continue
            with _Clock() as clock:
                out = adapter_class(backend)(model=model).generate(req, x, y, None, seed=run)
            fooled = _fooled(model, out.x_adv, y)
            _record(rows[backend], clock, fooled)
            if run == 0:
                first[backend] = {"fooled": fooled, "call": out.library_call}
            if backend == "torchattacks":
                with _Clock() as clock:
                    x_direct = direct_torchattacks(model, out.library_call, x, y)
                _record(rows["torchattacks_direct"], clock, _fooled(model, x_direct, y))
                rows["torchattacks_direct"].setdefault("identical", []).append(
                    bool(np.array_equal(x_direct, out.x_adv))
                )
        print(
            f"run {run}: "
            + ", ".join(
                f"{k} {v['seconds'][-1]:.1f} s ({v['cpu_seconds'][-1]:.1f} s CPU)"
                for k, v in rows.items()
            ),
            flush=True,
        )
    direct = statistics.median(rows["torchattacks_direct"]["cpu_seconds"])
    summary = {
        k: {
            **v,
            "median_s": statistics.median(v["seconds"]),
            "median_cpu_s": statistics.median(v["cpu_seconds"]),
            "median_robust": statistics.median(v["robust"]),
            "ratio_to_direct": statistics.median(v["cpu_seconds"]) / direct,
        }
        for k, v in rows.items()
    }
    return {"rows": summary, "first": first}


def versus_pgd(
    model: ModelWrapper, x: np.ndarray, y: np.ndarray, aa: dict[str, Any]
) -> dict[str, Any]:
    """PGD-40, step 1/100, no random start, on every backend: robust counts beside AutoAttack's."""
    req = _request("pgd", steps=40, step_size=0.01, random_starts=0)
    out: dict[str, Any] = {}
    for backend in BACKENDS:
        x_adv = adapter_class(backend)(model=model).generate(req, x, y, None, seed=0).x_adv
        pgd_robust = int((~_fooled(model, x_adv, y)).sum())
        aa_robust = int((~aa[backend]["fooled"]).sum())
        out[backend] = {
            "autoattack_robust": aa_robust,
            "pgd_robust": pgd_robust,
            "at_least_as_strong": aa_robust <= pgd_robust,
        }
    return out


def _square_only(fooled: dict[str, np.ndarray]) -> int | None:
    """Samples Square fooled that no white-box component did (None: Square not run)."""
    if "square" not in fooled:
        return None
    white = np.any([f for n, f in fooled.items() if n != "square"], axis=0)
    return int((fooled["square"] & ~white).sum())


def _component_fooled(
    backend: str,
    model: ModelWrapper,
    run: tuple[str, dict[str, Any], str],
    x: np.ndarray,
    y: np.ndarray,
) -> np.ndarray:
    """One component alone on ``x``: per sample, fooled at eps (targeted at each other class:
    any target reached; a minimal attack: a misclassification within eps, to rounding)."""
    attack, given, mode = run
    req = _request(attack, targeted=mode != "untargeted", **{**BUDGET[attack], **given})
    adapter = adapter_class(backend)(model=model)
    if mode == "untargeted":
        x_adv = adapter.generate(req, x, y, None, seed=0).x_adv
        fooled = _fooled(model, x_adv, y)
        if not ATTACKS[attack].takes_eps:
            size = perturbation_sizes(x_adv, x, ("linf",))["linf"]
            fooled &= size <= EPS * (1 + AT_EPS_RTOL)
        return fooled
    classes = model.logits(x[:1]).shape[1]
    rows = [(i, t) for i in range(len(x)) for t in range(classes) if t != y[i]]
    idx, target = (np.array(v, dtype=np.int64) for v in zip(*rows, strict=True))
    x_adv = adapter.generate(req, x[idx], y[idx], target, seed=0).x_adv
    hit = model.logits(x_adv).argmax(1) == target
    return np.bincount(idx[hit], minlength=len(x)) > 0


def components(
    model: ModelWrapper, x: np.ndarray, y: np.ndarray, aa: dict[str, Any]
) -> dict[str, Any]:
    """Each backend's components run alone; the recomputed ensemble against the library's."""
    out: dict[str, Any] = {}
    for backend, runs in COMPONENT_RUNS.items():
        order = tuple(runs)
        fooled: dict[str, np.ndarray] = {}
        for name in order[:HEAD]:
            fooled[name] = _component_fooled(backend, model, runs[name], x, y)
        left = ~np.any(list(fooled.values()), axis=0)
        for name in order[HEAD:]:
            fooled[name] = np.zeros(len(x), bool)
            if left.any():
                fooled[name][left] = _component_fooled(backend, model, runs[name], x[left], y[left])
            print(f"components {backend} {name}: {int(fooled[name].sum())}", flush=True)
        first = first_success(fooled, order)
        library = aa[backend]["fooled"]
        out[backend] = {
            "order": list(order),
            "run_on": {
                n: "all" if i < HEAD else "left by the first two" for i, n in enumerate(order)
            },
            "alone": {n: int(f.sum()) for n, f in fooled.items()},
            "first_fooled_by": {n: int((first == order.index(n)).sum()) for n in fooled},
            "square_only": _square_only(fooled),
            **compare(library, first >= 0),
        }
        art_record = aa[backend]["call"].get("fooled_first_by")
        if art_record:
            out[backend]["library_fooled_first_by"] = art_record
    return out


def between_libraries(aa: dict[str, Any]) -> dict[str, Any]:
    a, b = aa["art"]["fooled"], aa["torchattacks"]["fooled"]
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return {
        "both": int((a & b).sum()),
        "only_art": only_a,
        "only_torchattacks": only_b,
        "neither": int((~a & ~b).sum()),
        "mcnemar_p": mcnemar_exact(only_a, only_b),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--art-runs", type=int, default=1, help="ART's runs (each takes minutes)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_autoattack.json")))
    ap.add_argument("--smoke", action="store_true", help="tiny budgets: tests the script")
    args = ap.parse_args()
    if args.smoke:
        BUDGET.update(SMOKE)
    torch.set_num_threads(1)  # the machine is shared: one thread is faster than contention
    net, _ = builtin_digits_cnn()
    model = ModelWrapper(net)
    _, _, x, y, _, _ = digits_split()
    correct = model.logits(x).argmax(1) == y
    x, y = x[correct][: args.samples].copy(), y[correct][: args.samples].copy()
    seed_everything(0)
    start = time.perf_counter()
    t = timing(model, x, y, args.runs, args.art_runs)
    aa = t.pop("first")
    result = {
        "samples": len(x),
        "eps": EPS,
        "norm": "linf",
        "runs": args.runs,
        "art_runs": min(args.art_runs, args.runs),
        "params": ATTACKS["autoattack"].resolve(EPS, {}),
        "timing": t["rows"],
        "between_libraries": between_libraries(aa),
        "semantics": {b: aa[b]["call"]["semantics"] for b in BACKENDS},
        "machine": {
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    out = Path(args.out)
    result["versus_pgd"] = versus_pgd(model, x, y, aa)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")  # so far
    result["components"] = components(model, x, y, aa)
    result["total_seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: result[k] for k in ("versus_pgd", "between_libraries", "total_seconds")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
