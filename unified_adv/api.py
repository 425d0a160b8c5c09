"""The Python API, mirroring the CLI: ``load_scenario(path)`` then ``run(scenario)``.

:func:`run` is the pipeline, in order: scenario -> plan -> execute -> evaluate -> report.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from unified_adv.analyses.driver import run_analyses
from unified_adv.errors import InputError
from unified_adv.evaluate.summary import Outcomes, build_summary, strict_json, versions
from unified_adv.evaluate.tables import write_tables
from unified_adv.files import atomic_write_bytes, atomic_write_text
from unified_adv.report import render
from unified_adv.report.context import report_context
from unified_adv.run.execute import run_units
from unified_adv.run.executors import make_executor
from unified_adv.run.outdir import check_out_dir, make_out_dir, storage_errors
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare
from unified_adv.run.prepared import Prepared, Unit
from unified_adv.scenario.schema import Scenario
from unified_adv.tracking.mlflow import log_run

__all__ = ["RunResult", "default_out_dir", "run", "strict_json", "versions"]


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
    scenario: Scenario, given: Any, scheduler: str | None, workers: int | None
) -> tuple[Any, bool]:
    """The executor to use and whether this run owns (and closes) it. Arguments win over the
    scenario's ``execution`` fields; a scheduler or worker count alone means dask."""
    if given is not None and not isinstance(given, str):
        return given, False
    e = scenario.execution
    kind: str = given or "dask"
    if given is None and scheduler is None and workers is None:
        kind, scheduler, workers = e.executor, e.scheduler, e.workers
    try:
        return make_executor(kind, scheduler=scheduler, workers=workers), True
    except (ValueError, ImportError) as exc:
        raise InputError.one(scenario.file, "execution", str(exc).splitlines()[0]) from None


def default_out_dir(scenario: Scenario) -> Path:
    return Path("reports") / scenario.name


def run(
    scenario: Scenario,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    strict: bool = False,
    progress: bool | None = None,
    executor: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    mlflow_uri: str | None = None,
) -> RunResult:
    """Run every unit of ``scenario`` and write the report, summary and per-sample table.

    ``resume``: reuse the units an earlier run of the same scenario finished in ``out``.
    ``strict``: the first unit that raises stops the run with
    :class:`unified_adv.run.prepared.UnitFailed`, before any table, summary or report is
    written; the units finished so far stay in ``out/units`` for a later ``resume``.
    Without it a failing unit is recorded (status ``error`` in ``summary.json`` and the
    report) and the other units go on.
    ``progress``: a progress bar on stderr; default on when stderr is a terminal.
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
    out_dir = check_out_dir(out if out is not None else default_out_dir(scenario), force=force)
    prep = prepare(scenario)
    units = plan_units(prep)
    ex, owned = _executor(scenario, executor, scheduler, workers)
    make_out_dir(out_dir, scenario.name)
    with storage_errors(out_dir):
        try:
            with _progress_bar(len(units), progress) as tick:
                outcomes = run_units(
                    prep,
                    units,
                    out_dir / "units",
                    executor=ex,
                    resume=resume,
                    strict=strict,
                    progress=tick,
                )
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


@contextmanager
def _progress_bar(total: int, show: bool | None) -> Iterator[Callable[[Unit], None]]:
    """A progress bar over the units on stderr (default: when stderr is a terminal)."""
    show = sys.stderr.isatty() if show is None else show
    with tqdm(total=total, desc="units", unit="unit", disable=not show, file=sys.stderr) as bar:

        def tick(unit: Unit) -> None:
            bar.set_postfix_str(unit.name, refresh=False)
            bar.update(1)

        yield tick


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
