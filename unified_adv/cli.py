"""The ``unified-adv`` command: run, validate, list.

Exit codes (README, "Command line"):

* 0 every unit finished;
* 1 the run finished but some units failed (listed in the report and summary.json),
  or an internal error;
* 2 invalid input: one line per problem on stderr, no traceback, nothing computed;
* 4 (``compare --fail-on-regression``, ``check``) a robustness gate failed: one line each;
* 3 ``--strict`` and a unit failed: one line naming the unit and the exception; the
  units finished before it are kept for ``--resume``, no report is written;
* 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): finished units are kept;
  rerun with ``--resume``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from unified_adv import __version__, api
from unified_adv.adapters import adapter_class, backend_names
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.compare import EXIT_GATE
from unified_adv.compare.diff import compare_runs, comparison_lines
from unified_adv.compare.gate import Requirement, check_run, write_junit
from unified_adv.compare.html import write_comparison
from unified_adv.compare.runs import load_run
from unified_adv.errors import EXIT_FAILURE, EXIT_INPUT, InputError
from unified_adv.run.estimate import estimate_run
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare
from unified_adv.run.prepared import UnitFailed
from unified_adv.scenario.loading import load_scenario

EXIT_STRICT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluate an image classifier's adversarial robustness across ART, Foolbox and torchattacks.",
)


def _show_version(value: bool) -> None:
    if value:
        print(f"unified-adv {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Evaluate an image classifier's adversarial robustness across ART, Foolbox and torchattacks."""


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so a run stops as cleanly as on Ctrl-C."""


@contextmanager
def _sigterm_stops_the_run() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Options of `run` declared apart, to keep the command short.
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where units run: local (this process) or dask (needs --scheduler or "
        # \\[ : a literal bracket for rich, which would read [dask] as markup and drop it.
        "--workers; pip install 'unified-adv\\[dask]'). Default: the scenario's execution.",
    ),
]

MlflowOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        # \\[ : a literal bracket for rich (see --executor).
        help="Log the finished run to MLflow at this tracking URI (file:///path/mlruns "
        "or http://HOST:5000; pip install 'unified-adv\\[mlflow]'). Default: the "
        "scenario's tracking.mlflow.uri.",
    ),
]


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[
        str | None, typer.Option("--out", help="Output folder (default reports/<name>/).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Reuse units finished by an earlier run.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Stop at the first unit that fails (exit code 3); the units finished "
            "before it are kept for --resume.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into --out even if it is a non-empty folder that is not an earlier run.",
        ),
    ] = False,
    executor: ExecutorOption = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Address of a running Dask scheduler, tcp://HOST:8786."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Start a local Dask cluster of N worker processes."),
    ] = None,
    mlflow_uri: MlflowOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Warnings and errors only: no estimate, no progress."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug messages too (log level DEBUG).")
    ] = False,
) -> None:
    """Run a scenario; write index.html, summary.json and the per-sample table.

    Progress goes to stderr: bars on a terminal, plain lines with the time left otherwise
    (CI logs). Log level: --quiet, --verbose, else $UNIFIED_ADV_LOG_LEVEL, else INFO."""
    result = _run_stopping_cleanly(
        scenario,
        out,
        resume=resume,
        strict=strict,
        force=force,
        executor=executor,
        scheduler=scheduler,
        workers=workers,
        mlflow_uri=mlflow_uri,
        log_level="WARNING" if quiet else "DEBUG" if verbose else None,
    )
    ok = [a for a in result.summary["attacks"] if a["status"] == "ok"]
    print(f"{len(ok)} of {len(result.summary['attacks'])} attack × backend results complete.")
    print(f"Report:   {result.report}")
    print(f"Summary:  {result.out_dir / 'summary.json'}")
    print(f"Samples:  {result.out_dir / 'samples.parquet'} (and samples.csv)")
    if result.failed:
        print("Some units failed; see the report's 'Failed units' section.", file=sys.stderr)
        raise typer.Exit(EXIT_FAILURE)


def _run_stopping_cleanly(scenario: Path, out: str | None, **options: Any) -> api.RunResult:
    """``api.run``; a --strict failure, Ctrl-C or SIGTERM ends it with one line saying where
    the finished units are kept, and its exit code."""
    units: Path | None = None
    try:
        with _sigterm_stops_the_run():
            loaded = load_scenario(scenario)
            out_dir = out if out is not None else api.default_out_dir(loaded)
            units = Path(out_dir) / "units" if out_dir else None
            return api.run(loaded, out_dir, **options)
    except UnitFailed as exc:
        print(
            f"{exc}; stopped (--strict), no report written; finished units kept in "
            f"{units} (rerun with --resume to continue)",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_STRICT) from None
    except (KeyboardInterrupt, _Terminated) as exc:
        kept = f"finished units kept in {units}; " if units is not None else ""
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
        print(f"{what}: {kept}rerun with --resume to continue", file=sys.stderr)
        code = EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
        raise typer.Exit(code) from None


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
) -> None:
    """Check a scenario, its model and its data, without running any attack."""
    loaded = load_scenario(scenario)
    prep = prepare(loaded)
    units = plan_units(prep)
    guess = estimate_run(prep, units)
    print(
        f"{scenario}: valid — {len(loaded.attacks)} attack(s), {len(units)} unit(s), "
        f"{len(prep.data.y)} samples, clean accuracy {prep.correct.mean():.1%}; "
        f"expected time {guess.time_text()}"
    )


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run folder (A).")],
    run_b: Annotated[Path, typer.Argument(help="Candidate run folder (B).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for index.html and comparison.json (default reports/compare-<A>-vs-<B>/).",
        ),
    ] = None,
    fail_on_regression: Annotated[
        float | None,
        typer.Option(
            "--fail-on-regression",
            min=0,
            help="Exit 4 when a worst-case robust accuracy drops by more than POINTS "
            "percentage points (and significantly, when paired).",
            metavar="POINTS",
        ),
    ] = None,
) -> None:
    """Compare two runs row by row (paired per sample on the same data); write a report."""
    a, b = load_run(run_a), load_run(run_b)
    result = compare_runs(a, b, fail_on_regression)
    folder = out if out is not None else Path("reports") / f"compare-{a.name}-vs-{b.name}"
    report = write_comparison(folder, result)
    for line in comparison_lines(result):
        print(line)
    print(f"Report:      {report}")
    print(f"Comparison:  {folder / 'comparison.json'}")
    if result["regressions"]:
        for key in result["regressions"]:
            print(f"regression: {key}", file=sys.stderr)
        raise typer.Exit(EXIT_GATE)


@app.command()
def check(
    run_folder: Annotated[Path, typer.Argument(metavar="RUN", help="Run folder.")],
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="ATTACK@EPS>=VALUE on the worst-case robust accuracy (ATTACK: attack id or "
            "name; EPS e.g. 8/255; VALUE e.g. 0.40 or 40%), or ATTACK@EPS>=lo:VALUE on the "
            "lower bound of its 95 % interval. Repeatable.",
        ),
    ] = None,
    no_divergent: Annotated[
        bool, typer.Option("--no-divergent", help="Fail on any divergent cross-check pair.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write the checks as JUnit XML to FILE.")
    ] = None,
) -> None:
    """Gate a run in CI: exit 4 (one line per failed check) unless every requirement holds."""
    requirements = [Requirement.parse(text) for text in require or []]
    if not requirements and not no_divergent:
        raise InputError.one("", "--require", "nothing to check: give --require or --no-divergent")
    run = load_run(run_folder)
    outcomes = check_run(run, requirements, no_divergent)
    if junit is not None:
        write_junit(junit, run, outcomes)
    failed = [o for o in outcomes if o.failure]
    for o in failed:
        print(o.failure, file=sys.stderr)
    print(f"{run.name}: {len(outcomes) - len(failed)} of {len(outcomes)} checks passed")
    if failed:
        raise typer.Exit(EXIT_GATE)


@app.command()
def schema() -> None:
    """Print the scenario's JSON schema (for editor completion; see the README)."""
    from unified_adv.scenario.json_schema import schema_text

    sys.stdout.write(schema_text())


