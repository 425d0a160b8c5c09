"""unified-adv: one scenario API over ART, Foolbox 3 and torchattacks."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import RunResult, run  # noqa: E402
from .errors import InputError, Problem  # noqa: E402
from .scenario import Scenario, load_scenario, scenario_from_text  # noqa: E402

__all__ = [
    "InputError",
    "Problem",
    "RunResult",
    "Scenario",
    "__version__",
    "load_scenario",
    "run",
    "scenario_from_text",
]
