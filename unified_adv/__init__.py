"""unified-adv: one scenario API over ART, Foolbox 3 and torchattacks."""

from __future__ import annotations

import importlib.metadata

try:  # one place for the version: pyproject.toml, read back from the installed metadata
    __version__ = importlib.metadata.version("unified-adv")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from unified_adv.api import RunResult, run  # noqa: E402
from unified_adv.errors import InputError, Problem  # noqa: E402
from unified_adv.scenario import Scenario, load_scenario, scenario_from_text  # noqa: E402

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
