"""Ding & Möller's training-state monitor: interpolation morphing, targeted walks, and
the robustness index built from them.

* **Morphing**: x* = (1 − T)·x1 + T·x2 for T on ``steps`` evenly spaced values in [0, 1];
  the class-switch threshold is the first T where the prediction becomes the class of x2,
  a pop-up is any prediction that is neither class on the way. Only forward passes, batched.
* **Targeted walk**: x_n = clip(x_{n−1} − α·sign(∇J(x_{n−1}, y_target))) until the model
  predicts the target or ``max_steps`` is reached. Each step is one step of a targeted BIM
  run by the backend libraries; unified-adv adds only the stopping rule and the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax

from unified_adv.adapters import Adapter, AttackRequest
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


def select_images(
    y: np.ndarray, correct: np.ndarray, per_class: int, num_classes: int
) -> np.ndarray:
    """The first ``per_class`` correctly classified images of each class, in data order."""
    chosen = [np.flatnonzero((y == c) & correct)[:per_class] for c in range(num_classes)]
    return np.concatenate(chosen).astype(np.int64)


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


@dataclass
class WalkResult:
    iterations: np.ndarray  # (W,) steps taken
    reached: np.ndarray  # (W,) the target was reached within max_steps
    x_final: np.ndarray  # (W, C, H, W) the last iterate
    mae: np.ndarray  # (W,) mean |x* - x|
    library_call: dict[str, Any]


def targeted_walk(
    adapter: Adapter,
    model: ModelWrapper,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray,
    *,
    step_size: float,
    max_steps: int,
    seed: int,
) -> WalkResult:
    """Step every walk with one targeted BIM step of the backend until it reaches its target."""
    cur = x.copy()
    iterations = np.zeros(len(x), dtype=np.int64)
    reached = model.logits(cur).argmax(1) == targets
    request = AttackRequest(
        attack="bim",
        norm="linf",
        eps=step_size,
        params={"steps": 1, "step_size": step_size},
        targeted=True,
    )
    call: dict[str, Any] = {}
    for n in range(1, max_steps + 1):
        active = np.flatnonzero(~reached)
        if not len(active):
            break
        out = adapter.generate(request, cur[active], y[active], targets[active], seed=seed + n)
        call = out.library_call
        cur[active] = out.x_adv
        iterations[active] = n
        reached[active] = model.logits(cur[active]).argmax(1) == targets[active]
    mae = np.abs(cur - x).reshape(len(x), -1).mean(1).astype(np.float64)
    return WalkResult(iterations, reached, cur, mae, call)


def walk_subset(result: WalkResult, keep: np.ndarray) -> WalkResult:
    """The walks where ``keep`` is True (e.g. those whose source the model classifies
    correctly: a walk from a misclassified source may start at its target)."""
    return WalkResult(
        result.iterations[keep],
        result.reached[keep],
        result.x_final[keep],
        result.mae[keep],
        result.library_call,
    )


def walk_summary(
    result: WalkResult, src: np.ndarray, dst: np.ndarray, num_classes: int, value_range: float
) -> dict[str, Any]:
    ok = result.reached
    return {
        "walks": int(len(ok)),
        "failures": int((~ok).sum()),
        "mae_matrix": class_matrix(
            src, dst, np.where(ok, result.mae, np.nan), num_classes
        ).tolist(),
        "iterations_matrix": class_matrix(
            src, dst, np.where(ok, result.iterations.astype(float), np.nan), num_classes
        ).tolist(),
        "mean_mae": float(result.mae.mean()) if len(ok) else None,
        "mean_mae_reached": float(result.mae[ok].mean()) if ok.any() else None,
        "mean_iterations_reached": float(result.iterations[ok].mean()) if ok.any() else None,
        # Over all walks, failures counted with the distance they had covered (a lower bound).
        "walk_effort": float(result.mae.mean() / value_range) if len(ok) else None,
    }


def robustness_index(walk_effort: float | None, morph_balance: float | None) -> float | None:
    """RI = 100 · E · B, higher is more robust — this project's definition: Ding & Möller
    propose monitoring the training state with the morph thresholds and the walk effort
    but give no formula for combining them.

    E (walk effort): mean MAE of the targeted walks to every other class, in units of the
    input range — how far, on average, an image must move to become any other class.
    B (morph balance): 1 − 2·mean|T − 0.5| over the morph pairs — 1 when every class switch
    lies midway between the two images, 0 when it sits at one of them.
    With only one of the two analyses, the index is 100·E or 100·B alone.
    """
    parts = [v for v in (walk_effort, morph_balance) if v is not None]
    if not parts:
        return None
    return float(100 * np.prod(parts))
