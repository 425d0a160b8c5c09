"""Ding & Möller's targeted walk, per model checkpoint and backend (``targeted_walk``).

x_n = clip(x_{n−1} − α·sign(∇J(x_{n−1}, y_target))) until the model predicts the target or
``max_steps`` is reached. Each step is one step of a targeted BIM run by the backend
libraries; unified-adv adds only the stopping rule and the count. Every selected image walks
to every other class, on every backend that has BIM; the backends' walks are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from unified_adv.adapters import Adapter, AttackRequest, adapter_class, backends_with
from unified_adv.analyses.base import (
    AnalysisContext,
    AnalysisOutput,
    AnalysisUnit,
    ResultKey,
    Selection,
    checkpoint_entry,
    selections,
)
from unified_adv.analyses.morph import class_matrix
from unified_adv.run.units import unit_seed
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.models import ModelWrapper


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


def walk_backends(spec_backends: tuple[str, ...] | None) -> tuple[str, ...]:
    """The backends asked for (all by default) that can run a targeted BIM step and return
    the point after it (adv-lib's returns the input until the target is reached)."""
    return backends_with("bim", among=spec_backends, last_point=True)


@dataclass
class Walks:
    """Every walk of one selection: from each image to each other class."""

    src: np.ndarray  # (W,) index of the source image in the selection
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray

    @classmethod
    def of(cls, sel: Selection, num_classes: int) -> Walks:
        src = np.repeat(np.arange(len(sel.images)), num_classes - 1)
        targets = np.concatenate([np.delete(np.arange(num_classes), c) for c in sel.labels]).astype(
            np.int64
        )
        return cls(src, sel.x[src], sel.labels[src], targets)


def _walk(
    backend: str, model: ModelWrapper, walks: Walks, step: float, max_steps: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    adapter = adapter_class(backend)(model=model)
    walk = targeted_walk(
        adapter, model, walks.x, walks.y, walks.targets,
        step_size=step, max_steps=max_steps, seed=seed,
    )  # fmt: skip
    arrays = {"iterations": walk.iterations, "reached": walk.reached,
              "x_final": walk.x_final, "mae": walk.mae}  # fmt: skip
    return arrays, {"library_call": walk.library_call}


def agreement(finals: dict[str, WalkResult]) -> list[dict[str, Any]]:
    """How far each pair of backends' walks agree (steps, outcome, final images)."""
    names = sorted(finals)
    rows = []
    for i, b1 in enumerate(names):
        for b2 in names[i + 1 :]:
            w1, w2 = finals[b1], finals[b2]
            rows.append(
                {
                    "backends": [b1, b2],
                    "same_iterations": float((w1.iterations == w2.iterations).mean()),
                    "same_outcome": float((w1.reached == w2.reached).mean()),
                    "max_pixel_diff": float(np.abs(w1.x_final - w2.x_final).max(initial=0.0)),
                    "identical": bool(np.array_equal(w1.x_final, w2.x_final)),
                }
            )
    return rows


def _monitor_columns(per_backend: dict[str, Any]) -> dict[str, Any]:
    if not per_backend:
        return {}
    first = sorted(per_backend)[0]
    row = per_backend[first]
    return {
        "walk_effort": row["walk_effort"],
        "walk_backend": first,
        "valid_walks": row["valid_walks"],
        "walks_total": row["walks_total"],
    }


def _backend_walks(
    ctx: AnalysisContext, unit: AnalysisUnit, sel: Selection, walks: Walks, step: float,
    max_steps: int,
) -> tuple[WalkResult, dict[str, Any]]:  # fmt: skip
    """One backend's walks on one checkpoint (stored or run) and their summary row."""
    prep = ctx.prep
    lo, hi = prep.model.wrapper.input_range
    model = sel.ckpt.model.wrapper
    arrays, meta = ctx.store.cached(
        unit, partial(_walk, unit.backend, model, walks, step, max_steps, unit.seed)
    )
    walk = WalkResult(
        arrays["iterations"], arrays["reached"], arrays["x_final"], arrays["mae"],
        meta.get("library_call", {}),
    )  # fmt: skip
    keep = sel.valid[walks.src]
    kept = walk_subset(walk, keep)
    summary = walk_summary(kept, walks.y[keep], walks.targets[keep], prep.num_classes, hi - lo)
    row = {
        **summary,
        "walks_total": int(len(keep)),
        "valid_walks": int(keep.sum()),
        "time_s": float(meta.get("time_s", 0.0)),
    }
    return walk, row


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """Walk every selected image to every other class, per checkpoint and backend."""
    prep = ctx.prep
    lo, hi = prep.model.wrapper.input_range
    out = AnalysisOutput(checkpoint_entry(prep, spec))
    step = spec.step_size if spec.step_size is not None else (hi - lo) / 255
    max_steps = spec.max_steps or 255
    params = (("max_steps", max_steps), ("step_size", step))
    seed = unit_seed(prep.scenario.seed, 1000 + index, 0, 0)
    for sel in selections(ctx, spec):
        walks = Walks.of(sel, prep.num_classes)
        label = sel.ckpt.label
        per_backend: dict[str, Any] = {}
        finals: dict[str, WalkResult] = {}
        for backend in walk_backends(spec.backends):
            unit = AnalysisUnit(
                index, spec.label, "targeted_walk", label, backend, params, seed, sel.context
            )
            walk, per_backend[backend] = _backend_walks(ctx, unit, sel, walks, step, max_steps)
            finals[backend] = walk
            key = ResultKey(index, label, backend)
            out.results[key] = (walk, walks.y, walks.targets, walks.src)
        out.entry["checkpoints"].append(
            {
                "checkpoint": label,
                "accuracy": sel.ckpt.accuracy,
                "step_size": step,
                "max_steps": max_steps,
                "images": int(len(sel.images)),
                "images_correct": int(sel.valid.sum()),
                "backends": per_backend,
                "agreement": agreement(finals),
            }
        )
        out.monitor[label] = _monitor_columns(per_backend)
    return out
