"""Golden files: the results of the quickstart and of each paper scenario, at reduced sizes.

Stored before the package was restructured (issue 17), so that ``tests/test_golden.py`` can
show the restructured code gives the same per-sample table and ``summary.json``. Timing fields,
the run's provenance and the scenario file's path are left out: they differ on every run.

    python tests/golden/golden.py            # rewrite every golden file from the current code
    python tests/golden/golden.py lim        # just one

Regenerate only when a change to the numbers is intended, and say why in the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted(p.stem for p in (HERE / "scenarios").glob("*.yaml"))
#: Fields that change from run to run whatever the code does.
VOLATILE_KEYS = {"provenance", "started", "finished"}


def volatile(key: str) -> bool:
    """A wall time or a speed (``time_s``, ``attack_time_s``, ``seconds_per_model``,
    ``images_per_second`` ...) or the run's provenance."""
    return key in VOLATILE_KEYS or key.endswith("_s") or "second" in key
VOLATILE_COLUMNS = ["time_s"]
#: Float comparison: a restructure must give the same numbers; this only absorbs the last
#: float32 bits that another CPU kind may round differently (README, "What is not promised").
RTOL, ATOL = 1e-5, 1e-7


def run(name: str, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run one reduced scenario into ``out``; return its normalised table and summary."""
    import unified_adv

    scenario = unified_adv.load_scenario(HERE / "scenarios" / f"{name}.yaml")
    unified_adv.run(scenario, out, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "samples.csv") if (out / "samples.csv").exists() else pd.DataFrame()
    return normalise_table(table), normalise_summary(summary)


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in VOLATILE_COLUMNS if c in table.columns])


def normalise_summary(doc: Any) -> Any:
    """Without timings, provenance and the scenario's path, and with the shipped weights'
    install location cut to the file name: those differ from machine to machine."""
    if isinstance(doc, dict):
        return {
            k: Path(v).name if k == "weights" and isinstance(v, str) else normalise_summary(v)
            for k, v in doc.items()
            if not volatile(k) and not (k == "file" and isinstance(v, str))
        }
    if isinstance(doc, list):
        return [normalise_summary(v) for v in doc]
    return doc


def load(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    folder = HERE / name
    table = pd.read_csv(folder / "samples.csv") if (folder / "samples.csv").exists() else pd.DataFrame()
    return table, json.loads((folder / "summary.json").read_text())


def store(name: str, table: pd.DataFrame, summary: dict[str, Any]) -> None:
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    if len(table.columns):
        table.to_csv(folder / "samples.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every place where ``actual`` differs from ``expected`` (floats within RTOL/ATOL)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}.{k}: only in golden" for k in expected.keys() - actual.keys()]
        out += [f"{path}.{k}: not in golden" for k in actual.keys() - expected.keys()]
        for k in sorted(expected.keys() & actual.keys()):
            out += differences(expected[k], actual[k], f"{path}.{k}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items in golden, {len(actual)} now"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        same = math.isclose(expected, actual, rel_tol=RTOL, abs_tol=ATOL) or (
            math.isnan(expected) and math.isnan(actual)
        )
        return [] if same else [f"{path}: golden {expected!r}, now {actual!r}"]
    return [] if expected == actual else [f"{path}: golden {expected!r}, now {actual!r}"]


def table_differences(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    if list(expected.columns) != list(actual.columns) or len(expected) != len(actual):
        return [f"table shape/columns: golden {expected.shape} {list(expected.columns)}, "
                f"now {actual.shape} {list(actual.columns)}"]
    out = []
    for col in expected.columns:
        e, a = expected[col], actual[col]
        if pd.api.types.is_float_dtype(e) and pd.api.types.is_numeric_dtype(a):
            bad = ~(((e - a).abs() <= ATOL + RTOL * a.abs()) | (e.isna() & a.isna()))
        else:
            bad = ~((e == a) | (e.isna() & a.isna()))
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            out.append(f"column {col}: {int(bad.sum())} rows differ, first row {i}: "
                       f"golden {e.iloc[i]!r}, now {a.iloc[i]!r}")
    return out


def main(names: list[str]) -> None:
    import tempfile

    for name in names or SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            table, summary = run(name, Path(tmp) / name)
        store(name, table, summary)
        print(f"{name}: {len(table)} rows")


if __name__ == "__main__":
    main(sys.argv[1:])
