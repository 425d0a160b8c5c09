"""The measured figures of README.md's prose: the backend-difference experiments and the rest.

Each experiment here is the one a test runs (tests/test_crosscheck_audit.py imports this file
and asserts on what these functions return), on the same 24 held-out digits; this script runs
them once, some on more iterations or digits than the tests can afford, and writes
bench/results_audit.json. `make readme-numbers` formats that file into README.md's
``<!-- bench:audit-* -->`` blocks, never re-running it (like `make bench`'s results).

Usage:
    python bench/audit_figures.py                       # every experiment (minutes on 2 cores)
    python bench/audit_figures.py --only lbfgs retrain  # these; the file keeps the others
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

RESULTS = Path(__file__).resolve().parent / "results_audit.json"
Figures = dict[str, Any]


# --- shared with the tests -------------------------------------------------------------------


def digits_model() -> ModelWrapper:
    """The builtin digits CNN, wrapped (the tests' ``model`` fixture)."""
    return ModelWrapper(builtin_digits_cnn()[0])


def digits_batch(model: ModelWrapper, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of the first 40 held-out digits the model classifies correctly (the
    quickstart attacks only those)."""
    _, _, x, y, _, _ = digits_split()
    right = model.logits(x[:40]).argmax(1) == y[:40]
    return x[:40][right][:n].copy(), y[:40][right][:n].copy()


def request(attack: str, norm: str, eps: float | None = None, **given: object) -> AttackRequest:
    params = ATTACKS[attack].resolve(eps, given)
    return AttackRequest(attack=attack, norm=norm, eps=eps, params=params, targeted=False)


def l2(x_adv: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.linalg.norm((x_adv - x).reshape(len(x), -1).astype(np.float64), axis=1)


def median_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The median per-sample |L2(a) - L2(b)|."""
    return float(np.median(np.abs(a - b)))


def art_estimator(model: torch.nn.Module, clip: Any = (0.0, 1.0)) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=clip,
    )


def range_255(model: ModelWrapper) -> ModelWrapper:
    """The same function on [0, 255] inputs: mean 0, std 255 inside the wrapper."""
    return ModelWrapper(model.net, input_range=(0.0, 255.0), mean=[0.0], std=[255.0])


def generate(backend: str, model: ModelWrapper, req: AttackRequest, x: np.ndarray, y: np.ndarray) -> Any:
    return adapter_class(backend)(model=model).generate(req, x, y, None, seed=0)


def counting_queries(net: torch.nn.Module, fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    """fn's result and the number of images the net was asked to classify meanwhile."""
    seen = [0]
    hook = net.register_forward_pre_hook(lambda _m, a: seen.append(len(a[0])))
    try:
        out = fn()
    finally:
        hook.remove()
    return out, sum(seen)


# --- DeepFool ----------------------------------------------------------------------------------


def deepfool_candidates(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> Figures:
    """ART's ``nb_grads`` < classes called plainly (one sample per call) against the adapter
    (one call per top-3 class set, outputs reordered) and Foolbox, 3 candidates."""
    from art.attacks.evasion import DeepFool

    est = art_estimator(model)
    plain = np.concatenate(
        [DeepFool(est, max_iter=50, nb_grads=3, verbose=False).generate(x[i : i + 1]) for i in range(len(x))]
    )
    req = request("deepfool", "l2", steps=50, candidates=3)
    art, fb = generate("art", model, req, x, y), generate("foolbox", model, req, x, y)
    top3 = np.argsort(-model.logits(x), axis=1)[:, :3]
    pred = model.logits(art.x_adv).argmax(1)
    return {
        "n": len(x),
        "plain_unattacked": int((model.logits(plain).argmax(1) == y).sum()),
        "plain_median_l2": float(np.median(l2(plain, x))),
        "art_median_l2": float(np.median(l2(art.x_adv, x))),
        "foolbox_median_l2": float(np.median(l2(fb.x_adv, x))),
        "art_all_fooled": bool((pred != y).all()),
        "art_in_own_top3": all(pred[i] in top3[i] for i in range(len(x))),
        "translation": art.library_call["translation"],
    }


def deepfool_range(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> Figures:
    """ART's DeepFool called plainly at [0, 255] (steps 255 times too long) against [0, 1], and
    the adapters (ART on the model seen through [0, 1]; Foolbox) at both ranges."""
    from art.attacks.evasion import DeepFool

    m255, x255 = range_255(model), (x * 255).astype(np.float32)
    kw = {"max_iter": 50, "epsilon": 0.02, "nb_grads": 10, "batch_size": len(x), "verbose": False}
    raw01 = DeepFool(art_estimator(model), **kw).generate(x)
    raw255 = DeepFool(art_estimator(m255, (0.0, 255.0)), **kw).generate(x255)
    req = request("deepfool", "l2", steps=50)
    a01, a255 = generate("art", model, req, x, y), generate("art", m255, req, x255, y)
    f01, f255 = generate("foolbox", model, req, x, y), generate("foolbox", m255, req, x255, y)
    return {
        "n": len(x),
        "plain_255_median_l2": float(np.median(l2(raw255, x255))),
        "plain_01_median_l2": float(np.median(l2(raw01, x))),
        "plain_inflation": float(np.median(l2(raw255, x255)) / 255 / np.median(l2(raw01, x))),
        "adapter_01_unchanged": bool(np.array_equal(a01.x_adv, raw01)),
        "art_l2_01": l2(a01.x_adv, x),
        "art_l2_255": l2(a255.x_adv, x255),
        "foolbox_l2_01": l2(f01.x_adv, x),
        "foolbox_l2_255": l2(f255.x_adv, x255),
        "translation": a255.library_call["translation"],
    }


def deepfool_clipping_gaps(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> Figures:
    """ART clips every step; Foolbox clips only the overshot running total and adds 1e-4 to
    each step's distance. The median per-sample L2 gap as is, without the clipping on both (a
    range the attack never reaches), then without Foolbox's offset too; ART with and without
    (wrong) labels."""
    import foolbox as fb
    from art.attacks.evasion import DeepFool

    class NoOffset(fb.attacks.L2DeepFoolAttack):  # type: ignore[misc]
        def get_perturbations(self, distances: Any, grads: Any) -> Any:
            return super().get_perturbations(distances - 1e-4, grads)

    def foolbox_l2(cls: type, bounds: tuple[float, float]) -> np.ndarray:
        attack = cls(steps=50, candidates=10, overshoot=0.02, loss="logits")
        fmodel = fb.PyTorchModel(model.net, bounds=bounds)
        _, adv, _ = attack(fmodel, torch.from_numpy(x), torch.from_numpy(y), epsilons=None)
        return l2(adv.numpy(), x)

    def art_l2(clip: Any) -> np.ndarray:
        return l2(DeepFool(art_estimator(model.net, clip), max_iter=50, epsilon=0.02, verbose=False).generate(x), x)

    est = art_estimator(model.net)
    with_labels = DeepFool(est, max_iter=50, verbose=False).generate(x, y=np.eye(10)[(y + 1) % 10])
    return {
        "n": len(x),
        "clipped": median_gap(art_l2((0.0, 1.0)), foolbox_l2(fb.attacks.L2DeepFoolAttack, (0.0, 1.0))),
        "unclipped": median_gap(art_l2(None), foolbox_l2(fb.attacks.L2DeepFoolAttack, (-10.0, 11.0))),
        "no_offset": median_gap(art_l2(None), foolbox_l2(NoOffset, (-10.0, 11.0))),
        "labels_change_nothing": bool(
            np.array_equal(with_labels, DeepFool(est, max_iter=50, verbose=False).generate(x))
        ),
    }


def deepfool_ties(model: ModelWrapper, n: int = 200) -> Figures:
    """The quickstart's DeepFool (first ``n`` correctly classified held-out digits): per
    backend, the samples left within the tie margin and the closest success above it."""
    from unified_adv.evaluate.results import TIE_MARGIN

    _, _, x, y, _, _ = digits_split()
    right = model.logits(x).argmax(1) == y
    x, y = x[right][:n].copy(), y[right][:n].copy()
    req = request("deepfool", "l2", steps=50, overshoot=0.02, candidates=10)
    out: Figures = {"n": len(x), "tie_margin": TIE_MARGIN}
    for backend in ("art", "foolbox", "torchattacks"):
        logits = model.logits(generate(backend, model, req, x, y).x_adv).astype(np.float64)
        top2 = np.sort(logits, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        ties = margin < TIE_MARGIN
        fooled = (logits.argmax(1) != y) & ~ties
        out[backend] = {
            "ties": int(ties.sum()),
            "closest_success_above_margin": float(margin[fooled].min() - TIE_MARGIN) if fooled.any() else None,
        }
    return out


# --- C&W ---------------------------------------------------------------------------------------


def _art_cw(model: ModelWrapper, x: np.ndarray, y: np.ndarray, steps: int, hinge: bool) -> np.ndarray:
    """ART's C&W L2 with the adapter's arguments (one search step, c 1, lr 0.05); ``hinge``:
    its margin gradient zeroed where the hinge is 0 (the sample is already adversarial)."""
    from art.attacks.evasion import CarliniL2Method

    class HingeGradient(CarliniL2Method):  # type: ignore[misc]
        def _loss_gradient(self, z, target, xs, x_adv, x_tanh, c, lo, hi):  # type: ignore[no-untyped-def]
            own = (z * target).sum(1)
            other = np.max(z * (1 - target) + (z.min(1) - 1)[:, None] * target, axis=1)
            c = np.where(own - other + self.confidence > 0, c, 0.0)
            return super()._loss_gradient(z, target, xs, x_adv, x_tanh, c, lo, hi)

    cls = HingeGradient if hinge else CarliniL2Method
    attack = cls(
        art_estimator(model.net), confidence=0.0, learning_rate=0.05, binary_search_steps=1,
        max_iter=steps, initial_const=1.0, max_halving=5, max_doubling=5, batch_size=len(x),
        verbose=False,
    )
    return l2(attack.generate(x, y=np.eye(10)[y]), x)


def _foolbox_cw(model: ModelWrapper, x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
    import foolbox as fb

    attack = fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=1, steps=steps, stepsize=0.05, confidence=0, initial_const=1.0,
        abort_early=False,
    )
    fmodel = fb.PyTorchModel(model.net, bounds=(0.0, 1.0))
    _, adv, _ = attack(fmodel, torch.from_numpy(x), torch.from_numpy(y), epsilons=None)
    return l2(adv.numpy(), x)


def cw_stall(
    model: ModelWrapper,
    x: np.ndarray,
    y: np.ndarray,
    art_steps: tuple[int, ...] = (2, 100),
    foolbox_steps: tuple[int, ...] = (30, 100),
    hinge_steps: tuple[int, ...] = (100,),
) -> Figures:
    """Per-sample L2 of ART's C&W (plain, and with the hinge gradient) and Foolbox's at each
    number of iterations; the median per-sample gap to Foolbox at 100 before and after."""
    art = {s: _art_cw(model, x, y, s, False) for s in art_steps}
    hinge = {s: _art_cw(model, x, y, s, True) for s in hinge_steps}
    fb = {s: _foolbox_cw(model, x, y, s) for s in foolbox_steps}
    return {
        "n": len(x), "art": art, "hinge": hinge, "foolbox": fb,
        "gap_before": median_gap(art[100], fb[100]), "gap_after": median_gap(hinge[100], fb[100]),
    }


class _SearchRule:
    """Foolbox's module-level ``np`` in its C&W, except the update of the constants (the
    np.where that follows np.isinf(upper_bounds)): its x10 becomes ``factor``; records each c."""

    def __init__(self, factor: float, c0: float, n: int) -> None:
        self.factor, self.pending, self.schedule = factor, False, [np.full(n, c0)]

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def isinf(self, a: np.ndarray) -> np.ndarray:
        self.pending = True
        return np.isinf(a)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if not self.pending:
            return np.where(cond, a, b)
        self.pending = False  # a = consts * 10, b = the bisection
        self.schedule.append(np.where(cond, a / 10 * self.factor, b))
        return self.schedule[-1]


def cw_search_rule(
    model: ModelWrapper, x: np.ndarray, y: np.ndarray, factor: float, c0: float = 0.01, searches: int = 4
) -> Figures:
    """Foolbox's C&W (``searches`` search steps of 20 iterations from c = c0) with its x10
    search rule changed to x ``factor``: the c of each search step, which digits it fooled."""
    import foolbox as fb
    import foolbox.attacks.carlini_wagner as fbcw

    rule = _SearchRule(factor, c0, len(x))
    fbcw.np = rule
    try:
        attack = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=searches, steps=20, stepsize=0.05, confidence=0,
            initial_const=c0, abort_early=False,
        )
        fmodel = fb.PyTorchModel(model.net, bounds=(0.0, 1.0))
        _, adv, _ = attack(fmodel, torch.from_numpy(x), torch.from_numpy(y), epsilons=None)
    finally:
        fbcw.np = np
    found = ~(adv.numpy() == 0).reshape(len(x), -1).all(1)  # Foolbox's failure: zeros
    return {"schedule": np.stack(rule.schedule[:searches], 1), "found": found, "l2": l2(adv.numpy(), x)}


# --- Boundary, PGD, MI-FGSM --------------------------------------------------------------------


def boundary_proposals(
    model: ModelWrapper, x: np.ndarray, y: np.ndarray, num_trial: int, sample_size: int
) -> tuple[np.ndarray, int, bool]:
    """ART's BoundaryAttack, 20 steps, seeded, with ``num_trial`` rounds of ``sample_size``
    proposals per step: per-sample L2, queries, whether every sample was fooled."""
    from art.attacks.evasion import BoundaryAttack

    from unified_adv.adapters.art import seeded_fresh_random_states

    est = art_estimator(model)  # ART feeds float64: the wrapper casts

    def run() -> np.ndarray:
        np.random.seed(0)
        with seeded_fresh_random_states(0):
            adv: np.ndarray = BoundaryAttack(
                est, batch_size=64, targeted=False, delta=0.01, epsilon=0.01, step_adapt=0.667,
                max_iter=20, num_trial=num_trial, sample_size=sample_size, init_size=100,
                min_epsilon=0.0, verbose=False,
            ).generate(x, y=y)
        return adv

    adv, queries = counting_queries(model.net, run)
    return l2(adv, x), queries, bool((model.logits(adv).argmax(1) != y).all())


def pgd_l2_gaps(model: ModelWrapper, x: np.ndarray, y: np.ndarray, copies: int = 22) -> Figures:
    """L2 PGD (ε 1, 20 steps of 1/8): the largest pixel gap ART-Foolbox with and without
    clipping (a range the attack never reaches), and torchattacks-Foolbox with each digit in a
    batch of ``copies`` x n copies (batch-mean loss) and one digit per call."""
    req = request("pgd", "l2", 1.0, steps=20, step_size=1 / 8, random_starts=0)

    def run(backend: str, m: ModelWrapper, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        out: np.ndarray = generate(backend, m, req, xs, ys).x_adv
        return out

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max())

    wide = ModelWrapper(model.net, input_range=(-2.0, 3.0))
    fb_out = run("foolbox", model, x, y)
    batched = run("torchattacks", model, np.repeat(x, copies, 0), np.repeat(y, copies))[::copies]
    single = np.concatenate([run("torchattacks", model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    return {
        "n": len(x), "batch": copies * len(x),
        "order_gap": gap(run("art", model, x, y), fb_out),
        "order_gone": gap(run("art", wide, x, y), run("foolbox", wide, x, y)),
        "batch_gap": gap(batched, fb_out), "single_gap": gap(single, fb_out),
    }


def mifgsm_gap(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> Figures:
    """MI-FGSM L∞ ε 0.2, 10 steps, decay 1: the largest pixel gap of each backend pair."""
    req = request("mifgsm", "linf", 0.2, steps=10, decay=1.0)
    out = {b: generate(b, model, req, x, y).x_adv for b in ("art", "foolbox", "torchattacks")}
    return {
        "n": len(x),
        "art_foolbox": float(np.abs(out["art"] - out["foolbox"]).max()),
        "art_torchattacks": float(np.abs(out["art"] - out["torchattacks"]).max()),
    }


# --- script-only figures -----------------------------------------------------------------------


def lbfgs_targets(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> Figures:
    """Box-constrained L-BFGS (project code) at its defaults, target (y + 1) mod 10."""
    target = ((y + 1) % 10).astype(np.int64)
    params = ATTACKS["lbfgs"].resolve(None, {})
    req = AttackRequest(attack="lbfgs", norm="l2", eps=None, params=params, targeted=True)
    start, cpu = time.perf_counter(), time.process_time()
    out = adapter_class("unified-adv")(model=model).generate(req, x, y, target, seed=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    reached = model.logits(out.x_adv).argmax(1) == target
    return {
        "n": len(x), "reached": int(reached.sum()), "seconds": seconds, "cpu_seconds": cpu,
        "median_l2": float(np.median(l2(out.x_adv, x)[reached])),
    }


SCORING = """
name: scoring-before-after
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 150, only_correct: true}
attacks:
  - {name: cw_l2, steps: 10, backends: [foolbox]}
  - {name: square, norm: linf, eps: 0.1, queries: 100, backends: [torchattacks]}
report: {triptychs: 0}
"""


def scoring_before_after() -> Figures:
    """Foolbox's C&W (its failures come back as zero images) and torchattacks' Square (its
    failures come back unchanged), scored as now (from the success column, distances over the
    fooled samples) and as before (predictions on the returned arrays, distances over all)."""
    import unified_adv

    with tempfile.TemporaryDirectory() as tmp:
        res = unified_adv.run(unified_adv.scenario_from_text(SCORING), Path(tmp) / "out", progress=False)
    n_eval = res.summary["data"]["n_evaluated"]
    out: Figures = {"n": n_eval}
    for entry in res.summary["attacks"]:
        rows = res.samples[res.samples.attack_id == entry["attack_id"]]
        out[entry["attack"]] = {
            "success_rate": entry["success_rate"],
            "robust_accuracy": entry["robust_accuracy"],
            "robust_accuracy_on_returned": float((rows.adv_pred == rows.label).sum() / n_eval),
            "median_l2_fooled": entry["median_l2_fooled"],
            "median_l2_all": float(rows.l2.median()),
            "median_linf_fooled": entry["median_linf_fooled"],
            "median_linf_all": float(rows.linf.median()),
        }
    return out


def retrain_spread(seeds: range = range(8)) -> Figures:
    """digits-mlp retrained with its shipped settings on each seed: held-out accuracy."""
    from unified_adv.sources.builtin.digits import builtin_digits, train_digits_net

    _, shipped = builtin_digits("digits-mlp")
    accs = [train_digits_net("digits-mlp", seed=s, checkpoints=())[1] for s in seeds]
    return {"seeds": list(seeds), "accuracy": accs, "shipped": shipped["held_out_accuracy"]}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scoring_spread(model: ModelWrapper) -> Figures:
    """The largest logit difference of the same 10 digits scored in a batch of 10 or of 120,
    on 1 or 2 torch threads (why scoring uses fixed batches on one thread)."""
    _, _, x, _, _, _ = digits_split()
    runs = []
    for threads in (1, 2):
        with _threads(threads), torch.no_grad():
            for size in (10, 120):
                runs.append(model.net(torch.from_numpy(x[:size])).numpy()[:10].astype(np.float64))
    return {"max_abs_diff": float(max(np.abs(r - runs[0]).max() for r in runs))}


def _steps(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Figures]]:
    """Each experiment as a step returning JSON-ready figures (arrays reduced to medians)."""
    from noise_scale import measure  # bench/ is the script's folder

    med = lambda a: float(np.median(a))  # noqa: E731

    def cw() -> Figures:
        r = cw_stall(model, x, y, (2, 30, 100, 400), (30, 100, 400), (5, 100))
        meds = {k: {str(s): med(v) for s, v in r[k].items()} for k in ("art", "hinge", "foolbox")}
        return {"n": r["n"], "gap_before": r["gap_before"], "gap_after": r["gap_after"], **meds}

    def rule() -> Figures:
        runs = {f: cw_search_rule(model, x, y, f) for f in (10.0, 2.0)}
        return {
            f"x{f:g}": {"n": len(x), "fooled": int(r["found"].sum()), "c_max": float(r["schedule"].max())}
            for f, r in runs.items()
        }

    def boundary() -> Figures:
        runs = {f"{t}x{s}": boundary_proposals(model, x[:4], y[:4], t, s) for t, s in ((25, 20), (25, 1), (1, 1))}
        return {k: {"n": 4, "median_l2": med(v[0]), "queries": v[1]} for k, v in runs.items()}

    def dfrange() -> Figures:
        r = deepfool_range(model, x, y)
        return {k: med(v) if isinstance(v, np.ndarray) else v for k, v in r.items()}

    return {
        "deepfool_candidates": lambda: deepfool_candidates(model, x, y),
        "deepfool_range": dfrange,
        "deepfool_clipping": lambda: deepfool_clipping_gaps(model, x, y),
        "deepfool_ties": lambda: deepfool_ties(model),
        "cw_stall": cw,
        "cw_search_rule": rule,
        "boundary": boundary,
        "pgd_l2": lambda: pgd_l2_gaps(model, x, y),
        "mifgsm": lambda: mifgsm_gap(model, x, y),
        "lbfgs": lambda: lbfgs_targets(model, x[:20], y[:20]),
        "scoring": scoring_before_after,
        "retrain": retrain_spread,
        "scoring_spread": lambda: scoring_spread(model),
        "noise_scale": measure,
    }


def _store(name: str, figures: Figures, seconds: float, cpu: float) -> None:
    """Merge one step's figures into RESULTS (under a lock: steps may run in several processes)."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "unified-adv-audit-figures.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
        out[name] = figures
        out.setdefault("seconds", {})[name] = round(seconds, 1)
        out.setdefault("cpu_seconds", {})[name] = round(cpu, 1)
        out["total_seconds"] = round(sum(out["seconds"].values()), 1)
        out["total_cpu_seconds"] = round(sum(out["cpu_seconds"].values()), 1)
        out["machine"] = {
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        }
        RESULTS.write_text(json.dumps(out, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    import argparse

    model = digits_model()
    x, y = digits_batch(model)
    steps = _steps(model, x, y)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=sorted(steps), help="run these steps (the rest is kept)")
    for name in p.parse_args(argv).only or steps:
        torch.manual_seed(0)
        start, cpu = time.perf_counter(), time.process_time()
        figures = steps[name]()
        _store(name, figures, time.perf_counter() - start, time.process_time() - cpu)
        print(f"{name}: {time.perf_counter() - start:.1f} s ({time.process_time() - cpu:.1f} s of CPU)", flush=True)


if __name__ == "__main__":
    main()
