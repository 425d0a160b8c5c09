"""Per-unit arrays -> the tidy per-sample table and the headline numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from unified_adv.evaluate.metrics import proportion_ci
from unified_adv.run.prepared import Prepared, UnitOutcome

SAMPLE_COLUMNS = [
    "attack_id",
    "attack",
    "norm",
    "eps",
    "backend",
    "defence",
    "evaluation",
    "target_mode",
    "sample",
    "label",
    "clean_pred",
    "clean_conf",
    "target",
    "adv_pred",
    "adv_conf",
    "success",
    "tie",
    "linf",
    "l2",
    "mae",
    "time_s",
    "unit",
]


#: The one meaning of "worst case across backends", here and in the Summary
#: (:func:`unified_adv.evaluate.crosscheck.worst_case`): per sample, robust only if no backend's
#: adversarial example fooled it. A random corruption is not an attack: the worst of
#: several independent noise draws is not a stronger corruption, so noise is never
#: unioned — its cell is the mean accuracy over the backends' draws.
WORST_CASE = "per-sample union across backends (robust only if no backend fooled it)"
NOISE_CASE = "mean over backends (random corruption: draws are not unioned)"


#: A sample whose two largest logits on the scored input differ by less than this (in logit
#: units) sits on the decision boundary: a *tie*, neither fooled nor robust, counted apart, so
#: that no process, thread count or batch layout can flip a reported outcome. Logits there move
#: by ~1e-7 between processes, and one float32 ulp at |logit| < 32 is under 3.8e-6. Measured on
#: 200 digits: torchattacks' DeepFool leaves 177 samples below 1e-5 (94 below 1e-6); Foolbox's
#: closest success is 3.1e-5 and ART's 4.2e-3 above it.
TIE_MARGIN = 1e-5


def tie_mask(logits: np.ndarray) -> np.ndarray:
    """Samples left on the decision boundary: top-two logit margin below TIE_MARGIN."""
    if logits.shape[1] < 2:
        return np.zeros(len(logits), dtype=bool)
    top2 = np.sort(logits.astype(np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) < TIE_MARGIN


def fooled_and_tied(
    labels: np.ndarray, arrays: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (fooled, tie). A tie is neither fooled nor robust, whatever its argmax."""
    tie = tie_mask(arrays["adv_logits"])
    if "backend_failed" in arrays:  # a library's sentinel (e.g. zeros) is no boundary point
        tie &= ~arrays["backend_failed"].astype(bool)
    return success_mask(labels, arrays) & ~tie, tie


