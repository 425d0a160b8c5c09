"""The analysis registry (one lazy entry per analysis) and the cached-unit helper."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from unified_adv import scenario_from_text
from unified_adv.analyses.base import AnalysisUnit, UnitStore
from unified_adv.catalogue.analyses import ANALYSES, analysis_figures, analysis_runner
from unified_adv.errors import InputError
from unified_adv.scenario.schema import AnalysisSpec


@pytest.mark.parametrize("name", list(ANALYSES))
def test_every_entry_resolves_to_a_run_function(name: str) -> None:
    run = analysis_runner(name)
    assert list(inspect.signature(run).parameters) == ["ctx", "index", "spec"]
    figures = analysis_figures(name)
    assert figures is None or callable(figures)
    # Every field an entry names is a field of the scenario's AnalysisSpec.
    assert set(ANALYSES[name].fields) <= set(AnalysisSpec.model_fields)


def test_the_schema_takes_its_fields_from_the_registry() -> None:
    base = "name: s\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 20}\n"
    ok = scenario_from_text(base + "analyses:\n  - {name: morph, steps: 5}\n")
    assert ok.analyses[0].steps == 5
    with pytest.raises(InputError, match="morph takes no 'eps'"):
        scenario_from_text(base + "analyses:\n  - {name: morph, eps: 0.1}\n")
    with pytest.raises(InputError, match="analysis"):
        scenario_from_text(base + "analyses:\n  - {name: morf}\n")


def _unit(seed: int = 0) -> AnalysisUnit:
    return AnalysisUnit(0, "a", "morph", "final", "", (("steps", 3),), seed, "ctx")


def test_cached_unit_computes_once_and_resumes(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> tuple[dict[str, np.ndarray], dict[str, object]]:
        calls.append(1)
        return {"v": np.arange(3)}, {"note": "x"}

    arrays, meta = UnitStore(tmp_path, resume=True).cached(_unit(), compute)
    assert calls == [1] and meta["status"] == "ok" and meta["note"] == "x" and "time_s" in meta
    again, meta2 = UnitStore(tmp_path, resume=True).cached(_unit(), compute)
    assert calls == [1]  # loaded, not recomputed
    np.testing.assert_array_equal(again["v"], arrays["v"])
    assert meta2["note"] == "x"
    UnitStore(tmp_path, resume=False).cached(_unit(), compute)
    assert calls == [1, 1]  # no resume: computed anew
    UnitStore(tmp_path, resume=True).cached(_unit(seed=1), compute)
    assert calls == [1, 1, 1]  # another unit (another key): not reused
