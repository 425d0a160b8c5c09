"""Executors: where a scenario's units run.

The planner cuts a scenario into :class:`~unified_adv.run.units.Unit` s (attack × ε × backend ×
shard, plain data). An executor runs them and hands back one
:class:`~unified_adv.run.prepared.UnitOutcome` per unit, in the order they finish; the **driver**
(:func:`~unified_adv.run.execute.run_units`) stays the only writer of results: it saves each finished unit
atomically with :func:`~unified_adv.run.units.save_unit` exactly as the in-process runner does,
so ``--resume`` reads the same files whichever executor wrote them.

* :class:`LocalExecutor` runs the units in this process, one after the other (what
  the default of :func:`~unified_adv.run.execute.run_units`; defined in ``run/execute.py``).
* :class:`DaskExecutor` submits one ``dask.distributed`` task per unit to a cluster: an
  existing scheduler (``scheduler="tcp://host:8786"``), a ``LocalCluster`` of ``workers``
  processes started (and closed) here, or a ``Client`` the caller made (e.g. on a
  dask-jobqueue ``SLURMCluster``). ``dask[distributed]`` is the optional extra
  ``unified-adv[dask]``; nothing in the core imports it.

**What a task carries.** Never a pickled model or data set: the scenario's YAML text, its
file name and the folder its relative paths resolve against (:class:`ScenarioSource`), and
the unit. A worker parses the text (:func:`~unified_adv.scenario.loading.scenario_from_text`),
prepares it (:func:`~unified_adv.run.prepare.prepare`: model, data, clean predictions, targets,
defences) once per worker process — cached in a module-level dict keyed by the scenario's
sha256 and base folder — and runs :func:`~unified_adv.run.execute.execute_unit` with the same
adapter the local runner would build. Before it runs anything it checks that its
preparation is the driver's (model, data, defence fingerprints, every attack's samples and
targets: :func:`prep_digest`); a worker that built something else raises an
:class:`~unified_adv.errors.InputError` naming the difference instead of returning results
that would not match a local run.

**What must be reachable from every worker.**

* ``unified-adv`` and the backend libraries, at the driver's versions (the adapters'
  behaviour is pinned to them).
* Every path the scenario names, under the same absolute path the driver resolves it to
  (relative paths resolve against the scenario file's folder on the driver): ``data.npz``,
  ``data.image_folder``, ``model.torchscript``, ``model.weights``, checkpoints; a
  ``model.factory`` module must be importable on the worker (installed, or on its
  ``PYTHONPATH``). On a cluster that means a shared file system.
* The model cache (``$UNIFIED_ADV_CACHE``, else ``$XDG_CACHE_HOME/unified-adv``, else
  ``~/.cache/unified-adv``): the builtin models the package does not ship as weights
  (an autoencoder at non-default settings, the one-pixel study's line CNNs; see
  :mod:`unified_adv.sources.builtin`) are trained on first use and cached there. The driver prepares the scenario
  before any task is submitted, so a cache directory shared with the workers (same path,
  shared file system; ``LocalCluster`` workers inherit the driver's environment) holds the
  driver's copy and no worker trains anything. A worker that cannot see it trains its own
  copy, which is deterministic for a given seed and thread count; if its weights differ
  from the driver's (another thread count, another CPU), the fingerprint check above
  refuses to run rather than mixing models.

**Worker loss and retries.** A unit that raises an ordinary exception on a worker is caught
there and comes back as an error record (as in the local runner: recorded, not fatal), so
Dask never sees a failed task and nothing is retried: a real error would fail the same way
again. Tasks are submitted with ``retries=0`` for that reason. A worker that *dies* (killed,
out of memory, node lost) is another matter: the scheduler reschedules every task that was
running on it, or whose result it held, on another worker, up to
``distributed.scheduler.allowed-failures`` times (default 3); past that the unit is
recorded as an error (``KilledWorker``) and the run goes on. An ``InputError`` raised on a
worker (a file not reachable there, a mismatching model) ends the run, as locally.

**Threads.** Units seed the global torch / numpy RNGs, so two units must never run at the
same time in one process: run workers with one thread each (``threads_per_worker=1``,
``dask worker --nthreads 1``; what :class:`DaskExecutor` starts). With more threads per
worker the units of one worker process are serialised by a lock (correct, but the extra
threads idle). Dask's nanny starts workers with ``OMP_NUM_THREADS=1``, so torch runs on one
thread per worker: scale out with worker processes, one per core.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unified_adv.adapters import Adapter, adapter_class
from unified_adv.errors import InputError, Problem
from unified_adv.run.execute import Executor, LocalExecutor, execute_unit, run_units
from unified_adv.run.prepare import prepare
from unified_adv.run.prepared import Prepared, UnitOutcome, error_outcome
from unified_adv.run.units import Unit
from unified_adv.scenario.loading import scenario_from_text
from unified_adv.scenario.schema import Scenario, executor_rule

__all__ = [
    "DaskExecutor",
    "Executor",
    "cached_on_worker",
    "LocalExecutor",
    "ScenarioSource",
    "execute_unit",
    "make_executor",
    "prep_digest",
    "run_units",
]

INSTALL_HINT = "the dask executor needs dask.distributed: pip install 'unified-adv[dask]'"


# --------------------------------------------------------------------------- what a task carries


@dataclass(frozen=True)
class ScenarioSource:
    """The scenario as plain data: all a worker needs to rebuild it, plus the digest of the
    driver's preparation it must reproduce."""

    text: str
    file: str
    base_dir: str
    digest: str = ""
    #: The digest's parts (model, data, each defence, each attack's samples and targets), so
    #: a worker can say which one it prepared differently.
    parts: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, scenario: Scenario, prep: Prepared | None = None) -> ScenarioSource:
        base = scenario.base_dir  # what Scenario.resolve_path joins relative paths to
        return cls(
            scenario.text,
            scenario.file,
            str(Path(base).resolve()),
            prep_digest(prep) if prep is not None else "",
            tuple(_digest_parts(prep).items()) if prep is not None else (),
        )

    @property
    def cache_key(self) -> str:
        blob = "\0".join((self.text, self.file, self.base_dir))
        return hashlib.sha256(blob.encode()).hexdigest()

    def scenario(self) -> Scenario:
        if not self.text:
            raise InputError.one(
                self.file,
                "",
                "the scenario has no text (build it with load_scenario or "
                "scenario_from_text) and cannot be sent to workers",
            )
        return scenario_from_text(self.text, file=self.file, base_dir=Path(self.base_dir))


