"""The restructured code reproduces the results stored before the restructure (issue 17).

``tests/golden/`` holds, for the quickstart and each paper scenario at reduced size, the
per-sample table and ``summary.json`` (timings and provenance left out) written by the code
before the package was split into layers. Any change to a number, a verdict, a finding or a
recorded library call shows here as a named difference; regenerate with
``python tests/golden/golden.py NAME`` only for an intended change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import golden  # noqa: E402


@pytest.mark.parametrize("name", golden.SCENARIOS)
def test_results_match_the_golden_files(name: str, tmp_path: Path) -> None:
    expected_table, expected_summary = golden.load(name)
    table, summary = golden.run(name, tmp_path / name)
    problems = golden.table_differences(expected_table, table)
    problems += golden.differences(expected_summary, summary)
    assert not problems, f"{name}: {len(problems)} differences:\n" + "\n".join(problems[:20])


def test_the_comparison_can_fail() -> None:
    table, summary = golden.load("quickstart")
    changed = table.copy()
    changed.loc[3, "l2"] = changed.loc[3, "l2"] * (1 + 1e-3)
    assert golden.table_differences(table, changed)
    entry = dict(summary["attacks"][0], robust_accuracy=summary["attacks"][0]["robust_accuracy"] + 1e-4)
    assert golden.differences(summary, {**summary, "attacks": [entry, *summary["attacks"][1:]]})
