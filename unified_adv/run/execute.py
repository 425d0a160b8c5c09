"""Execute one unit, and run a list of units through an executor (local by default).

:func:`execute_unit` runs one unit (the library call, then unified-adv's own scoring) and
isolates its failure; :func:`run_units` is the driver: it reuses stored results on resume,
hands the rest to an :class:`Executor`, and is the only writer of unit results.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unified_adv.adapters import Adapter, AttackRequest, adapter_class
from unified_adv.errors import InputError
from unified_adv.files import STORAGE_ERRNOS, remove_stale_temp_files
from unified_adv.run.plan import storage_unit, stored_unit_check, unit_batch_size
from unified_adv.run.prepared import Prepared, UnitFailed, UnitOutcome, error_outcome
from unified_adv.run.progress import batch_done
from unified_adv.run.units import Unit, load_unit, save_unit

__all__ = ["Executor", "LocalExecutor", "batch_seed", "execute_unit", "run_units"]


def batch_seed(seed: int, batch: int) -> int:
    """The first batch keeps the unit's seed (one batch = the unbatched unit); later batches
    draw theirs from it, so a split unit is as reproducible as a whole one."""
    if batch == 0:
        return seed
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def _run_attack(
    prep: Prepared, unit: Unit, adapter: Adapter
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One unit's library call(s) on its samples, then unified-adv's own scoring.

    With ``execution.batch_size`` smaller than the unit, the samples go to the library in
    batches of that size (batch b seeded by :func:`batch_seed`) and the scoring forward
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
    batches = -(-len(positions) // step)
    for b, lo in enumerate(range(0, len(positions), step)):
        hi = lo + step
        # Fancy indexing copies only this batch, also from a memory-mapped data set.
        xb = prep.data.x[positions[lo:hi]]
        tb = None if target is None else target[lo:hi]
        t0 = time.perf_counter()
        out = adapter.generate(request, xb, y[lo:hi], tb, seed=batch_seed(unit.seed, b))
        elapsed += time.perf_counter() - t0
        x_parts.append(out.x_adv)
        failed_parts.append(
            out.backend_failed if out.backend_failed is not None else np.zeros(len(xb), bool)
        )
        calls.append(out.library_call)
        batch_done(unit, b + 1, batches, elapsed)  # progress inside the unit, when shown
    x_adv = np.concatenate(x_parts) if len(x_parts) > 1 else x_parts[0]
    del x_parts  # the batches' copies: one copy of the unit's examples from here
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


def execute_unit(prep: Prepared, unit: Unit, adapter: Adapter) -> UnitOutcome:
    """Run one unit, isolated: an exception becomes an error record (the run goes on), an
    :class:`InputError` propagates. With ``crosscheck.repeat`` the unit runs twice and
    ``meta["repeat_identical"]`` says whether both runs gave the same examples."""
    try:
        arrays, meta = _run_attack(prep, unit, adapter)
        if prep.scenario.crosscheck.repeat:
            again, _ = _run_attack(prep, unit, adapter)
            meta["repeat_identical"] = bool(np.array_equal(arrays["x_adv"], again["x_adv"]))
        return UnitOutcome(unit, arrays, meta)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate one backend's failure
        return error_outcome(unit, exc, traceback.format_exc(limit=8))


class Executor(Protocol):
    """Runs units; yields one outcome per unit as each finishes (any order). An outcome with
    ``arrays=None`` is a unit that failed (``meta``: status, error, traceback); an
    :class:`InputError` ends the iteration. Nothing is written by the executor."""

    name: str

    def map_units(self, prep: Prepared, units: Sequence[Unit]) -> Iterator[UnitOutcome]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def run_units(
    prep: Prepared,
    units: list[Unit],
    folder: Path,
    *,
    executor: Executor | None = None,
    resume: bool = False,
    strict: bool = False,
    progress: Callable[[Unit], None] | None = None,
) -> list[UnitOutcome]:
    """Run (or, with ``resume``, reuse) every unit, through ``executor`` (default: this
    process, :class:`LocalExecutor`): same outcomes, same files, same order whichever runs them.

    Stored results are reused on ``resume`` (and never submitted); every other unit goes to
    the executor, and each result is saved here, by the driver, atomically, as it arrives,
    under its storage key (:func:`~unified_adv.run.plan.storage_unit`), so a run killed at
    any point loses at most the units it was working on. A failing unit is recorded, not fatal. ``progress`` is called once
    per unit, reused or run, as it completes. ``strict``: the first unit that fails stops
    the run (:class:`~unified_adv.run.prepared.UnitFailed`; the executor's remaining work is cancelled) and what
    finished before it stays on disk for ``resume``.
    """
    executor = executor if executor is not None else LocalExecutor()
    remove_stale_temp_files(folder)
    done: dict[int, UnitOutcome] = {}
    todo: list[Unit] = []
    where: dict[str, list[int]] = {}  # unit key -> its places in ``units``
    for i, unit in enumerate(units):
        stored = (
            load_unit(folder, storage_unit(prep, unit), stored_unit_check(prep, unit))
            if resume
            else None
        )
        if stored is not None and stored[1].get("status") == "ok":
            done[i] = UnitOutcome(unit, stored[0], stored[1], reused=True)
            if progress is not None:
                progress(unit)
        else:
            if unit.key not in where:
                todo.append(unit)
            where.setdefault(unit.key, []).append(i)
    results = executor.map_units(prep, todo)
    try:
        for outcome in results:
            unit = outcome.unit
            if outcome.arrays is not None:
                try:
                    kept = save_unit(folder, storage_unit(prep, unit), outcome.arrays, outcome.meta)
                    # From here the examples are read back from disk when asked for: a run
                    # holds one unit's examples at a time, not every unit's.
                    outcome = dataclasses.replace(outcome, arrays=kept)
                except OSError as exc:
                    if exc.errno in STORAGE_ERRNOS:
                        raise  # the disk is full: no later unit could be kept either
                    outcome = error_outcome(unit, exc, traceback.format_exc(limit=8))
                except Exception as exc:  # noqa: BLE001 - as the runner: a unit's error
                    outcome = error_outcome(unit, exc, traceback.format_exc(limit=8))
            if outcome.arrays is None:
                first = (outcome.meta.get("error") or "").strip().splitlines()[:1]
                if strict:
                    raise UnitFailed(
                        unit.name, first[0] if first else "", outcome.meta.get("traceback", "")
                    )
                print(f"unit {unit.name} failed: {first[0] if first else ''}", file=sys.stderr)
            for i in where[unit.key]:
                done[i] = outcome
                if progress is not None:
                    progress(unit)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # a generator's finally: the executor cancels what is still queued
    missing = [units[i].name for i in range(len(units)) if i not in done]
    if missing:  # an executor that lost units is a bug, never a silent gap in the results
        raise RuntimeError(f"executor {executor.name!r} returned no result for {missing[:5]}")
    return [done[i] for i in range(len(units))]


class LocalExecutor:
    """In this process, in order: the default."""

    name = "local"

    def map_units(self, prep: Prepared, units: Sequence[Unit]) -> Iterator[UnitOutcome]:
        adapters: dict[tuple[str, str], Adapter] = {}
        for unit in units:
            which = (unit.backend, unit.defence)
            try:
                if which not in adapters:
                    adapters[which] = adapter_class(unit.backend)(
                        model=prep.wrapper_for(unit.defence)
                    )
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - as the runner: recorded per unit
                yield error_outcome(unit, exc, traceback.format_exc(limit=8))
                continue
            yield execute_unit(prep, unit, adapters[which])

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """(index, fn(item)) for every item, in order."""
        for i, item in enumerate(items):
            yield i, fn(item)

    def describe(self) -> dict[str, Any]:
        """Where the units ran: for the summary's provenance."""
        return {"executor": "local"}

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
