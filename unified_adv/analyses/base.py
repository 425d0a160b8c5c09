"""What every analysis shares: its unit of work, the cached-unit helper, the context it runs
in, what it returns, and the model checkpoints the training-state monitor walks over.

An analysis is one function ``run(ctx, index, spec) -> AnalysisOutput`` (the
:class:`Analysis` protocol), registered by name in :mod:`unified_adv.catalogue.analyses`.
It reads the prepared run from ``ctx``, saves and resumes its expensive parts through
``ctx.store`` (one :class:`AnalysisUnit` each), and returns its ``summary.json`` entry, its
in-memory results for the report's figures, and its columns of the monitor table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unified_adv.run.prepared import Prepared
from unified_adv.run.units import load_unit, save_unit
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.load import load_model
from unified_adv.sources.models import LoadedModel

#: A unit's stored arrays and its JSON record.
Stored = tuple[Mapping[str, np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class AnalysisUnit:
    """One analysis on one checkpoint (and backend, variant): saved as one npz + JSON pair.

    The key hashes every field, so a stored result is reused only for the same unit.
    """

    analysis_index: int
    analysis_id: str
    analysis: str
    checkpoint: str  # "final" or the checkpoint as written in the scenario
    backend: str  # "" for morph
    params: tuple[tuple[str, Any], ...]
    seed: int
    context: str
    variant: str = ""  # e.g. Possas's method-gradient: one unit file each

    @property
    def name(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.checkpoint)[:40]
        suffix = f"-{self.backend}" if self.backend else ""
        suffix += f"-{self.variant}" if self.variant else ""
        return f"an{self.analysis_index:02d}-{self.analysis_id}-ckpt-{safe}{suffix}"

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class UnitStore:
    """The load / compute / save resume pattern of every analysis, in one place.

    ``cached(unit, compute)``: the stored result of ``unit`` when resuming and one fits,
    else ``compute()`` (arrays, extra record fields), saved with ``status`` and ``time_s``.
    ``load`` and ``save`` alone serve an analysis that computes its units in a batch.
    """

    folder: Path
    resume: bool

    def load(self, unit: AnalysisUnit) -> Stored | None:
        return load_unit(self.folder, unit) if self.resume else None

    def save(
        self, unit: AnalysisUnit, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]
    ) -> dict[str, Any]:
        record = {"status": "ok", **meta}
        save_unit(self.folder, unit, arrays, record)
        return record

    def cached(self, unit: AnalysisUnit, compute: Callable[[], Stored]) -> Stored:
        stored = self.load(unit)
        if stored is not None:
            return stored
        t0 = time.perf_counter()
        arrays, meta = compute()
        meta = {"time_s": time.perf_counter() - t0, **meta}
        return arrays, self.save(unit, arrays, meta)


@dataclass(frozen=True)
class ResultKey:
    """Where an analysis's in-memory result sits: analysis index, checkpoint, backend."""

    analysis: int
    checkpoint: str = "final"
    backend: str = ""


@dataclass
class CheckpointModel:
    label: str
    model: LoadedModel
    accuracy: float
    correct: np.ndarray  # (N,) bool over the scenario's samples


def checkpoint_models(prep: Prepared) -> list[CheckpointModel]:
    """The model's checkpoints in the order given, then the model itself ("final")."""
    scenario = prep.scenario
    out = []
    for j, ckpt in enumerate(scenario.model.checkpoints or ()):
        # File checkpoints were loaded and checked by prepare(); builtin epochs load here.
        loaded = prep.checkpoint_models.get(j) or load_model(scenario, ckpt)
        correct = loaded.wrapper.logits(prep.data.x).argmax(1) == prep.data.y
        out.append(CheckpointModel(str(ckpt), loaded, float(correct.mean()), correct))
    out.append(CheckpointModel("final", prep.model, float(prep.correct.mean()), prep.correct))
    return out


@dataclass
class AnalysisContext:
    """The prepared run an analysis reads, and where it saves its units."""

    prep: Prepared
    store: UnitStore
    executor: Any = None
    progress: Callable[[str], None] | None = None

    @cached_property
    def checkpoints(self) -> list[CheckpointModel]:
        return checkpoint_models(self.prep)


@dataclass
class AnalysisOutput:
    """What one analysis hands back."""

    #: Its entry in summary.json's "analyses" (JSON-able).
    entry: dict[str, Any]
    #: In-memory results for its report figures (arrays, result objects).
    results: dict[ResultKey, Any] = field(default_factory=dict)
    #: Checkpoint label -> its columns of the training-state monitor table.
    monitor: dict[str, dict[str, Any]] = field(default_factory=dict)


class Analysis(Protocol):
    """One analysis: reads ``ctx.prep``, saves through ``ctx.store``, returns its output."""

    def __call__(self, ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput: ...


def select_images(
    y: np.ndarray, correct: np.ndarray, per_class: int, num_classes: int
) -> np.ndarray:
    """The first ``per_class`` correctly classified images of each class, in data order."""
    chosen = [np.flatnonzero((y == c) & correct)[:per_class] for c in range(num_classes)]
    return np.concatenate(chosen).astype(np.int64)


@dataclass
class Selection:
    """The images one checkpoint is analysed on (Ding & Möller's morph and walk)."""

    ckpt: CheckpointModel
    images: np.ndarray  # positions in the scenario's data
    labels: np.ndarray
    x: np.ndarray
    #: Which selected images this checkpoint classifies correctly: its statistics use only
    #: the pairs and walks whose endpoints (source) it gets right.
    valid: np.ndarray
    context: str  # fingerprint of the checkpoint, the data and the selection


def checkpoint_entry(prep: Prepared, spec: AnalysisSpec) -> dict[str, Any]:
    """The head of a per-checkpoint analysis's summary entry (images chosen by the final model)."""
    images = select_images(prep.data.y, prep.correct, spec.images_per_class, prep.num_classes)
    return {
        "id": spec.label,
        "name": spec.name,
        "images": int(len(images)),
        "image_samples": [int(i) for i in prep.data.index[images]],
        "checkpoints": [],
        "select": spec.select or "final",
    }


def selections(ctx: AnalysisContext, spec: AnalysisSpec) -> Iterator[Selection]:
    """Per checkpoint: the images chosen by the final model, or anew by the checkpoint."""
    prep = ctx.prep
    images = select_images(prep.data.y, prep.correct, spec.images_per_class, prep.num_classes)
    for ckpt in ctx.checkpoints:
        if spec.select == "per_checkpoint":
            images = select_images(
                prep.data.y, ckpt.correct, spec.images_per_class, prep.num_classes
            )
        context = f"{ckpt.model.fingerprint}:{prep.data.fingerprint}:{images.tobytes().hex()[:64]}"
        yield Selection(
            ckpt, images, prep.data.y[images], prep.data.x[images], ckpt.correct[images], context
        )
        if ctx.progress is not None:
            ctx.progress(f"{spec.label}@{ckpt.label}")