def success_mask(labels: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """unified-adv's own verdict: the model's prediction on what the backend returned
    (ties not taken out: see ``fooled_and_tied``)."""
    adv_pred = arrays["adv_logits"].argmax(1)
    target = arrays["target"]
    success = np.where(target >= 0, adv_pred == target, adv_pred != labels)
    if "backend_failed" in arrays:
        # The library said it failed and returned a sentinel (e.g. zeros): not a success.
        success &= ~arrays["backend_failed"].astype(bool)
    return success


def robust_mask(
    success: np.ndarray, clean_correct: np.ndarray, tie: np.ndarray | None = None
) -> np.ndarray:
    """Per row: the sample counts as robust under the attack.

    The one place a row is scored. A row the attack fooled (``success``) is not robust. A
    row it did not fool is scored on its clean input, whatever array the library handed
    back (Foolbox's C&W returns all-zero images for its failures): robust when the clean
    prediction is right. The returned array is kept for inspection only. So robust
    accuracy = (attacked - fooled) / evaluated when only correct samples are attacked.
    A ``tie`` (top-two logits within the tie tolerance) is neither fooled nor robust.
    """
    robust = ~np.asarray(success, bool) & np.asarray(clean_correct, bool)
    return robust if tie is None else robust & ~np.asarray(tie, bool)


def robust_by_sample(rows: pd.DataFrame) -> pd.Series:
    """Per sample: robust in every row it has (``each_other_class`` repeats a sample once
    per target: robust only if no target was reached)."""
    robust = robust_mask(
        rows["success"].to_numpy(),
        (rows["clean_pred"] == rows["label"]).to_numpy(),
        rows["tie"].to_numpy() if "tie" in rows else None,
    )
    return pd.Series(robust, index=rows.index).groupby(rows["sample"]).all()


def robust_samples(rows: pd.DataFrame) -> int:
    """How many samples are robust in every row they have."""
    return int(robust_by_sample(rows).sum()) if not rows.empty else 0


def fooled_median(values: pd.Series | np.ndarray, success: pd.Series | np.ndarray) -> float | None:
    """Median of a distance over the samples the attack fooled: a distance describes a
    successful perturbation (a failed sample's array may be a library's sentinel, e.g.
    zeros, or the unchanged input). None when nothing was fooled."""
    chosen = np.asarray(values, np.float64)[np.asarray(success, bool)]
    return float(np.median(chosen)) if len(chosen) else None


#: Samples per chunk when measuring perturbations: the float64 working copies are of one
#: chunk, never of a whole unit (memory independent of the number of samples).
CHUNK_ROWS = 512


def row_chunks(n: int) -> list[slice]:
    """``[0, n)`` in slices of :data:`CHUNK_ROWS` rows."""
    return [slice(lo, min(lo + CHUNK_ROWS, n)) for lo in range(0, n, CHUNK_ROWS)]


class RowsOf:
    """``x[positions]`` read a slice at a time (``rows[a:b]`` is ``x[positions[a:b]]``)."""

    def __init__(self, x: np.ndarray, positions: np.ndarray):
        self.x, self.positions = x, positions

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.x[self.positions[rows]])

    def __len__(self) -> int:
        return len(self.positions)


#: Per-sample sizes of a perturbation (rows of float64 differences), by name.
SIZES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linf": lambda d: np.abs(d).max(1, initial=0.0),
    "l2": lambda d: np.linalg.norm(d, axis=1),
    "l1": lambda d: np.abs(d).sum(1),
    "l0": lambda d: np.count_nonzero(d, axis=1).astype(np.float64),
    "mae": lambda d: np.abs(d).mean(1) if d.shape[1] else np.zeros(len(d)),
}


def perturbation_sizes(
    x_adv: np.ndarray, x: np.ndarray | RowsOf, sizes: Iterable[str] = ("linf", "l2", "mae")
) -> dict[str, np.ndarray]:
    """Per sample, the ``sizes`` (:data:`SIZES`) of ``x_adv - x`` (the difference in the
    arrays' dtype, its size in float64), chunk by chunk. ``x`` may be a memory-mapped data
    set: only a chunk's rows are read at a time."""
    n = len(x_adv)
    out = {k: np.zeros(n) for k in sizes}
    for rows in row_chunks(n):
        d = (x_adv[rows] - x[rows]).reshape(rows.stop - rows.start, -1).astype(np.float64)
        for k in out:
            out[k][rows] = SIZES[k](d)
    return out


def sample_records(prep: Prepared, outcome: UnitOutcome) -> pd.DataFrame:
    """One row per sample of one finished unit."""
    assert outcome.arrays is not None
    a, u = outcome.arrays, outcome.unit
    pos = a["positions"]
    size = perturbation_sizes(a["x_adv"], RowsOf(prep.data.x, pos))
    adv_pred = a["adv_logits"].argmax(1)
    label = prep.data.y[pos]
    target = a["target"]
    success, tie = fooled_and_tied(label, a)
    n = max(len(pos), 1)
    # Clean prediction of the model the row is about: the defended one for defence rows.
    clean = prep.variants[u.defence] if u.defence else prep
    return pd.DataFrame(
        {
            "attack_id": u.attack_id,
            "attack": u.attack,
            "norm": u.norm,
            "eps": np.nan if u.eps is None else u.eps,
            "backend": u.backend,
            "defence": u.defence or "none",
            "evaluation": u.evaluation,
            "target_mode": u.target,
            "sample": prep.data.index[pos],
            "label": label,
            "clean_pred": clean.clean_pred[pos],
            "clean_conf": clean.clean_conf[pos].astype(np.float64),
            "target": target,
            "adv_pred": adv_pred,
            "adv_conf": softmax(a["adv_logits"], axis=1).max(1).astype(np.float64),
            "success": success,
            "tie": tie,
            "linf": size["linf"],
            "l2": size["l2"],
            "mae": size["mae"],
            "time_s": float(outcome.meta.get("time_s", 0.0)) / n,
            "unit": u.name,
        },
        columns=SAMPLE_COLUMNS,
    )


