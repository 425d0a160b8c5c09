"""Run every analysis of a scenario, each through its registry entry, and gather the
training-state monitor table (one row per model checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unified_adv.analyses.base import AnalysisContext, UnitStore
from unified_adv.analyses.robustness_index import with_robustness_index
from unified_adv.catalogue.analyses import analysis_runner
from unified_adv.run.prepared import Prepared


def run_analyses(
    prep: Prepared,
    folder: Path,
    *,
    resume: bool = False,
    progress: Any = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Run every analysis; return their summary entries, the monitor rows and the in-memory
    results (keyed by :class:`~unified_adv.analyses.base.ResultKey`) for the report."""
    if not prep.scenario.analyses:
        return {"analyses": [], "monitor": [], "results": {}}
    ctx = AnalysisContext(prep, UnitStore(folder, resume), executor, progress)
    monitor = {c.label: {"checkpoint": c.label, "accuracy": c.accuracy} for c in ctx.checkpoints}
    entries: list[dict[str, Any]] = []
    results: dict[Any, Any] = {}
    for index, spec in enumerate(prep.scenario.analyses):
        out = analysis_runner(spec.name)(ctx, index, spec)
        entries.append(out.entry)
        results.update(out.results)
        for label, columns in out.monitor.items():
            monitor[label].update(columns)
    rows = [with_robustness_index(row) for row in monitor.values()]
    return {"analyses": entries, "monitor": rows, "results": results}
