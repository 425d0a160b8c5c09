"""The scenario: its schema (pydantic specs), the checks across its sections, loading from
YAML, and the translation of errors into one-line messages."""

from __future__ import annotations

from unified_adv.scenario.checks import backends_for
from unified_adv.scenario.loading import load_scenario, scenario_from_text
from unified_adv.scenario.schema import (
    AnalysisSpec,
    AttackSpec,
    CrosscheckSpec,
    DataSpec,
    DefenceSpec,
    ExecutionSpec,
    ModelSpec,
    NamedModelSpec,
    ReportSpec,
    Scenario,
    TargetSpec,
)

__all__ = [
    "AnalysisSpec",
    "AttackSpec",
    "CrosscheckSpec",
    "DataSpec",
    "DefenceSpec",
    "ExecutionSpec",
    "ModelSpec",
    "NamedModelSpec",
    "ReportSpec",
    "Scenario",
    "TargetSpec",
    "backends_for",
    "load_scenario",
    "scenario_from_text",
]
