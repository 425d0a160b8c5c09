"""Ding & Möller's interpolation morphing, per model checkpoint (the ``morph`` analysis).

x* = (1 − T)·x1 + T·x2 for T on ``steps`` evenly spaced values in [0, 1]; the class-switch
threshold is the first T where the prediction becomes the class of x2, a pop-up is any
prediction that is neither class on the way. Only forward passes, batched. The targeted walk
is :mod:`unified_adv.analyses.walk`, the index built from both
:mod:`unified_adv.analyses.robustness_index`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any

import numpy as np
from scipy.special import softmax

from unified_adv.analyses.base import (
    AnalysisContext,
    AnalysisOutput,
    AnalysisUnit,
    ResultKey,
    Selection,
    checkpoint_entry,
    selections,
)
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.models import ModelWrapper

MORPH_BATCH = 8192


@dataclass
class MorphResult:
    pairs: np.ndarray  # (P, 2) indices into the selected images
    t: np.ndarray  # (S,) the interpolation values
    preds: np.ndarray  # (P, S) predicted class along each path
    probs: np.ndarray  # (P, S, C) softmax along each path, float16
    thresholds: np.ndarray  # (P,) first T predicted as the class of x2 (NaN: never)
    popup: np.ndarray  # (P,) a class that is neither appears on the path
    popup_before_switch: np.ndarray  # (P,) ... before the threshold


def morph_pairs(labels: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """Every ordered cross-class pair, or ``count`` of them drawn at random; a drawn pair
    comes with its reverse so that threshold sums can be formed."""
    i, j = np.meshgrid(np.arange(len(labels)), np.arange(len(labels)), indexing="ij")
    mask = labels[i] != labels[j]
    ordered = np.stack([i[mask], j[mask]], axis=1)
    if count is None or count >= len(ordered):
        return ordered
    unordered = ordered[ordered[:, 0] < ordered[:, 1]]
    rng = np.random.default_rng(seed)
    pick = unordered[rng.choice(len(unordered), size=max(1, math.ceil(count / 2)), replace=False)]
    both = np.concatenate([pick, pick[:, ::-1]])
    return both[np.lexsort((both[:, 1], both[:, 0]))]


def morph_sweep(
    model: ModelWrapper, x: np.ndarray, labels: np.ndarray, pairs: np.ndarray, steps: int
) -> MorphResult:
    """Classify every interpolation of every pair, ``MORPH_BATCH`` images per forward pass."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    n_pairs = len(pairs)
    per_chunk = max(1, MORPH_BATCH // steps)
    preds = np.empty((n_pairs, steps), dtype=np.int64)
    probs_out: np.ndarray | None = None
    w = t.reshape(1, steps, *([1] * (x.ndim - 1)))
    for start in range(0, n_pairs, per_chunk):
        chunk = pairs[start : start + per_chunk]
        x1, x2 = x[chunk[:, 0]][:, None], x[chunk[:, 1]][:, None]
        xs = ((1 - w) * x1 + w * x2).astype(np.float32).reshape(-1, *x.shape[1:])
        logits = model.logits(xs, batch_size=MORPH_BATCH).reshape(len(chunk), steps, -1)
        if probs_out is None:
            probs_out = np.empty((n_pairs, steps, logits.shape[-1]), dtype=np.float16)
        probs_out[start : start + len(chunk)] = softmax(logits, axis=-1).astype(np.float16)
        preds[start : start + len(chunk)] = logits.argmax(-1)
    assert probs_out is not None
    a, b = labels[pairs[:, 0]], labels[pairs[:, 1]]
    is_b = preds == b[:, None]
    first = np.where(is_b.any(1), is_b.argmax(1), -1)
    thresholds = np.where(first >= 0, t[np.maximum(first, 0)], np.nan)
    other = (preds != a[:, None]) & (preds != b[:, None])
    before = np.arange(steps)[None, :] < np.where(first >= 0, first, steps)[:, None]
    return MorphResult(
        pairs, t, preds, probs_out, thresholds, other.any(1), (other & before).any(1)
    )


def valid_pairs(pairs: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """(P,) bool: both endpoints of the pair are classified correctly by the model at hand.

    A pair with a misclassified endpoint says nothing about the boundary between the two
    classes (it may never switch, or switch at T = 0), so a checkpoint's statistics use
    only the pairs valid for that checkpoint."""
    return np.asarray(correct[pairs[:, 0]] & correct[pairs[:, 1]], dtype=bool)


def morph_subset(result: MorphResult, keep: np.ndarray) -> MorphResult:
    """The morph result restricted to the pairs where ``keep`` is True."""
    return MorphResult(
        result.pairs[keep],
        result.t,
        result.preds[keep],
        result.probs[keep],
        result.thresholds[keep],
        result.popup[keep],
        result.popup_before_switch[keep],
    )


def threshold_sums(pairs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """T(i→j) + T(j→i) for every pair present in both directions (each counted once)."""
    index = {(int(i), int(j)): k for k, (i, j) in enumerate(pairs)}
    sums = [
        thresholds[k] + thresholds[index[(j, i)]]
        for (i, j), k in index.items()
        if i < j and (j, i) in index
    ]
    return np.asarray(sums, dtype=np.float64)


def class_matrix(
    src: np.ndarray, dst: np.ndarray, values: np.ndarray, num_classes: int
) -> np.ndarray:
    """Mean of ``values`` per (source class, target class); NaN where there is none."""
    total = np.zeros((num_classes, num_classes))
    count = np.zeros((num_classes, num_classes))
    ok = np.isfinite(values)
    np.add.at(total, (src[ok], dst[ok]), values[ok])
    np.add.at(count, (src[ok], dst[ok]), 1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def morph_summary(result: MorphResult, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    a, b = labels[result.pairs[:, 0]], labels[result.pairs[:, 1]]
    sums = threshold_sums(result.pairs, result.thresholds)
    popup_classes = np.unique(
        result.preds[(result.preds != a[:, None]) & (result.preds != b[:, None])]
    )
    return {
        "pairs": len(result.pairs),
        "steps": len(result.t),
        "threshold_matrix": class_matrix(a, b, result.thresholds, num_classes).tolist(),
        "mean_threshold": float(np.nanmean(result.thresholds)) if len(result.pairs) else None,
        "no_switch": int(np.isnan(result.thresholds).sum()),
        "popup_share": float(result.popup.mean()) if len(result.pairs) else 0.0,
        "popup_before_switch_share": float(result.popup_before_switch.mean())
        if len(result.pairs)
        else 0.0,
        "popup_classes": [int(c) for c in popup_classes],
        "threshold_sum": {
            "n": int(len(sums)),
            "mean": float(np.nanmean(sums)) if len(sums) else None,
            "quantiles": {
                str(q): float(np.nanquantile(sums, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
            }
            if len(sums)
            else {},
            "grid_ideal": 1 + 1 / (len(result.t) - 1),
        },
        "morph_balance": float(1 - 2 * np.nanmean(np.abs(result.thresholds - 0.5)))
        if len(result.pairs)
        else None,
    }


#: The statistics also reported over every pair, misclassified endpoints included.
ALL_PAIRS_KEYS = ("popup_share", "mean_threshold", "no_switch", "morph_balance")


def _sweep(model: ModelWrapper, sel: Selection, pairs: np.ndarray, steps: int) -> Any:
    return asdict(morph_sweep(model, sel.x, sel.labels, pairs, steps)), {}


def _checkpoint_row(
    sel: Selection, res: MorphResult, elapsed: float, num_classes: int
) -> dict[str, Any]:
    keep = valid_pairs(res.pairs, sel.valid)
    summary = morph_summary(morph_subset(res, keep), sel.labels, num_classes)
    every = morph_summary(res, sel.labels, num_classes)
    steps = len(res.t)
    summary["images_per_second"] = len(res.pairs) * steps / elapsed if elapsed > 0 else None
    return {
        "checkpoint": sel.ckpt.label,
        "accuracy": sel.ckpt.accuracy,
        "time_s": elapsed,
        "images": int(len(sel.images)),
        "images_correct": int(sel.valid.sum()),
        "pairs_total": int(len(res.pairs)),
        "valid_pairs": int(keep.sum()),
        **summary,
        # The same statistics over every pair, misclassified endpoints included
        # (for comparison only; not used by the monitor).
        "all_pairs": {k: every[k] for k in ALL_PAIRS_KEYS},
    }


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """Morph every selected cross-class pair on every checkpoint (the ``morph`` analysis)."""
    prep = ctx.prep
    out = AnalysisOutput(checkpoint_entry(prep, spec))
    steps = spec.steps or 100
    seed = spec.seed if spec.seed is not None else prep.scenario.seed
    for sel in selections(ctx, spec):
        pairs = morph_pairs(sel.labels, spec.pairs, seed)
        params = (("pairs", spec.pairs), ("steps", steps))
        unit = AnalysisUnit(
            index, spec.label, "morph", sel.ckpt.label, "", params, seed, sel.context
        )
        wrapper = sel.ckpt.model.wrapper
        arrays, meta = ctx.store.cached(unit, partial(_sweep, wrapper, sel, pairs, steps))
        res = MorphResult(**{f.name: arrays[f.name] for f in fields(MorphResult)})
        row = _checkpoint_row(sel, res, float(meta.get("time_s", 0.0)), prep.num_classes)
        out.entry["checkpoints"].append(row)
        out.monitor[sel.ckpt.label] = {
            k: row[k] for k in ("morph_balance", "popup_share", "valid_pairs", "pairs_total")
        }
        out.results[ResultKey(index, sel.ckpt.label)] = res
    return out
