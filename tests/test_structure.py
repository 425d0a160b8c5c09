"""The package's shape (issue 17): what bench/structure.py measures, held as limits.

Imports only go down the layers, so the import graph (late imports included) has no cycle;
a function-level import of a project module would only be there to dodge one. The numbers
are read from the source with ``ast``, nothing is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import structure  # noqa: E402

FIGURES = structure.figures()


def test_the_import_graph_has_no_cycle() -> None:
    assert FIGURES["cycles"] == []


def test_few_function_level_imports_of_project_modules() -> None:
    assert len(FIGURES["function_level_imports"]) <= 10, FIGURES["function_level_imports"]


def test_few_modules_directly_in_the_package() -> None:
    assert len(FIGURES["top_level_modules"]) <= 12, FIGURES["top_level_modules"]


def test_no_function_over_80_lines() -> None:
    assert FIGURES["functions_over_80"] == []


def test_the_measure_finds_a_cycle_and_a_long_function() -> None:
    """The measure itself can fail: a made-up three-module cycle is found, a chain is not."""
    assert structure.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert structure.cycles({"a": {"b"}, "b": set()}) == []
