"""The ``unified-adv`` command: run, validate, list.

Exit codes: 0 success; 1 the run finished but some units failed, or an
internal error; 2 invalid input (one line per problem on stderr, no traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import EXIT_FAILURE, EXIT_INPUT, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluate an image classifier's adversarial robustness across ART, Foolbox and torchattacks.",
)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default reports/<name>/).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Reuse units finished by an earlier run.")
    ] = False,
) -> None:
    """Run a scenario; write index.html, summary.json and the per-sample table."""
    from . import api
    from .scenario import load_scenario

    loaded = load_scenario(scenario)
    result = api.run(loaded, out, resume=resume)
    ok = [a for a in result.summary["attacks"] if a["status"] == "ok"]
    print(f"{len(ok)} of {len(result.summary['attacks'])} attack × backend results complete.")
    print(f"Report:   {result.report}")
    print(f"Summary:  {result.out_dir / 'summary.json'}")
    print(f"Samples:  {result.out_dir / 'samples.parquet'} (and samples.csv)")
    if result.failed:
        print("Some units failed; see the report's 'Failed units' section.", file=sys.stderr)
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
) -> None:
    """Check a scenario, its model and its data, without running any attack."""
    from .runner import plan_units, prepare
    from .scenario import load_scenario

    loaded = load_scenario(scenario)
    prep = prepare(loaded)
    units = plan_units(prep)
    print(
        f"{scenario}: valid — {len(loaded.attacks)} attack(s), {len(units)} unit(s), "
        f"{len(prep.data.y)} samples, clean accuracy {prep.correct.mean():.1%}"
    )


@app.command("list")
def list_capabilities() -> None:
    """Print which backend runs which attack, with which norms and targeting modes."""
    from rich.console import Console
    from rich.table import Table

    from .adapters import adapter_class, backend_names
    from .attacks import ATTACKS

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
            if "random_starts" not in ATTACKS[attack].params:
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
    except KeyboardInterrupt:
        print("interrupted; finished units are kept (use --resume)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
