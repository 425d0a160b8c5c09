"""Running the analyses, per model checkpoint, as units that are saved and resumed.

One unit is one analysis on one checkpoint (and, for the targeted walk, one backend).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unified_adv.adapters import adapter_class, backend_names
from unified_adv.analyses.morph import (
    MorphResult,
    WalkResult,
    morph_pairs,
    morph_subset,
    morph_summary,
    morph_sweep,
    robustness_index,
    select_images,
    targeted_walk,
    valid_pairs,
    walk_subset,
    walk_summary,
)
from unified_adv.catalogue.attacks import madry_step
from unified_adv.run.runner import Prepared
from unified_adv.run.units import load_unit, save_unit, unit_seed
from unified_adv.sources.models import LoadedModel, _state_fingerprint, load_model


@dataclass(frozen=True)
class AnalysisUnit:
    analysis_index: int
    analysis_id: str
    analysis: str
    checkpoint: str  # "final" or the checkpoint as written in the scenario
    backend: str  # "" for morph
    params: tuple[tuple[str, Any], ...]
    seed: int
    context: str
    variant: str = ""  # e.g. Possas's method-gradient: one unit file each

    @property
    def name(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.checkpoint)[:40]
        suffix = f"-{self.backend}" if self.backend else ""
        suffix += f"-{self.variant}" if self.variant else ""
        return f"an{self.analysis_index:02d}-{self.analysis_id}-ckpt-{safe}{suffix}"

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CheckpointModel:
    label: str
    model: LoadedModel
    accuracy: float
    correct: np.ndarray  # (N,) bool over the scenario's samples


def checkpoint_models(prep: Prepared) -> list[CheckpointModel]:
    """The model's checkpoints in the order given, then the model itself ("final")."""
    scenario = prep.scenario
    out = []
    for j, ckpt in enumerate(scenario.model.checkpoints or ()):
        # File checkpoints were loaded and checked by prepare(); builtin epochs load here.
        loaded = prep.other_models.get(f"checkpoint:{j}") or load_model(scenario, ckpt)
        correct = loaded.wrapper.logits(prep.data.x).argmax(1) == prep.data.y
        out.append(CheckpointModel(str(ckpt), loaded, float(correct.mean()), correct))
    out.append(CheckpointModel("final", prep.model, float(prep.correct.mean()), prep.correct))
    return out


RI_DEFINITION = (
    "RI = 100·E·B is this project's definition (the paper gives no formula): E = mean MAE of "
    "the targeted walks in units of the input range, B = 1 − 2·mean|T − 0.5| over the morph "
    "pairs; each over the pairs and walks valid for the checkpoint"
)


def _walk_backends(spec_backends: tuple[str, ...] | None) -> tuple[str, ...]:
    names = spec_backends if spec_backends and spec_backends != ("all",) else backend_names()
    return tuple(b for b in names if "bim" in adapter_class(b).capabilities)


