"""The shared run types, at the bottom of ``run/``: what a prepared scenario holds, what an
attack runs on, and what a unit came back with.

``defences``, ``analyses``, ``evaluate`` and ``report`` import these types from here,
without importing the machinery that plans or executes units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy.special import softmax

from unified_adv.run.units import Unit
from unified_adv.scenario.schema import AttackSpec, Scenario
from unified_adv.sources.data import Dataset
from unified_adv.sources.models import LoadedModel

__all__ = [
    "AttackPlan",
    "CleanScores",
    "Prepared",
    "Unit",
    "UnitFailed",
    "UnitOutcome",
]


@dataclass
class AttackPlan:
    """The samples one attack runs on and, when targeted, their targets."""

    spec: AttackSpec
    index: int
    positions: np.ndarray  # positions into the prepared data set
    targets: np.ndarray | None
    backends: tuple[str, ...]
    scope: int  # the first `scope` samples of the data set are evaluated under this attack


class CleanScores:
    """Prediction, confidence and correctness on the clean inputs, derived once from the
    clean logits (read per unit and per sample row): for the model and each defended one."""

    clean_logits: np.ndarray

    def labels(self) -> np.ndarray:
        raise NotImplementedError

    @cached_property
    def clean_pred(self) -> np.ndarray:
        return self.clean_logits.argmax(1)

    @cached_property
    def clean_conf(self) -> np.ndarray:
        return softmax(self.clean_logits, axis=1).max(1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.clean_pred == self.labels()


@dataclass
class Prepared(CleanScores):
    scenario: Scenario
    model: LoadedModel
    data: Dataset
    clean_logits: np.ndarray
    num_classes: int
    plans: list[AttackPlan] = field(default_factory=list)
    #: The scenario's defences: the classifier with each defence in front (unified_adv.defences.variants).
    variants: dict[str, Any] = field(default_factory=dict)
    #: Models the analyses use, loaded and checked once in ``prepare``: the model's file
    #: checkpoints by their index J, and analysis A's models by (A, J).
    checkpoint_models: dict[int, LoadedModel] = field(default_factory=dict)
    analysis_models: dict[tuple[int, int], LoadedModel] = field(default_factory=dict)
    #: Signs the model and data may not fit (unified_adv.run.sanity): (code, message) pairs,
    #: printed on stderr by ``prepare`` and reported as warning findings.
    setup_warnings: list[tuple[str, str]] = field(default_factory=list)

    def wrapper_for(self, defence: str) -> Any:
        return self.variants[defence].wrapper if defence else self.model.wrapper

    def labels(self) -> np.ndarray:
        return self.data.y


@dataclass
class UnitOutcome:
    unit: Unit
    #: A stored unit's are :class:`~unified_adv.run.units.StoredArrays` (examples on disk).
    arrays: Mapping[str, np.ndarray] | None
    meta: dict[str, Any]
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.arrays is not None


def error_outcome(unit: Unit, exc: BaseException, tb: str) -> UnitOutcome:
    """A unit that raised: its error record (status, error, traceback)."""
    message = f"{type(exc).__name__}: {exc}".strip()
    return UnitOutcome(unit, None, {"status": "error", "error": message, "traceback": tb})


class UnitFailed(Exception):
    """``strict``: a unit raised, and the run stopped there."""

    def __init__(self, unit: str, error: str, traceback: str = ""):
        self.unit = unit
        self.error = error
        #: The unit's traceback as text: it may have run in another process (Dask).
        self.traceback = traceback
        super().__init__(f"unit {unit} failed: {error}")