def _digest_parts(prep: Prepared) -> dict[str, str]:
    parts = {"model": prep.model.fingerprint, "data": prep.data.fingerprint}
    for vid, variant in sorted(prep.variants.items()):
        parts[f"defence {vid}"] = str(getattr(variant, "fingerprint", ""))
    for plan in prep.plans:
        h = hashlib.sha256(np.ascontiguousarray(plan.positions, dtype=np.int64).tobytes())
        if plan.targets is not None:
            h.update(np.ascontiguousarray(plan.targets, dtype=np.int64).tobytes())
        parts[f"attacks[{plan.index}] samples and targets"] = h.hexdigest()
    return parts


def prep_digest(prep: Prepared) -> str:
    """One hash of what a unit's result depends on besides the unit itself: model, data,
    defences, and every attack's samples and targets (which follow from the clean logits)."""
    parts = _digest_parts(prep)
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()


# --------------------------------------------------------------------------- the worker side

#: Per worker process: scenario cache key -> its preparation and that preparation's digest,
#: and the adapters built on it.
_PREPARED: dict[str, tuple[Prepared, str]] = {}
_ADAPTERS: dict[tuple[str, str, str], Adapter] = {}
_MAX_PREPARED = 4
#: Units seed global RNGs: one unit at a time per process, whatever the worker's threads.
_LOCK = threading.Lock()


def prepared_on_worker(source: ScenarioSource) -> Prepared:
    """The scenario prepared once in this process (rebuilt from its text, never unpickled),
    checked against the driver's preparation on every task."""
    key = source.cache_key
    if key not in _PREPARED:
        prep = prepare(source.scenario())
        while len(_PREPARED) >= _MAX_PREPARED:
            old = next(iter(_PREPARED))
            del _PREPARED[old]
            for k in [k for k in _ADAPTERS if k[0] == old]:
                del _ADAPTERS[k]
        _PREPARED[key] = (prep, prep_digest(prep))
    prep, digest = _PREPARED[key]
    if source.digest and digest != source.digest:
        ours, theirs = _digest_parts(prep), dict(source.parts)
        differ = [k for k in ours if ours.get(k) != theirs.get(k)] if theirs else []
        raise InputError.one(
            source.file,
            "model",
            f"worker {_where()} prepared the scenario differently from the driver "
            f"({', '.join(differ) or 'model, data or targets'} differ): share the model "
            "cache (UNIFIED_ADV_CACHE) and every file the scenario names with the workers, "
            "at the same paths, and install the same versions there",
        )
    return prep


