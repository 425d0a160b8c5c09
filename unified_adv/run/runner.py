"""Scenario -> prepared model and data -> units -> per-unit results on disk.

Each step reads what the one before it wrote. Clean predictions are computed
once per scenario, never once per unit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from unified_adv.adapters import Adapter, AttackRequest
from unified_adv.errors import InputError
from unified_adv.run.units import Check, Unit, expect_arrays, unit_seed
from unified_adv.scenario.checks import backends_for
from unified_adv.scenario.schema import AttackSpec, Scenario
from unified_adv.sources.data import Dataset, load_data
from unified_adv.sources.load import load_model
from unified_adv.sources.models import LoadedModel


@dataclass
class AttackPlan:
    """The samples one attack runs on and, when targeted, their targets."""

    spec: AttackSpec
    index: int
    positions: np.ndarray  # positions into the prepared data set
    targets: np.ndarray | None
    backends: tuple[str, ...]
    scope: int  # the first `scope` samples of the data set are evaluated under this attack


class CleanScores:
    """Prediction, confidence and correctness on the clean inputs, derived once from the
    clean logits (read per unit and per sample row): for the model and each defended one."""

    clean_logits: np.ndarray

    def labels(self) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def clean_pred(self) -> np.ndarray:
        return self.clean_logits.argmax(1)

    @cached_property
    def clean_conf(self) -> np.ndarray:
        return softmax(self.clean_logits, axis=1).max(1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.clean_pred == self.labels()


@dataclass
class Prepared(CleanScores):
    scenario: Scenario
    model: LoadedModel
    data: Dataset
    clean_logits: np.ndarray
    num_classes: int
    plans: list[AttackPlan] = field(default_factory=list)
    #: The scenario's defences: the classifier with each defence in front (unified_adv.defences.variants).
    variants: dict[str, Any] = field(default_factory=dict)
    #: Models the analyses use, loaded and checked once here: "checkpoint:J" (file
    #: checkpoints) and "transfer:A:J" (analysis A's model J).
    other_models: dict[str, LoadedModel] = field(default_factory=dict)

    def wrapper_for(self, defence: str) -> Any:
        return self.variants[defence].wrapper if defence else self.model.wrapper

    def labels(self) -> np.ndarray:
        return self.data.y


def _forward(
    model: LoadedModel, x: np.ndarray, file: str, field: str, data_field: str = "data"
) -> np.ndarray:
    """One forward pass on a few samples; any failure is the user's input, said in one line."""
    from unified_adv.sources.models import error_gist

    # A copy: the data may be a read-only memory map, which torch.from_numpy warns about.
    xb = torch.from_numpy(np.array(x, copy=True)).to(model.wrapper.device)
    shape = tuple(x.shape[1:])
    try:
        with torch.no_grad():
            raw = model.wrapper(xb)
    except RuntimeError as exc:  # torch's shape and dtype errors
        raise InputError.one(
            file, data_field, f"images of shape {shape} do not fit the model ({error_gist(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's forward() raised
        raise InputError.one(
            file,
            field,
            f"forward pass on images of shape {shape} raised {type(exc).__name__}: "
            f"{error_gist(exc)}",
        ) from None
    if not isinstance(raw, torch.Tensor):
        raise InputError.one(
            file,
            field,
            f"returns a {type(raw).__name__}, expected a tensor of logits (N, classes)",
        )
    out: np.ndarray = raw.detach().float().cpu().numpy()
    if out.ndim != 2 or out.shape[0] != len(x) or out.shape[1] < 2:
        raise InputError.one(
            file, field, f"expected logits of shape (N, classes >= 2), got {tuple(out.shape)}"
        )
    return out


def _probe(model: LoadedModel, data: Dataset, scenario: Scenario) -> int:
    """One forward pass on two samples: shapes, classes and outputs must make sense."""
    file = scenario.file
    channels = int(data.x.shape[1])
    if model.wrapper.normalised:
        n_mean = int(model.wrapper.get_buffer("mean").shape[1])
        if n_mean not in (1, channels):
            raise InputError.one(
                file,
                "model.mean",
                f"{n_mean} values (and as many std), but the images have {channels} channel(s)",
            )
    out = _forward(model, data.x[:2], file, "model")
    if not np.isfinite(out).all():
        raise InputError.one(file, "model", "produces NaN or infinite outputs on the data")
    num_classes = int(out.shape[1])
    source = "data.npz" if scenario.data.npz is not None else "data"
    if scenario.data.npz is not None and data.class_names and len(data.class_names) != num_classes:
        raise InputError.one(
            file,
            source,
            f"class_names has {len(data.class_names)} names, but the model outputs "
            f"{num_classes} classes",
        )
    bad = data.y[(data.y < 0) | (data.y >= num_classes)]
    if len(bad):
        raise InputError.one(
            file,
            "data",
            f"labels must lie in [0, {num_classes - 1}] for this model; found {int(bad[0])}",
        )
    return num_classes


def _check_l2_eps(scenario: Scenario, data: Dataset) -> None:
    """An L2 eps beyond the diameter of the input box is no bound (every image is in the
    ball): refused, as the schema refuses such an L-inf eps."""
    lo, hi = scenario.model.input_range
    values = int(np.prod(data.x.shape[1:]))
    diameter = (hi - lo) * float(np.sqrt(values))
    for i, spec in enumerate(scenario.attacks):
        if spec.norm == "l2" and spec.eps and max(spec.eps) > diameter:
            raise InputError.one(
                scenario.file,
                f"attacks[{i}].eps",
                f"{max(spec.eps):g} is larger than the L2 diameter of the input box "
                f"({diameter:g} for images of {values} values in [{lo:g}, {hi:g}]): every "
                "image lies in that ball",
            )


def _check_other_models(prep: Prepared) -> None:
    """Everything the analyses load or check later, checked now, before any unit runs and
    before an output folder exists: the model's checkpoints, the transfer analysis's models,
    the UAP analysis's targets."""
    scenario, file = prep.scenario, prep.scenario.file
    x = prep.data.x[:2]
    spec = scenario.model
    if spec.checkpoints and not spec.builtin:  # builtin epochs: checked by the schema
        for j, ckpt in enumerate(spec.checkpoints):
            where = f"model.checkpoints[{j}]"
            loaded = prep.other_models[f"checkpoint:{j}"] = load_model(scenario, ckpt)
            out = _forward(loaded, x, file, where)
            if out.shape[1] != prep.num_classes:
                raise InputError.one(
                    file, where, f"has {out.shape[1]} classes, but the model has {prep.num_classes}"
                )
    for a_i, analysis in enumerate(scenario.analyses):
        if analysis.name == "transfer":
            from unified_adv.sources.load import load_model_spec

            for j, m in enumerate(analysis.models or ()):
                where = f"analyses[{a_i}].models[{j}]"
                loaded = load_model_spec(m, scenario, where=where)
                prep.other_models[f"transfer:{a_i}:{j}"] = loaded
                out = _forward(loaded, x, file, where, data_field=where)
                if out.shape[1] != prep.num_classes:
                    raise InputError.one(
                        file,
                        where,
                        f"has {out.shape[1]} classes, but the scenario's model has "
                        f"{prep.num_classes}",
                    )
        if analysis.name == "uap":
            targets = analysis.targets if isinstance(analysis.targets, tuple) else ()
            bad = [t for t in targets if t >= prep.num_classes]
            if bad:
                raise InputError.one(
                    file,
                    f"analyses[{a_i}].targets",
                    f"must be below the model's {prep.num_classes} classes, got {bad[0]}",
                )
            if scenario.data.builtin != "digits" and len(prep.data.y) < 2:
                raise InputError.one(
                    file, "data", "the UAP analysis needs at least two images to split"
                )


def _choose_targets(
    spec: AttackSpec, index: int, seed: int, y: np.ndarray, logits: np.ndarray, file: str
) -> np.ndarray | None:
    """Targets are chosen here, once, and handed to every backend alike."""
    n, num_classes = logits.shape
    mode = spec.target.mode
    if mode == "untargeted":
        return None
    if mode == "class":
        assert spec.target.label is not None
        if spec.target.label >= num_classes:
            raise InputError.one(
                file,
                f"attacks[{index}].target.class",
                f"must be below the model's {num_classes} classes, got {spec.target.label}",
            )
        return np.full(n, spec.target.label, dtype=np.int64)
    if mode == "least_likely":
        k = spec.target.k
        if k > num_classes:
            raise InputError.one(
                file,
                f"attacks[{index}].target.k",
                f"must be <= the model's {num_classes} classes, got {k}",
            )
        ranked = np.argsort(-logits, axis=1, kind="stable")
        return ranked[:, k - 1].astype(np.int64)
    # random: uniform over the classes other than the true one, seeded per attack
    rng = np.random.default_rng([seed, index, 0x7A5])
    t = rng.integers(0, num_classes - 1, size=n)
    return (t + (t >= y)).astype(np.int64)


def prepare(scenario: Scenario) -> Prepared:
    """Load model and data, check they fit, predict once, plan each attack's samples."""
    file = scenario.file
    model = load_model(scenario)
    data = load_data(scenario)
    if len(data.y) == 0:
        raise InputError.one(file, "data", "holds no samples")
    torch.manual_seed(scenario.seed)
    num_classes = _probe(model, data, scenario)
    _check_l2_eps(scenario, data)
    prep = Prepared(scenario, model, data, model.wrapper.logits(data.x), num_classes)
    finite = np.isfinite(prep.clean_logits).all(axis=1)
    if not finite.all():
        first = int(data.index[int(np.argmin(finite))])
        raise InputError.one(
            file,
            "model",
            f"produces NaN or infinite outputs on the data (first on sample {first})",
        )
    _check_other_models(prep)
    correct = prep.correct
    if scenario.data.only_correct and not correct.any():
        raise InputError.one(
            file,
            "data.only_correct",
            f"no correctly classified samples left to attack (0 of {len(correct)})",
        )
    for i, spec in enumerate(scenario.attacks):
        keep = correct.copy() if scenario.data.only_correct else np.ones_like(correct)
        if spec.target.mode == "class" and spec.target.label is not None:
            keep &= data.y != spec.target.label  # attacking a sample toward its own class is void
        # limit: the attack evaluates the first `limit` samples (as data.limit does for all).
        scope = min(spec.limit, len(keep)) if spec.limit is not None else len(keep)
        keep[scope:] = False
        positions = np.flatnonzero(keep)
        if len(positions) == 0:
            why = ["data.only_correct"] if scenario.data.only_correct else []
            if spec.target.mode == "class":
                why.append(f"target class {spec.target.label}")
            if spec.limit is not None:
                why.append(f"limit {spec.limit}")
            raise InputError.one(
                file,
                f"attacks[{i}]",
                "no samples left to attack" + (f" after {', '.join(why)}" if why else ""),
            )
        if spec.target.mode == "each_other_class":
            # Every sample once per class other than its own: a source x target matrix.
            others = [np.delete(np.arange(num_classes), data.y[p]) for p in positions]
            targets: np.ndarray | None = np.concatenate(others).astype(np.int64)
            positions = np.repeat(positions, num_classes - 1)
        else:
            targets = _choose_targets(
                spec, i, scenario.seed, data.y[positions], prep.clean_logits[positions], file
            )
        prep.plans.append(
            AttackPlan(spec, i, positions, targets, backends_for(scenario, spec), scope)
        )
    if scenario.defences:
        from unified_adv.defences.variants import build_variants

        prep.variants = build_variants(prep)
    return prep


def samples_fingerprint(prep: Prepared, plan: AttackPlan, start: int, stop: int) -> str:
    """Exactly which samples a unit attacks: their positions in the data set, their ids in
    the source, their labels and targets (not just how many; a unit's key covers it)."""
    positions = np.ascontiguousarray(plan.positions[start:stop], dtype=np.int64)
    h = hashlib.sha256(positions.tobytes())
    h.update(np.ascontiguousarray(prep.data.index[positions], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(prep.data.y[positions], dtype=np.int64).tobytes())
    if plan.targets is not None:
        h.update(b"targets")
        h.update(np.ascontiguousarray(plan.targets[start:stop], dtype=np.int64).tobytes())
    return h.hexdigest()


def plan_units(prep: Prepared) -> list[Unit]:
    scenario = prep.scenario
    units = []
    for plan in prep.plans:
        spec = plan.spec
        # A universal perturbation is one perturbation for the whole data set: one shard.
        shard = len(plan.positions) if spec.name == "universal" else scenario.execution.shard_size
        base = f"{prep.model.fingerprint}:{prep.data.fingerprint}"
        from unified_adv.defences.variants import adaptive_defences, eot_for

        defences = ["", *adaptive_defences(prep, spec.label, spec.name)]
        for e_i, eps in enumerate(spec.eps_values):
            resolved = spec.resolved_params(eps)
            for defence in defences:
                for s_i, start in enumerate(range(0, len(plan.positions), shard)):
                    stop = min(start + shard, len(plan.positions))
                    context = f"{base}:{samples_fingerprint(prep, plan, start, stop)}"
                    for backend in plan.backends:
                        params = dict(resolved)
                        unit_context = context
                        if defence:
                            eot = eot_for(prep, defence, spec.name, spec.norm, backend)
                            if eot is not None and spec.eot_samples is None:
                                params["eot_samples"] = eot
                            unit_context = f"{context}:{prep.variants[defence].fingerprint}"
                        units.append(
                            Unit(
                                attack_index=plan.index,
                                attack_id=spec.label,
                                attack=spec.name,
                                backend=backend,
                                norm=spec.norm,
                                eps_index=e_i,
                                eps=eps,
                                params=tuple(sorted(params.items())),
                                target=spec.target.describe(),
                                shard_index=s_i,
                                start=start,
                                stop=stop,
                                seed=unit_seed(scenario.seed, plan.index, e_i, s_i),
                                context=unit_context,
                                defence=defence,
                            )
                        )
    return units


@dataclass
class UnitOutcome:
    unit: Unit
    arrays: dict[str, np.ndarray] | None
    meta: dict[str, Any]
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.arrays is not None


def _batch_seed(seed: int, batch: int) -> int:
    """The first batch keeps the unit's seed (one batch = the unbatched unit); later batches
    draw theirs from it, so a split unit is as reproducible as a whole one."""
    if batch == 0:
        return seed
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def unit_batch_size(prep: Prepared, unit: Unit) -> int | None:
    """Samples per library call for ``unit``, or None when the unit runs in one call.

    A universal perturbation is one perturbation for all of its samples: never split.
    """
    size = prep.scenario.execution.batch_size
    if size is None or unit.attack == "universal" or size >= unit.stop - unit.start:
        return None
    return size


def execute_unit(
    prep: Prepared, unit: Unit, adapter: Adapter
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run one unit: the library call(s) on its samples, then unified-adv's own scoring.

    With ``execution.batch_size`` smaller than the unit, the samples go to the library in
    batches of that size (batch b seeded by :func:`_batch_seed`) and the scoring forward
    passes run in models.SCORE_BATCH rows each, so a sample's logits do not depend on it.
    """
    plan = prep.plans[unit.attack_index]
    positions = plan.positions[unit.start : unit.stop]
    y = prep.data.y[positions]
    target = None if plan.targets is None else plan.targets[unit.start : unit.stop]
    request = AttackRequest(
        attack=unit.attack,
        norm=unit.norm,
        eps=unit.eps,
        params=unit.param_dict,
        targeted=target is not None,
    )
    batch = unit_batch_size(prep, unit)
    step = batch or max(len(positions), 1)
    x_parts, failed_parts, calls = [], [], []
    elapsed = 0.0
    for b, lo in enumerate(range(0, len(positions), step)):
        hi = lo + step
        # Fancy indexing copies only this batch, also from a memory-mapped data set.
        xb = prep.data.x[positions[lo:hi]]
        tb = None if target is None else target[lo:hi]
        t0 = time.perf_counter()
        out = adapter.generate(request, xb, y[lo:hi], tb, seed=_batch_seed(unit.seed, b))
        elapsed += time.perf_counter() - t0
        x_parts.append(out.x_adv)
        failed_parts.append(
            out.backend_failed if out.backend_failed is not None else np.zeros(len(xb), bool)
        )
        calls.append(out.library_call)
    x_adv = np.concatenate(x_parts) if len(x_parts) > 1 else x_parts[0]
    # unified-adv decides success itself, from the model's prediction on what came back.
    if unit.defence:
        adv_logits = prep.variants[unit.defence].score(x_adv)
    else:  # fixed-shape passes (models.SCORE_BATCH), whatever the unit's batch size
        adv_logits = prep.model.wrapper.logits(x_adv)
    arrays = {
        "positions": positions.astype(np.int64),
        "x_adv": x_adv,
        "adv_logits": adv_logits.astype(np.float32),
        "target": (target if target is not None else np.full(len(y), -1)).astype(np.int64),
        "backend_failed": np.concatenate(failed_parts),
    }
    cap = adapter.capabilities[unit.attack]
    meta: dict[str, Any] = {
        "status": "ok",
        "time_s": elapsed,
        "library_call": calls[0],
        "note": cap.note_for(unit.norm, target is not None),
        "reproducible": cap.reproducible,
    }
    if batch is not None:
        meta["batches"] = {"batch_size": batch, "count": len(calls)}
    return arrays, meta


class UnitFailed(Exception):
    """``strict``: a unit raised, and the run stopped there."""

    def __init__(self, unit: str, error: str, traceback: str = ""):
        self.unit = unit
        self.error = error
        #: The unit's traceback as text: it may have run in another process (Dask).
        self.traceback = traceback
        super().__init__(f"unit {unit} failed: {error}")


def storage_unit(prep: Prepared, unit: Unit) -> Unit:
    """The unit as keyed on disk (``load_unit``/``save_unit``): a unit split into batches
    computes something else (randomised attacks draw per batch), so the batch size joins
    its key. Any code that stores or reuses unit results must go through this."""
    batch = unit_batch_size(prep, unit)
    if batch is None:
        return unit
    return dataclasses.replace(unit, context=f"{unit.context}:batch{batch}")


def stored_unit_check(prep: Prepared, unit: Unit) -> Check:
    """What a stored result of ``unit`` must hold to be reused: every array, one row per
    sample of the unit, made on exactly its samples and targets."""
    plan = prep.plans[unit.attack_index]
    positions = plan.positions[unit.start : unit.stop]
    n = len(positions)
    shape = (n, *prep.data.x.shape[1:])
    rows = expect_arrays(positions=n, x_adv=n, adv_logits=n, target=n, backend_failed=n)

    def check(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str | None:
        problem = rows(arrays, meta)
        if problem is not None:
            return problem
        if not np.array_equal(arrays["positions"], positions):
            return "it was made on other samples"
        want = plan.targets[unit.start : unit.stop] if plan.targets is not None else -1
        if not np.array_equal(arrays["target"], np.broadcast_to(want, (n,))):
            return "it was made for other targets"
        if arrays["x_adv"].shape != shape:
            return f"array 'x_adv' has shape {arrays['x_adv'].shape}, expected {shape}"
        if arrays["adv_logits"].shape != (n, prep.num_classes):
            return f"array 'adv_logits' has shape {arrays['adv_logits'].shape}"
        return None

    return check


def _remove_stale_temp_files(folder: Path) -> None:
    """Temp files (``.NAME.tmpPID``) of a killed run: never read as results; removed once
    the process that wrote them is gone."""
    if not folder.is_dir():
        return
    for path in folder.glob(".*.tmp*"):
        pid = path.name.rpartition(".tmp")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # alive under another user, or not ours to judge: leave it


def run_units(
    prep: Prepared,
    units: list[Unit],
    folder: Path,
    *,
    resume: bool = False,
    strict: bool = False,
    progress: Callable[[Unit], None] | None = None,
) -> list[UnitOutcome]:
    """Run (or, with ``resume``, reuse) every unit.

    A failing unit is recorded, not fatal; with ``strict`` the first failure raises
    :class:`UnitFailed` and the units finished before it stay on disk for ``resume``.
    Every result is written atomically (temp file, then rename) as soon as it is done,
    so a run killed at any point loses at most the units it was working on.
    """
    from unified_adv.run.executors import LocalExecutor, run_units_with

    return run_units_with(
        LocalExecutor(), prep, units, folder, resume=resume, strict=strict, progress=progress
    )