def _rows_for(
    samples: pd.DataFrame, outcomes: list[UnitOutcome], key: tuple[int, int, str]
) -> pd.DataFrame:
    """The sample rows of one attack × ε × backend, found through the units that made them."""
    names = {
        o.unit.name
        for o in outcomes
        if (o.unit.attack_index, o.unit.eps_index, o.unit.backend) == key
    }
    return samples[samples["unit"].isin(names)]


def samples_table(prep: Prepared, outcomes: list[UnitOutcome]) -> pd.DataFrame:
    frames = [sample_records(prep, o) for o in outcomes if o.ok]
    if not frames:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def headline(
    prep: Prepared, samples: pd.DataFrame, outcomes: list[UnitOutcome]
) -> list[dict[str, Any]]:
    """One entry per attack × ε × backend: the numbers summary.json promises."""
    n_eval = len(prep.data.y)
    correct = prep.correct
    calls: dict[tuple[int, int, str], dict[str, Any]] = {}
    times: dict[tuple[int, int, str], float] = {}
    errors: dict[tuple[int, int, str], str] = {}
    notes: dict[tuple[int, int, str], str] = {}
    for o in outcomes:
        k = (o.unit.attack_index, o.unit.eps_index, o.unit.backend)
        if o.ok:
            calls.setdefault(k, o.meta.get("library_call", {}))
            notes.setdefault(k, o.meta.get("note", ""))
            times[k] = times.get(k, 0.0) + float(o.meta.get("time_s", 0.0))
        else:
            errors[k] = o.meta.get("error", "unknown error")
    entries = []
    for plan in prep.plans:
        spec = plan.spec
        scope = plan.scope
        attacked = np.zeros(n_eval, bool)
        attacked[plan.positions] = True
        unattacked_correct = int((correct & ~attacked)[:scope].sum())
        for e_i, eps in enumerate(spec.eps_values):
            for backend in plan.backends:
                k = (plan.index, e_i, backend)
                rows = _rows_for(samples, outcomes, k)
                n = len(rows)
                n_success = int(rows["success"].sum()) if n else 0
                complete = k not in errors and n == len(plan.positions)
                n_robust = robust_samples(rows) + unattacked_correct
                entries.append(
                    {
                        "attack_id": spec.label,
                        "attack": spec.name,
                        "backend": backend,
                        "norm": spec.norm,
                        "eps": eps,
                        "eps_text": spec.eps_text(eps),
                        "target": spec.target.describe(),
                        "params": spec.resolved_params(eps),
                        "library_call": calls.get(k, {}),
                        "n_samples": n,
                        "n_success": n_success,
                        "success_rate": n_success / n if n else None,
                        "success_rate_ci": proportion_ci(n_success, n),
                        "n_ties": int(rows["tie"].sum()) if n else 0,
                        "n_evaluated": scope,
                        "robust_accuracy": n_robust / scope if complete else None,
                        "n_robust": n_robust if complete else None,
                        "robust_accuracy_ci": proportion_ci(n_robust, scope) if complete else None,
                        "median_linf_fooled": fooled_median(rows["linf"], rows["success"]),
                        "median_l2_fooled": fooled_median(rows["l2"], rows["success"]),
                        "time_s": times.get(k, 0.0),
                        "status": "ok" if complete else "error",
                        "note": notes.get(k, ""),
                        "error": errors.get(k),
                    }
                )
    return entries
