"""The Python API, mirroring the CLI: ``load_scenario(path)`` then ``run(scenario)``.

:func:`run` is the pipeline, in order: scenario -> plan -> execute -> evaluate -> report.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from unified_adv.analyses.driver import run_analyses
from unified_adv.errors import InputError
from unified_adv.evaluate.summary import Outcomes, build_summary, strict_json, versions
from unified_adv.evaluate.tables import write_tables
from unified_adv.files import atomic_write_bytes, atomic_write_text
from unified_adv.report import render
from unified_adv.report.context import report_context
from unified_adv.run.estimate import estimate_run
from unified_adv.run.execute import run_units
from unified_adv.run.executors import make_executor
from unified_adv.run.outdir import check_out_dir, make_out_dir, storage_errors
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare
from unified_adv.run.prepared import Prepared, Unit
from unified_adv.run.progress import LOG, configure_logging, progress_mode, run_progress
from unified_adv.scenario.loading import load_scenario, scenario_from_text
from unified_adv.scenario.schema import Scenario
from unified_adv.sources.memory import infer_input_range
from unified_adv.tracking.mlflow import log_run

__all__ = ["RunResult", "as_scenario", "default_out_dir", "run", "strict_json", "versions"]


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    samples: pd.DataFrame

    @property
    def report(self) -> Path:
        return self.out_dir / "index.html"

    @property
    def failed(self) -> bool:
        return any(u["status"] != "ok" for u in self.summary["units"])


def _executor(
    scenario: Scenario,
    given: Any,
    scheduler: str | None,
    workers: int | None,
    *,
    in_memory: bool = False,
) -> tuple[Any, bool]:
    """The executor to use and whether this run owns (and closes) it. Arguments win over the
    scenario's ``execution`` fields; a scheduler or worker count alone means dask. In-memory
    objects (the notebook API) run locally only."""
    e = scenario.execution
    kind: str = (given or "dask") if given is None or isinstance(given, str) else given.name
    if given is None and scheduler is None and workers is None:
        kind, scheduler, workers = e.executor, e.scheduler, e.workers
    if in_memory and kind != "local":
        raise InputError.one(
            scenario.file,
            "execution.executor",
            "a model or data given in memory (model=, data=) runs with the local executor "
            "only: a Dask worker rebuilds the scenario from its text",
        )
    if given is not None and not isinstance(given, str):
        return given, False
    try:
        return make_executor(kind, scheduler=scheduler, workers=workers), True
    except (ValueError, ImportError) as exc:
        raise InputError.one(scenario.file, "execution", str(exc).splitlines()[0]) from None


def default_out_dir(scenario: Scenario) -> Path:
    return Path("reports") / scenario.name


def as_scenario(
    scenario: Scenario | str | Path | Mapping[str, Any], *, model: Any = None, data: Any = None
) -> Scenario:
    """A scenario from a :class:`Scenario`, a path, YAML text (a string holding a newline or
    starting with ``{``) or a dict. With in-memory ``model``/``data`` (the notebook API)
    those sections name no source, and a missing ``model.input_range`` is read off ``data``
    ([0, 1] or [0, 255]; :func:`~unified_adv.sources.memory.infer_input_range`)."""
    in_memory = frozenset(k for k, v in (("model", model), ("data", data)) if v is not None)
    file = scenario.file if isinstance(scenario, Scenario) else "<scenario>"
    found = infer_input_range(data, file) if data is not None else None
    defaults = {"input_range": list(found)} if found is not None else None
    options: dict[str, Any] = {"in_memory": in_memory, "model_defaults": defaults}
    if isinstance(scenario, Scenario):
        if not in_memory or not scenario.text:
            return scenario
        return scenario_from_text(scenario.text, scenario.file, scenario.base_dir, **options)
    if isinstance(scenario, Mapping):
        text = json.dumps(dict(scenario), default=_plain)  # JSON is YAML; tuples become lists
        return scenario_from_text(text, "<scenario>", Path.cwd(), **options)
    if isinstance(scenario, str) and ("\n" in scenario or scenario.lstrip().startswith("{")):
        return scenario_from_text(scenario, "<scenario>", Path.cwd(), **options)
    if isinstance(scenario, str | Path):
        return load_scenario(scenario, **options)
    raise TypeError(
        f"scenario: expected a Scenario, a path, YAML text or a dict, got {type(scenario).__name__}"
    )


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in a scenario dict, as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"scenario: {type(value).__name__} is not a YAML value")


def run(
    scenario: Scenario | str | Path | Mapping[str, Any],
    out: str | Path | None = None,
    *,
    model: Any = None,
    data: Any = None,
    resume: bool = False,
    strict: bool = False,
    progress: bool | str | None = None,
    log_level: str | int | None = None,
    executor: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    mlflow_uri: str | None = None,
) -> RunResult:
    """Run every unit of ``scenario`` and write the report, summary and per-sample table.

    ``scenario``: a :class:`Scenario`, a path, YAML text or a dict (:func:`as_scenario`).
    ``model``: a ``torch.nn.Module`` returning logits, instead of the scenario's model source
    (the scenario's ``model:`` section then gives only ``input_range``, ``mean``/``std``,
    ``device``, or nothing). ``data``: ``(x, y)``, ``(x, y, class_names)`` or a mapping, of
    numpy arrays or torch tensors, ``x`` (N, C, H, W) in the model's input range (uint8 is
    scaled from [0, 255]). Both run with the local executor only (a Dask worker gets the
    scenario's text, never a pickled model).

    ``resume``: reuse the units an earlier run of the same scenario finished in ``out``.
    ``strict``: the first unit that raises stops the run with
    :class:`unified_adv.run.prepared.UnitFailed`, before any table, summary or report is
    written; the units finished so far stay in ``out/units`` for a later ``resume``.
    Without it a failing unit is recorded (status ``error`` in ``summary.json`` and the
    report) and the other units go on.
    ``progress``: on stderr: bars on a terminal or in a notebook, plain lines with the time
    left otherwise (a CI log); ``False``: none; also ``"bar"`` or ``"lines"``
    (:mod:`unified_adv.run.progress`). Before a run expected to take a minute or more, its
    units and expected time are logged (:mod:`unified_adv.run.estimate`).
    ``log_level``: of the ``unified_adv`` logger (default ``$UNIFIED_ADV_LOG_LEVEL``, else
    INFO); WARNING and above also turn the default progress off.
    ``executor``: where the units run: ``"local"`` (in this process), ``"dask"`` (with
    ``scheduler`` or ``workers``), or an executor object (e.g.
    ``unified_adv.run.executors.DaskExecutor(client=...)``), which is left open. Default: the
    scenario's ``execution`` fields. Results are identical whichever runs them.
    ``force``: write into ``out`` even when it is a non-empty folder that no earlier run
    made (without it that is refused, as is an unwritable or full disk, before any work).
    ``mlflow_uri``: log the finished run to MLflow there (wins over the scenario's
    ``tracking.mlflow.uri``); a failure to log is one warning line, the outputs stay.
    """
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    _log_level(log_level)
    scenario = as_scenario(scenario, model=model, data=data)
    out_dir = check_out_dir(out if out is not None else default_out_dir(scenario), force=force)
    prep = prepare(scenario, model=model, data=data)
    units = plan_units(prep)
    in_memory = model is not None or data is not None
    ex, owned = _executor(scenario, executor, scheduler, workers, in_memory=in_memory)
    _announce(prep, units)
    make_out_dir(out_dir, scenario.name)
    with storage_errors(out_dir):
        try:
            with run_progress(units, progress_mode(progress)) as shown:
                outcomes = run_units(
                    prep, units, out_dir / "units", executor=ex, resume=resume, strict=strict,
                    progress=shown.unit_done,
                )  # fmt: skip
                # The one-pixel study's sweeps go through the executor too; the rest runs here.
                analysis = run_analyses(prep, out_dir / "units", resume=resume, executor=ex)
            where = ex.describe()
        finally:
            if owned:
                ex.close()
        result = _evaluate_and_report(
            prep, outcomes, analysis, where, out_dir, started, time.perf_counter() - t0
        )
    _track(scenario, result, mlflow_uri)
    return result


def _track(scenario: Scenario, result: RunResult, uri: str | None) -> None:
    """Log the finished run to MLflow when the scenario or the caller asks for it."""
    spec = scenario.tracking.mlflow
    uri = uri or (spec.uri if spec is not None else None)
    if uri:
        experiment = spec.experiment if spec is not None else "unified-adv"
        log_run(result.out_dir, result.summary, uri, experiment)


def _log_level(level: str | int | None) -> None:
    try:
        configure_logging(level)
    except ValueError as exc:
        raise InputError.one("", "log level", str(exc)) from None


def _announce(prep: Prepared, units: list[Unit]) -> None:
    """The run's units and expected time, before it starts (INFO for a long run)."""
    if not LOG.isEnabledFor(logging.INFO):
        return
    guess = estimate_run(prep, units)
    LOG.log(logging.INFO if guess.long else logging.DEBUG, "%s", guess.line())


def _evaluate_and_report(
    prep: Prepared,
    outcomes: list[Any],
    analysis: dict[str, Any],
    executor: dict[str, Any],
    out_dir: Path,
    started: dt.datetime,
    duration: float,
) -> RunResult:
    """Evaluate the outcomes, then write the tables, the summary and the report."""
    split = Outcomes.split(prep, outcomes)
    samples = split.samples(prep)
    table = io.BytesIO()
    samples.to_parquet(table, index=False)
    atomic_write_bytes(out_dir / "samples.parquet", table.getvalue())
    atomic_write_text(out_dir / "samples.csv", samples.to_csv(index=False))
    summary = build_summary(prep, samples, split, analysis, executor, started, duration)
    atomic_write_text(out_dir / "summary.json", strict_json(summary))
    write_tables(out_dir, summary)
    main = samples[samples["evaluation"] == "undefended"]
    render(out_dir, report_context(prep, summary, split, main, analysis))
    return RunResult(out_dir, summary, samples)
