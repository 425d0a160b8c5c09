"""Prepared scenario -> units: one attack x eps x defence x shard x backend each, and how a
unit is keyed on disk (its storage identity and what a stored result must hold).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from unified_adv.defences.variants import adaptive_defences, eot_for
from unified_adv.run.prepared import AttackPlan, Prepared
from unified_adv.run.units import Check, Unit, expect_arrays, unit_seed

__all__ = [
    "plan_units",
    "samples_fingerprint",
    "storage_unit",
    "stored_unit_check",
    "unit_batch_size",
]


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


def unit_batch_size(prep: Prepared, unit: Unit) -> int | None:
    """Samples per library call for ``unit``, or None when the unit runs in one call.

    A universal perturbation is one perturbation for all of its samples: never split.
    """
    size = prep.scenario.execution.batch_size
    if size is None or unit.attack == "universal" or size >= unit.stop - unit.start:
        return None
    return size


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