@app.command("list")
def list_capabilities() -> None:
    """Print which backend runs which attack, with which norms and targeting modes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="unified-adv capabilities (declared by the adapters)")
    for col in (
        "attack",
        "backend",
        "library class",
        "norms",
        "targets",
        "random starts",
        "library version",
    ):
        table.add_column(col, no_wrap=True)
    for attack in ATTACKS:
        for name in backend_names():
            cls = adapter_class(name)
            cap = cls.capabilities.get(attack)
            if cap is None:
                if name != "unified-adv":  # project code: listed only where it has the attack
                    table.add_row(attack, name, "—", "", "", "", "")
                continue
            classes = ", ".join(sorted(set(cap.classes.values())))
            if "random_starts" not in ATTACKS[attack].param_names:
                starts = "n/a"
            elif cap.max_random_starts is None:
                starts = "any"
            else:
                starts = f"0..{cap.max_random_starts}"
            table.add_row(
                attack,
                name,
                classes,
                ", ".join(cap.norms),
                ", ".join(cap.targets),
                starts,
                cls.version(),
            )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: never fold the table
    console.print(table)


def main() -> None:
    """Entry point: input errors become one line each and exit code 2."""
    try:
        app()  # standalone: usage errors print click's message and exit 2
    except InputError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        sys.exit(EXIT_INPUT)
    except KeyboardInterrupt:  # outside `run` (which says more), e.g. during `validate`
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
