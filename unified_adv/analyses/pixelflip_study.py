"""Kügler et al.'s one-pixel study (``pixel_flip_study``): every pixel of every unique line
image flipped, for several sizes, angle steps and trained models; shares overall, by angle and
by position, averaged over models. The sweeps themselves are :mod:`.pixelflip`'s engines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unified_adv.analyses.base import AnalysisContext, AnalysisOutput, AnalysisUnit, ResultKey
from unified_adv.analyses.pixelflip import away_from_x, exhaustive_flips, unseen_cells
from unified_adv.run.execute import LocalExecutor
from unified_adv.run.prepared import Prepared
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.builtin.line_cnn import builtin_line_cnn
from unified_adv.sources.lines import PAPER_TABLE1, generate_lines
from unified_adv.sources.models import state_fingerprint

#: One model's sweep: (N, D, D) adversarial mask, the engine used, seconds.
Sweep = tuple[np.ndarray, str, float]


def flip_mask(model: Any, images: np.ndarray, engine: str) -> tuple[np.ndarray, str]:
    """(N, D, D) bool: flipping pixel (i, j) of image n changes the model's prediction."""
    result = exhaustive_flips(model, images, engine=engine)
    mask: np.ndarray = np.asarray(result.adversarial, dtype=bool)
    if mask.ndim == 4:  # (N, K, D, D): binary images have one candidate value per pixel
        mask = np.asarray(mask.any(axis=1), dtype=bool)
    return mask, str(result.engine)


def flip_task(item: tuple[int, float, int, str]) -> Sweep:
    """One trained line CNN's exhaustive one-pixel sweep, from plain data (a Dask task)."""
    size, step, seed, engine = item
    net, _ = builtin_line_cnn(size, step, seed)
    images = generate_lines(size, step).images
    t0 = time.perf_counter()
    mask, how = flip_mask(net, images, engine)
    return mask, how, time.perf_counter() - t0


@dataclass
class _Config:
    """One (size, angle step) configuration: its line images and its trained models."""

    size: int
    step: float
    lines: Any
    generation_s: float
    trained: list[dict[str, Any]] = field(default_factory=list)
    sweeps: dict[int, Sweep] = field(default_factory=dict)


def _sweep_config(
    ctx: AnalysisContext, index: int, spec: AnalysisSpec, cfg: _Config, engine: str
) -> None:
    """Every model of one configuration swept: stored ones loaded, the rest run as tasks (in
    this process or on the Dask workers, which rebuild the line CNN from its seeded recipe)."""
    pending = []
    for seed in range(spec.seeds or 1):
        net, details = builtin_line_cnn(cfg.size, cfg.step, seed)
        cfg.trained.append(
            {
                "seed": seed,
                "epochs": details.get("epochs"),
                "training_accuracy": details.get("training_accuracy"),
            }
        )
        unit = AnalysisUnit(
            index, spec.label, "pixel_flip_study", f"d{cfg.size}-s{cfg.step:g}", f"seed{seed}",
            (("engine", engine),), seed, f"{state_fingerprint(net)}:{len(cfg.lines)}",
        )  # fmt: skip
        stored = ctx.store.load(unit)
        if stored is not None:
            arrays, meta = stored
            cfg.sweeps[seed] = (
                arrays["adversarial"].astype(bool),
                str(meta.get("engine", engine)),
                float(meta.get("time_s", 0.0)),
            )
        else:
            pending.append((unit, (cfg.size, cfg.step, seed, engine)))
    runner = ctx.executor if ctx.executor is not None else LocalExecutor()
    for i, (mask, how, elapsed) in runner.map(flip_task, [t for _, t in pending]):
        unit, (_, _, seed, _) = pending[i]
        ctx.store.save(unit, {"adversarial": mask}, {"time_s": elapsed, "engine": how})
        cfg.sweeps[seed] = (mask, how, elapsed)


def _by_angle(stack: np.ndarray, lines: Any) -> list[dict[str, Any]]:
    angles = np.round(lines.angle, 6)
    rows = []
    for ang in np.unique(angles):
        sel = angles == ang
        rows.append(
            {
                "angle": float(ang),
                "images": int(sel.sum()),
                "share": float(stack[:, sel].mean()),
                "boundary_distance": float(lines.boundary_distance[sel][0]),
            }
        )
    return rows


def _config_entry(cfg: _Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """One configuration's summary entry and its in-memory figure data."""
    sweeps = [cfg.sweeps[seed] for seed in sorted(cfg.sweeps)]
    times = [s[2] for s in sweeps]
    stack = np.stack([s[0] for s in sweeps])  # (models, N, D, D)
    candidates = len(cfg.lines) * cfg.size * cfg.size
    share_per_model = stack.reshape(len(sweeps), -1).mean(1)
    by_angle = _by_angle(stack, cfg.lines)
    heat = stack.mean(axis=(0, 1))
    median = float(np.median(times)) if times else None
    entry = {
        "size": cfg.size,
        "angle_step": float(cfg.step),
        "images": len(cfg.lines),
        "paper_images": PAPER_TABLE1.get((cfg.size, float(cfg.step))),
        "ambiguous_images": int(cfg.lines.n_ambiguous),
        "models": cfg.trained,
        "candidates_per_model": candidates,
        "adversarial_share": float(share_per_model.mean()),
        "adversarial_share_per_model": [float(v) for v in share_per_model],
        "images_with_adversarial_flip": float(stack.any(axis=(2, 3)).mean()),
        "by_angle": by_angle,
        "engine": sorted({s[1] for s in sweeps}),
        "seconds_per_model": median,
        "candidates_per_second": candidates / median if median else None,
        "generation_seconds": cfg.generation_s,
        "unseen_rows_cols": unseen_cells(cfg.size),
        "away_from_x": away_from_x(heat, cfg.lines),
    }
    return entry, {"heatmap": heat, "by_angle": by_angle, "size": cfg.size, "step": cfg.step}


def upper_bound(prep: Prepared, engine: str) -> dict[str, Any] | None:
    """The exhaustive upper bound on the scenario's own line images, for its one-pixel attacks."""
    if prep.scenario.data.builtin != "lines" or prep.scenario.model.builtin != "line-cnn":
        return None
    wrapper = prep.model.wrapper
    mask, _ = flip_mask(wrapper if wrapper.normalised else wrapper.net, prep.data.x, engine)
    any_flip: list[bool] = np.asarray(mask.any(axis=(1, 2)), dtype=bool).tolist()
    return {
        "images": len(any_flip),
        "share_with_adversarial_flip": float(np.mean(any_flip)) if any_flip else 0.0,
        "per_sample": {int(s): v for s, v in zip(prep.data.index, any_flip, strict=True)},
    }


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """Every configuration's models swept; the summary per configuration and the bound."""
    engine = spec.engine or "auto"
    configs: list[dict[str, Any]] = []
    study: dict[str, Any] = {}
    for size in spec.sizes or (16,):
        for step in spec.angle_steps or (2.0,):
            t_gen = time.perf_counter()
            lines = generate_lines(size, step)
            cfg = _Config(size, step, lines, time.perf_counter() - t_gen)
            _sweep_config(ctx, index, spec, cfg, engine)
            entry, figure = _config_entry(cfg)
            configs.append(entry)
            study[f"{size}x{size} @ {step:g}°"] = figure
    entry = {
        "id": spec.label,
        "name": "pixel_flip_study",
        "configs": configs,
        "upper_bound": upper_bound(ctx.prep, engine),
    }
    return AnalysisOutput(entry, {ResultKey(index): study})
