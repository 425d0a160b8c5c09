"""Reading finished run folders back: compare two runs, gate one run in CI.

Above :mod:`unified_adv.report` (the comparison report uses its template family) and below
the CLI. Nothing here runs an attack: everything is read from a run's ``summary.json`` and
its per-sample table.
"""

from __future__ import annotations

#: Exit code of ``compare --fail-on-regression`` and ``check`` when a gate fails.
EXIT_GATE = 4
