"""Scenario -> prepared model and data -> units -> per-unit results on disk.

Each step reads what the one before it wrote. Clean predictions are computed
once per scenario, never once per unit.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from .adapters import Adapter, AttackRequest, adapter_class
from .data import Dataset, load_data
from .errors import InputError
from .models import LoadedModel, load_model
from .scenario import AttackSpec, Scenario
from .units import Unit, load_unit, save_unit, unit_seed


@dataclass
class AttackPlan:
    """The samples one attack runs on and, when targeted, their targets."""

    spec: AttackSpec
    index: int
    positions: np.ndarray  # positions into the prepared data set
    targets: np.ndarray | None
    backends: tuple[str, ...]
    scope: int  # the first `scope` samples of the data set are evaluated under this attack


@dataclass
class Prepared:
    scenario: Scenario
    model: LoadedModel
    data: Dataset
    clean_logits: np.ndarray
    num_classes: int
    plans: list[AttackPlan] = field(default_factory=list)
    #: The scenario's defences: the classifier with each defence in front (unified_adv.defended).
    variants: dict[str, Any] = field(default_factory=dict)

    def wrapper_for(self, defence: str) -> Any:
        return self.variants[defence].wrapper if defence else self.model.wrapper

    # Derived once from the clean logits: read per unit and per sample row.
    @cached_property
    def clean_pred(self) -> np.ndarray:
        return self.clean_logits.argmax(1)

    @cached_property
    def clean_conf(self) -> np.ndarray:
        return softmax(self.clean_logits, axis=1).max(1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.clean_pred == self.data.y


def _probe(model: LoadedModel, data: Dataset, file: str) -> int:
    """One forward pass on one sample: shapes, classes and outputs must make sense."""
    try:
        out = model.wrapper.logits(data.x[:2])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise InputError.one(
            file,
            "data",
            f"images of shape {tuple(data.x.shape[1:])} do not fit the model ({first})",
        ) from None
    if out.ndim != 2 or out.shape[0] != min(2, len(data.x)) or out.shape[1] < 2:
        raise InputError.one(
            file, "model", f"expected logits of shape (N, classes >= 2), got {tuple(out.shape)}"
        )
    if not np.isfinite(out).all():
        raise InputError.one(file, "model", "produces NaN or infinite outputs on the data")
    num_classes = int(out.shape[1])
    bad = data.y[(data.y < 0) | (data.y >= num_classes)]
    if len(bad):
        raise InputError.one(
            file,
            "data",
            f"labels must lie in [0, {num_classes - 1}] for this model; found {int(bad[0])}",
        )
    return num_classes


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
    num_classes = _probe(model, data, file)
    prep = Prepared(scenario, model, data, model.wrapper.logits(data.x), num_classes)
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
            raise InputError.one(file, f"attacks[{i}]", "no samples left to attack")
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
            AttackPlan(spec, i, positions, targets, scenario.backends_for(spec), scope)
        )
    if scenario.defences:
        from .defended import build_variants

        prep.variants = build_variants(prep)
    return prep


def plan_units(prep: Prepared) -> list[Unit]:
    scenario = prep.scenario
    units = []
    for plan in prep.plans:
        spec = plan.spec
        # A universal perturbation is one perturbation for the whole data set: one shard.
        shard = len(plan.positions) if spec.name == "universal" else scenario.execution.shard_size
        targets_fp = (
            "" if plan.targets is None else hashlib.sha256(plan.targets.tobytes()).hexdigest()
        )
        context = (
            f"{prep.model.fingerprint}:{prep.data.fingerprint}:{targets_fp}:{plan.positions.size}"
        )
        from .defended import adaptive_defences, eot_for

        defences = ["", *adaptive_defences(prep, spec.label, spec.name)]
        for e_i, eps in enumerate(spec.eps_values):
            resolved = spec.resolved_params(eps)
            for defence in defences:
                for s_i, start in enumerate(range(0, len(plan.positions), shard)):
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
                                stop=min(start + shard, len(plan.positions)),
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


def execute_unit(
    prep: Prepared, unit: Unit, adapter: Adapter
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    plan = prep.plans[unit.attack_index]
    positions = plan.positions[unit.start : unit.stop]
    x = prep.data.x[positions]
    y = prep.data.y[positions]
    target = None if plan.targets is None else plan.targets[unit.start : unit.stop]
    request = AttackRequest(
        attack=unit.attack,
        norm=unit.norm,
        eps=unit.eps,
        params=unit.param_dict,
        targeted=target is not None,
    )
    t0 = time.perf_counter()
    out = adapter.generate(request, x, y, target, seed=unit.seed)
    elapsed = time.perf_counter() - t0
    # unified-adv decides success itself, from the model's prediction on what came back.
    if unit.defence:
        adv_logits = prep.variants[unit.defence].score(out.x_adv)
    else:
        adv_logits = prep.model.wrapper.logits(out.x_adv)
    arrays = {
        "positions": positions.astype(np.int64),
        "x_adv": out.x_adv,
        "adv_logits": adv_logits.astype(np.float32),
        "target": (target if target is not None else np.full(len(y), -1)).astype(np.int64),
        "backend_failed": (
            out.backend_failed if out.backend_failed is not None else np.zeros(len(y), bool)
        ),
    }
    cap = adapter.capabilities[unit.attack]
    meta = {
        "status": "ok",
        "time_s": elapsed,
        "library_call": out.library_call,
        "note": cap.note,
        "reproducible": cap.reproducible,
    }
    return arrays, meta


def run_units(
    prep: Prepared,
    units: list[Unit],
    folder: Path,
    *,
    resume: bool = False,
    progress: Callable[[Unit], None] | None = None,
) -> list[UnitOutcome]:
    """Run (or, with ``resume``, reuse) every unit; a failing unit is recorded, not fatal."""
    adapters: dict[tuple[str, str], Adapter] = {}
    outcomes = []
    for unit in units:
        stored = load_unit(folder, unit) if resume else None
        if stored is not None and stored[1].get("status") == "ok":
            outcomes.append(UnitOutcome(unit, stored[0], stored[1], reused=True))
        else:
            try:
                which = (unit.backend, unit.defence)
                if which not in adapters:
                    adapters[which] = adapter_class(unit.backend)(
                        model=prep.wrapper_for(unit.defence)
                    )
                arrays, meta = execute_unit(prep, unit, adapters[which])
                if prep.scenario.crosscheck.repeat:
                    again, _ = execute_unit(prep, unit, adapters[which])
                    meta["repeat_identical"] = bool(np.array_equal(arrays["x_adv"], again["x_adv"]))
                save_unit(folder, unit, arrays, meta)
                outcomes.append(UnitOutcome(unit, arrays, meta))
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - isolate one backend's failure
                message = f"{type(exc).__name__}: {exc}".strip()
                tb = traceback.format_exc(limit=8)
                print(f"unit {unit.name} failed: {message.splitlines()[0]}", file=sys.stderr)
                outcomes.append(
                    UnitOutcome(unit, None, {"status": "error", "error": message, "traceback": tb})
                )
        if progress is not None:
            progress(unit)
    return outcomes