def run_analyses(
    prep: Prepared,
    folder: Path,
    *,
    resume: bool = False,
    progress: Any = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Run every analysis on every checkpoint; return their summaries and in-memory results."""
    scenario = prep.scenario
    if not scenario.analyses:
        return {"analyses": [], "monitor": [], "results": {}}
    lo, hi = prep.model.wrapper.input_range
    checkpoints = checkpoint_models(prep)
    summaries: list[dict[str, Any]] = []
    results: dict[tuple[int, str, str], Any] = {}
    monitor: dict[str, dict[str, Any]] = {
        c.label: {"checkpoint": c.label, "accuracy": c.accuracy} for c in checkpoints
    }
    for a_i, spec in enumerate(scenario.analyses):
        images = select_images(prep.data.y, prep.correct, spec.images_per_class, prep.num_classes)
        labels = prep.data.y[images]
        x = prep.data.x[images]
        entry: dict[str, Any] = {
            "id": spec.label,
            "name": spec.name,
            "images": int(len(images)),
            "image_samples": [int(i) for i in prep.data.index[images]],
            "checkpoints": [],
        }
        if spec.name == "confidence_buckets":
            summaries.append(_confidence_buckets(prep, a_i, spec, folder, resume))
            continue
        if spec.name in ("uap", "transfer"):
            from unified_adv.analyses.studies import run_transfer, run_uap

            run = run_uap if spec.name == "uap" else run_transfer
            study_entry, extra = run(prep, a_i, spec, folder, resume)
            summaries.append(study_entry)
            results[(a_i, spec.name, "")] = extra
            continue
        if spec.name == "pixel_flip_study":
            entry, study = _pixel_flip_study(prep, a_i, spec, folder, resume, executor)
            summaries.append(entry)
            results[(a_i, "study", "")] = study
            continue
        per_checkpoint = spec.select == "per_checkpoint"
        entry["select"] = spec.select or "final"
        for ckpt in checkpoints:
            if per_checkpoint:
                images = select_images(
                    prep.data.y, ckpt.correct, spec.images_per_class, prep.num_classes
                )
                labels, x = prep.data.y[images], prep.data.x[images]
            # Which selected images this checkpoint classifies correctly: its statistics
            # use only the pairs and walks whose endpoints (source) it gets right.
            valid_img = ckpt.correct[images]
            context = (
                f"{ckpt.model.fingerprint}:{prep.data.fingerprint}:{images.tobytes().hex()[:64]}"
            )
            if spec.name == "morph":
                steps = spec.steps or 100
                seed = spec.seed if spec.seed is not None else scenario.seed
                pairs = morph_pairs(labels, spec.pairs, seed)
                unit = AnalysisUnit(
                    a_i,
                    spec.label,
                    "morph",
                    ckpt.label,
                    "",
                    (("pairs", spec.pairs), ("steps", steps)),
                    seed,
                    context,
                )
                stored = load_unit(folder, unit) if resume else None  # type: ignore[arg-type]
                t0 = time.perf_counter()
                if stored is not None:
                    arr = stored[0]
                    res = MorphResult(
                        arr["pairs"],
                        arr["t"],
                        arr["preds"],
                        arr["probs"],
                        arr["thresholds"],
                        arr["popup"],
                        arr["popup_before_switch"],
                    )
                    elapsed = float(stored[1].get("time_s", 0.0))
                else:
                    res = morph_sweep(ckpt.model.wrapper, x, labels, pairs, steps)
                    elapsed = time.perf_counter() - t0
                    save_unit(folder, unit, asdict(res), {"status": "ok", "time_s": elapsed})  # type: ignore[arg-type]
                keep = valid_pairs(pairs, valid_img)
                summary = morph_summary(morph_subset(res, keep), labels, prep.num_classes)
                every = morph_summary(res, labels, prep.num_classes)
                summary["images_per_second"] = len(pairs) * steps / elapsed if elapsed > 0 else None
                entry["checkpoints"].append(
                    {
                        "checkpoint": ckpt.label,
                        "accuracy": ckpt.accuracy,
                        "time_s": elapsed,
                        "images": int(len(images)),
                        "images_correct": int(valid_img.sum()),
                        "pairs_total": int(len(pairs)),
                        "valid_pairs": int(keep.sum()),
                        **summary,
                        # The same statistics over every pair, misclassified endpoints
                        # included (for comparison only; not used by the monitor).
                        "all_pairs": {
                            k: every[k]
                            for k in ("popup_share", "mean_threshold", "no_switch", "morph_balance")
                        },
                    }
                )
                monitor[ckpt.label]["morph_balance"] = summary["morph_balance"]
                monitor[ckpt.label]["popup_share"] = summary["popup_share"]
                monitor[ckpt.label]["valid_pairs"] = int(keep.sum())
                monitor[ckpt.label]["pairs_total"] = int(len(pairs))
                results[(a_i, ckpt.label, "")] = res
            else:
                step = spec.step_size if spec.step_size is not None else (hi - lo) / 255
                max_steps = spec.max_steps or 255
                src = np.repeat(np.arange(len(images)), prep.num_classes - 1)
                targets = np.concatenate(
                    [np.delete(np.arange(prep.num_classes), c) for c in labels]
                ).astype(np.int64)
                xw, yw = x[src], labels[src]
                per_backend: dict[str, Any] = {}
                finals: dict[str, WalkResult] = {}
                for backend in _walk_backends(spec.backends):
                    seed = unit_seed(scenario.seed, 1000 + a_i, 0, 0)
                    unit = AnalysisUnit(
                        a_i,
                        spec.label,
                        "targeted_walk",
                        ckpt.label,
                        backend,
                        (("max_steps", max_steps), ("step_size", step)),
                        seed,
                        context,
                    )
                    stored = load_unit(folder, unit) if resume else None  # type: ignore[arg-type]
                    t0 = time.perf_counter()
                    if stored is not None:
                        arr, meta = stored
                        walk = WalkResult(
                            arr["iterations"],
                            arr["reached"],
                            arr["x_final"],
                            arr["mae"],
                            meta.get("library_call", {}),
                        )
                        elapsed = float(meta.get("time_s", 0.0))
                    else:
                        adapter = adapter_class(backend)(model=ckpt.model.wrapper)
                        walk = targeted_walk(
                            adapter,
                            ckpt.model.wrapper,
                            xw,
                            yw,
                            targets,
                            step_size=step,
                            max_steps=max_steps,
                            seed=seed,
                        )
                        elapsed = time.perf_counter() - t0
                        save_unit(
                            folder,
                            unit,  # type: ignore[arg-type]
                            {
                                "iterations": walk.iterations,
                                "reached": walk.reached,
                                "x_final": walk.x_final,
                                "mae": walk.mae,
                            },
                            {"status": "ok", "time_s": elapsed, "library_call": walk.library_call},
                        )
                    keep = valid_img[src]
                    per_backend[backend] = {
                        **walk_summary(
                            walk_subset(walk, keep),
                            yw[keep],
                            targets[keep],
                            prep.num_classes,
                            hi - lo,
                        ),
                        "walks_total": int(len(keep)),
                        "valid_walks": int(keep.sum()),
                        "time_s": elapsed,
                    }
                    finals[backend] = walk
                    results[(a_i, ckpt.label, backend)] = (walk, yw, targets, src)
                names = sorted(finals)
                agreement = []
                for i, b1 in enumerate(names):
                    for b2 in names[i + 1 :]:
                        w1, w2 = finals[b1], finals[b2]
                        agreement.append(
                            {
                                "backends": [b1, b2],
                                "same_iterations": float((w1.iterations == w2.iterations).mean()),
                                "same_outcome": float((w1.reached == w2.reached).mean()),
                                "max_pixel_diff": float(
                                    np.abs(w1.x_final - w2.x_final).max(initial=0.0)
                                ),
                                "identical": bool(np.array_equal(w1.x_final, w2.x_final)),
                            }
                        )
                entry["checkpoints"].append(
                    {
                        "checkpoint": ckpt.label,
                        "accuracy": ckpt.accuracy,
                        "step_size": step,
                        "max_steps": max_steps,
                        "images": int(len(images)),
                        "images_correct": int(valid_img.sum()),
                        "backends": per_backend,
                        "agreement": agreement,
                    }
                )
                if names:
                    monitor[ckpt.label]["walk_effort"] = per_backend[names[0]]["walk_effort"]
                    monitor[ckpt.label]["walk_backend"] = names[0]
                    monitor[ckpt.label]["valid_walks"] = per_backend[names[0]]["valid_walks"]
                    monitor[ckpt.label]["walks_total"] = per_backend[names[0]]["walks_total"]
            if progress is not None:
                progress(f"{spec.label}@{ckpt.label}")
        summaries.append(entry)
    for row in monitor.values():
        row["robustness_index_definition"] = RI_DEFINITION
        row["robustness_index"] = robustness_index(row.get("walk_effort"), row.get("morph_balance"))
    return {"analyses": summaries, "monitor": list(monitor.values()), "results": results}


def _confidence_buckets(
    prep: Prepared, a_i: int, spec: Any, folder: Path, resume: bool
) -> dict[str, Any]:
    """Possas's Table 1 on the final model: correctly classified samples only."""
    from unified_adv.analyses import buckets as bk

    lo, hi = prep.model.wrapper.input_range
    mode = spec.mode or "paper"
    count = 3 if mode == "paper" else (spec.buckets or 3)
    thresholds = spec.thresholds or bk.PAPER_THRESHOLDS
    eps = spec.eps if spec.eps is not None else 0.1 * (hi - lo)
    steps = spec.steps or 10
    step_size = spec.step_size if spec.step_size is not None else madry_step(eps, steps)
    k = min(spec.k or 5, prep.num_classes)
    positions = np.flatnonzero(prep.correct)
    x, y = prep.data.x[positions], prep.data.y[positions]
    log_conf = bk.log_confidence(prep.clean_logits[positions])
    conf = np.exp(log_conf)
    bucket, edges = bk.assign_buckets(log_conf, mode, thresholds, count)
    names = bk.bucket_names(mode, count)
    ranked = np.argsort(-prep.clean_logits[positions], axis=1, kind="stable")
    targets = ranked[:, k - 1].astype(np.int64)  # the lowest-ranked of the top-k
    seed = unit_seed(prep.scenario.seed, 2000 + a_i, 0, 0)
    per_backend: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    ran: dict[str, list[str]] = {}
    for method, gradient, attack in bk.METHODS:
        targeted = gradient == "least_likely"
        for backend in bk.method_backends(spec.backends, attack, targeted):
            unit = AnalysisUnit(
                a_i,
                spec.label,
                "confidence_buckets",
                "final",
                backend,
                (
                    ("attack", attack),
                    ("eps", eps),
                    ("gradient", gradient),
                    ("k", k),
                    ("step_size", step_size),
                    ("steps", steps),
                ),
                seed,
                f"{prep.model.fingerprint}:{prep.data.fingerprint}",
                variant=f"{method}-{gradient}",
            )
            stored = load_unit(folder, unit) if resume else None  # type: ignore[arg-type]
            if stored is not None:
                logits = stored[0]["adv_logits"]
            else:
                t0 = time.perf_counter()
                adapter = adapter_class(backend)(model=prep.model.wrapper)
                x_adv = bk.run_method(
                    adapter, attack, targeted, x, y, targets, eps, steps, step_size, seed
                )
                logits = prep.model.wrapper.logits(x_adv)
                save_unit(
                    folder,
                    unit,
                    {"adv_logits": logits},  # type: ignore[arg-type]
                    {"status": "ok", "time_s": time.perf_counter() - t0},
                )
            per_backend.setdefault(backend, {})[(method, gradient)] = logits
            ran.setdefault(f"{method}/{gradient}", []).append(backend)
    tables = {b: bk.table(d, y, bucket, names, k) for b, d in per_backend.items()}
    primary = sorted(tables, key=lambda b: -len(per_backend[b]))[0] if tables else None
    return {
        "id": spec.label,
        "name": "confidence_buckets",
        "mode": mode,
        "edges": edges,
        "bucket_names": names,
        "eps": eps,
        "steps": steps,
        "step_size": step_size,
        "k": k,
        "n_samples": int(len(positions)),
        "bucket_counts": {n: int((bucket == i).sum()) for i, n in enumerate(names)},
        "bucket_ranges": {
            n: [float(conf[bucket == i].min()), float(conf[bucket == i].max())]
            if (bucket == i).any()
            else None
            for i, n in enumerate(names)
        },
        "bucket_notes": bk.bucket_notes(log_conf, bucket, names, mode),
        "ranking": "float64 log-probabilities",
        "confidence_quantiles": {
            str(q): float(np.quantile(conf, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
        }
        if len(conf)
        else {},
        "backends_per_method": ran,
        "tables": tables,
        "primary_backend": primary,
        "paper_findings": bk.paper_findings(tables[primary], names) if primary else [],
        "backend_spread": bk.backend_spread(tables),
    }


def _flip_mask(model: Any, images: np.ndarray, engine: str) -> tuple[np.ndarray, str]:
    """(N, D, D) bool: flipping pixel (i, j) of image n changes the model's prediction."""
    from unified_adv.analyses import pixelflip

    result = pixelflip.exhaustive_flips(model, images, engine=engine)
    mask: np.ndarray = np.asarray(result.adversarial, dtype=bool)
    if mask.ndim == 4:  # (N, K, D, D): binary images have one candidate value per pixel
        mask = np.asarray(mask.any(axis=1), dtype=bool)
    return mask, str(result.engine)


def flip_task(item: tuple[int, float, int, str]) -> tuple[np.ndarray, str, float]:
    """One trained line CNN's exhaustive one-pixel sweep, from plain data (a Dask task)."""
    from unified_adv.sources.lines import builtin_line_cnn, generate_lines

    size, step, seed, engine = item
    net, _ = builtin_line_cnn(size, step, seed)
    images = generate_lines(size, step).images
    t0 = time.perf_counter()
    mask, how = _flip_mask(net, images, engine)
    return mask, how, time.perf_counter() - t0


def _pixel_flip_study(
    prep: Prepared, a_i: int, spec: Any, folder: Path, resume: bool, executor: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Kügler et al.: every pixel of every unique line image flipped, for several sizes, angle
    steps and trained models; shares overall, by angle and by position, averaged over models."""
    from unified_adv.sources.lines import PAPER_TABLE1, builtin_line_cnn, generate_lines

    sizes = spec.sizes or (16,)
    steps = spec.angle_steps or (2.0,)
    seeds = spec.seeds or 1
    engine = spec.engine or "auto"
    configs: list[dict[str, Any]] = []
    study: dict[str, Any] = {}
    done: dict[tuple[int, float, int], tuple[np.ndarray, str, float]] = {}
    for size in sizes:
        for step in steps:
            t_gen = time.perf_counter()
            lines = generate_lines(size, step)
            gen_s = time.perf_counter() - t_gen
            trained, pending = [], []
            for seed in range(seeds):
                net, details = builtin_line_cnn(size, step, seed)
                trained.append(
                    {
                        "seed": seed,
                        "epochs": details.get("epochs"),
                        "training_accuracy": details.get("training_accuracy"),
                    }
                )
                unit = AnalysisUnit(
                    a_i,
                    spec.label,
                    "pixel_flip_study",
                    f"d{size}-s{step:g}",
                    f"seed{seed}",
                    (("engine", engine),),
                    seed,
                    f"{_state_fingerprint(net)}:{len(lines)}",
                )
                stored = load_unit(folder, unit) if resume else None
                if stored is not None:
                    done[(size, step, seed)] = (
                        stored[0]["adversarial"].astype(bool),
                        str(stored[1].get("engine", engine)),
                        float(stored[1].get("time_s", 0.0)),
                    )
                else:
                    pending.append((unit, (size, step, seed, engine)))
            # One model's exhaustive sweep per task: in this process or on the Dask workers,
            # which rebuild the line CNN from its (cached, seeded) description.
            from unified_adv.run.executors import LocalExecutor

            runner = executor if executor is not None else LocalExecutor()
            for i, (mask, how, elapsed) in runner.map(flip_task, [t for _, t in pending]):
                unit, (_, _, seed, _) = pending[i]
                save_unit(
                    folder,
                    unit,
                    {"adversarial": mask},
                    {"status": "ok", "time_s": elapsed, "engine": how},
                )
                done[(size, step, seed)] = (mask, how, elapsed)
            masks = [done[(size, step, seed)][0] for seed in range(seeds)]
            times = [done[(size, step, seed)][2] for seed in range(seeds)]
            used = {done[(size, step, seed)][1] for seed in range(seeds)}
            stack = np.stack(masks)  # (models, N, D, D)
            n_img = len(lines)
            candidates = n_img * size * size
            share_per_model = stack.reshape(len(masks), -1).mean(1)
            angles = np.round(lines.angle, 6)
            by_angle = []
            for ang in np.unique(angles):
                sel = angles == ang
                by_angle.append(
                    {
                        "angle": float(ang),
                        "images": int(sel.sum()),
                        "share": float(stack[:, sel].mean()),
                        "boundary_distance": float(lines.boundary_distance[sel][0]),
                    }
                )
            key = f"{size}x{size} @ {step:g}°"
            heat = stack.mean(axis=(0, 1))
            from unified_adv.analyses.pixelflip import away_from_x, unseen_cells

            configs.append(
                {
                    "size": size,
                    "angle_step": float(step),
                    "images": n_img,
                    "paper_images": PAPER_TABLE1.get((size, float(step))),
                    "ambiguous_images": int(lines.n_ambiguous),
                    "models": trained,
                    "candidates_per_model": candidates,
                    "adversarial_share": float(share_per_model.mean()),
                    "adversarial_share_per_model": [float(v) for v in share_per_model],
                    "images_with_adversarial_flip": float(stack.any(axis=(2, 3)).mean()),
                    "by_angle": by_angle,
                    "engine": sorted(used),
                    "seconds_per_model": float(np.median(times)) if times else None,
                    "candidates_per_second": candidates / float(np.median(times))
                    if times and np.median(times) > 0
                    else None,
                    "generation_seconds": gen_s,
                    "unseen_rows_cols": unseen_cells(size),
                    "away_from_x": away_from_x(heat, lines),
                }
            )
            study[key] = {
                "heatmap": heat,
                "by_angle": by_angle,
                "size": size,
                "step": step,
            }
    # The exhaustive upper bound on the scenario's own line images, for its one-pixel attacks.
    bound = None
    if prep.scenario.data.builtin == "lines" and prep.scenario.model.builtin == "line-cnn":
        wrapper = prep.model.wrapper
        mask, _ = _flip_mask(wrapper if wrapper.normalised else wrapper.net, prep.data.x, engine)
        any_flip: list[bool] = np.asarray(mask.any(axis=(1, 2)), dtype=bool).tolist()
        bound = {
            "images": len(any_flip),
            "share_with_adversarial_flip": float(np.mean(any_flip)) if any_flip else 0.0,
            "per_sample": {int(s): v for s, v in zip(prep.data.index, any_flip, strict=True)},
        }
    return {
        "id": spec.label,
        "name": "pixel_flip_study",
        "configs": configs,
        "upper_bound": bound,
    }, study