_WORKER_CACHE: dict[Any, Any] = {}


def cached_on_worker(key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` once per process for ``key`` (hashable plain data), then the same object:
    for tasks that rebuild a model or a data set from its description (task functions
    defined in a script are pickled by value, so their own globals do not persist)."""
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = build()
    return _WORKER_CACHE[key]


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_unit_task(source: ScenarioSource, unit: Unit) -> dict[str, Any]:
    """The Dask task: one unit, from plain data to plain data.

    Returns ``{"status": "ok", "arrays": ..., "meta": ...}``, ``{"status": "error", "meta":
    ...}`` for a unit that raised, or ``{"status": "input_error", "problems": [...]}`` (the
    driver raises it: an InputError does not survive pickling as itself)."""
    with _LOCK:
        try:
            prep = prepared_on_worker(source)
            which = (source.cache_key, unit.backend, unit.defence)
            try:
                if which not in _ADAPTERS:
                    _ADAPTERS[which] = adapter_class(unit.backend)(
                        model=prep.wrapper_for(unit.defence)
                    )
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001
                out = error_outcome(unit, exc, traceback.format_exc(limit=8))
            else:
                out = execute_unit(prep, unit, _ADAPTERS[which])
        except InputError as exc:
            return {
                "status": "input_error",
                "problems": [(p.file, p.path, p.message) for p in exc.problems],
            }
        except Exception as exc:  # noqa: BLE001 - preparing failed: this unit's error
            out = error_outcome(unit, exc, traceback.format_exc(limit=8))
    out.meta["worker"] = _where()
    if out.arrays is None:
        return {"status": "error", "meta": out.meta}
    return {"status": "ok", "arrays": out.arrays, "meta": out.meta}


# --------------------------------------------------------------------------- dask


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return distributed


#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (a fixed glibc trim
#: threshold, which also turns off glibc's adaptive mmap threshold): torch then maps and
#: unmaps its large temporaries on every call. Measured on the one-pixel sweep: 1.5x slower
#: per worker (11.8 s vs 7.9 s). Our LocalCluster leaves glibc's default; on a cluster set
#: ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`` in the Dask config.
_NO_TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _local_cluster(d: Any, kw: dict[str, Any]) -> Any:
    """A LocalCluster without the fixed malloc trim threshold; the nannies, which run in this
    process, write their workers' variables (OMP_NUM_THREADS=1, ...) into os.environ: put
    this process's environment back as it was once they have started."""
    import dask

    saved = dict(os.environ)
    with dask.config.set(_NO_TRIM):
        cluster = d.LocalCluster(**kw)
    _restore_environ(saved)
    return cluster


def _restore_environ(saved: dict[str, str]) -> None:
    """Put os.environ back to ``saved``. A nanny writes its workers' variables into this
    process's environment again each time it restarts a worker that died: left there,
    OMP_NUM_THREADS=1 put every process started later from this one on one torch thread
    (how a CLI run started by the test suite scored differently from the suite's own)."""
    for k in set(os.environ) - set(saved):
        del os.environ[k]
    os.environ.update(saved)


class DaskExecutor:
    """Units as ``dask.distributed`` tasks, one task per unit.

    Exactly one of: ``scheduler`` (address of a running scheduler, e.g.
    ``"tcp://host:8786"``), ``workers`` (start a ``LocalCluster`` of that many single-thread
    worker processes here, closed by :meth:`close`), or ``client`` (a
    ``distributed.Client`` the caller owns and closes). With none of them, the current
    default client if there is one.

    The connection is opened on first use and kept for the executor's lifetime (use it as a
    context manager, or call :meth:`close`): a run and its analyses share one cluster.
    """

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        *,
        client: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        key_prefix: str = "unified-adv",
    ) -> None:
        if sum(x is not None for x in (scheduler, workers, client)) > 1:
            raise ValueError("give one of scheduler, workers or client")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        _distributed()  # fail now, with the install hint, not at the first unit
        self.scheduler = scheduler
        self.workers = workers
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.key_prefix = key_prefix
        self._client = client
        self._own_client = False
        self._cluster: Any = None
        self._environ: dict[str, str] | None = None

    # ------------------------------------------------------------- connection
    @property
    def client(self) -> Any:
        if self._client is None:
            d = _distributed()
            if self.workers is not None:
                kw: dict[str, Any] = {
                    "n_workers": self.workers,
                    "threads_per_worker": 1,
                    "processes": True,
                    "dashboard_address": ":0",  # any free port: never clash with 8787
                    **self.cluster_kwargs,
                }
                self._environ = dict(os.environ)
                self._cluster = _local_cluster(d, kw)
                self._client = d.Client(self._cluster)
            elif self.scheduler is not None:
                self._client = d.Client(self.scheduler)
            else:
                try:
                    self._client = d.default_client()
                    return self._client
                except ValueError:
                    raise ValueError(
                        "DaskExecutor needs a scheduler address, a number of workers or a client"
                    ) from None
            self._own_client = True
        return self._client

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._environ is not None:
            _restore_environ(self._environ)
        self._client = self._cluster = None
        self._own_client = False
        self._environ = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Where the units ran: for the summary's provenance."""
        info = self.client.scheduler_info(n_workers=-1)
        workers = info.get("workers", {})
        return {
            "executor": "dask",
            "scheduler": info.get("address"),
            "workers": len(workers),
            "threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
        }

    # ------------------------------------------------------------- running
    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str = "task"
    ) -> Iterator[tuple[int, Any]]:
        """(index, fn(item)) as each task finishes; one task per item, no retries on
        exceptions (they propagate), rescheduling when a worker dies. For plain-data tasks
        such as benchmark or analysis shards."""
        d = _distributed()
        client = self.client
        token = uuid.uuid4().hex[:8]
        futures = {
            client.submit(fn, item, key=f"{self.key_prefix}-{name}-{i}-{token}", retries=0): i
            for i, item in enumerate(items)
        }
        try:
            for fut in d.as_completed(futures):
                i = futures[fut]
                yield i, fut.result()
                fut.release()
        finally:
            client.cancel(list(futures))

    def map_units(self, prep: Prepared, units: Sequence[Unit]) -> Iterator[UnitOutcome]:
        if not units:
            return
        if not prep.scenario.text:
            raise InputError.one(
                prep.scenario.file,
                "",
                "the dask executor sends the scenario's YAML text to the workers: load it with "
                "load_scenario or scenario_from_text",
            )
        d = _distributed()
        client = self.client
        # A few kB of YAML per task. Not scattered: scattered data dies with the workers
        # holding it, while a task's own arguments survive any worker's loss.
        source = ScenarioSource.of(prep.scenario, prep)
        token = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                run_unit_task,
                source,
                unit,
                key=f"{self.key_prefix}-{unit.name}-{token}",
                retries=0,
            ): unit
            for unit in units
        }
        try:
            for fut in d.as_completed(futures):
                unit = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker, a task not unpickled
                    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    yield error_outcome(unit, exc, tb)
                    continue
                finally:
                    fut.release()
                if res["status"] == "input_error":
                    raise InputError([Problem(*p) for p in res["problems"]])
                if res["status"] == "ok":
                    yield UnitOutcome(unit, res["arrays"], res["meta"])
                else:
                    yield UnitOutcome(unit, None, res["meta"])
        finally:
            client.cancel(list(futures))


def make_executor(
    kind: str = "local", *, scheduler: str | None = None, workers: int | None = None
) -> LocalExecutor | DaskExecutor:
    """The executor the CLI / scenario ask for (``execution.executor`` and friends)."""
    if kind not in ("local", "dask"):
        raise ValueError(f"unknown executor {kind!r}: local or dask")
    problem = executor_rule(kind, scheduler, workers)
    if problem == "dask-options-without-dask":
        raise ValueError("scheduler and workers need the dask executor (--executor dask)")
    if problem == "dask-without-cluster":
        raise ValueError("the dask executor needs either a scheduler address or a number of workers")
    if kind == "local":
        return LocalExecutor()
    return DaskExecutor(scheduler=scheduler, workers=workers)
