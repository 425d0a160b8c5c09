"""The analysis registry: one entry per analysis, in the style of lm-evaluation-harness.

An entry names the scenario fields the analysis takes, a one-line description, and two lazy
``"module:attr"`` targets: the function that runs it (an
:class:`unified_adv.analyses.base.Analysis`) and the function that draws its report figures.
Nothing here imports the analyses themselves, so the scenario schema (which checks each
analysis's fields against ``fields``) sits below them; :func:`analysis_runner` and
:func:`analysis_figures` import a target on first use.

Adding an analysis: one module under ``unified_adv/analyses/`` with a ``run(ctx, index, spec)``
function, its scenario fields in ``AnalysisSpec``, and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AnalysisEntry:
    """One analysis: what a scenario may give it, what it computes, where its code lives."""

    name: str
    #: The optional ``AnalysisSpec`` fields it takes (every other one is refused).
    fields: tuple[str, ...]
    summary: str
    #: ``"module:attr"`` of its ``run(ctx, index, spec) -> AnalysisOutput``.
    runner: str
    #: ``"module:attr"`` of its ``figures(prep, entry, results) -> dict``; "" for none.
    figures: str = ""


_A = "unified_adv.analyses"
_FIG = "unified_adv.report.analysis_figures"
_STUDY_FIG = "unified_adv.report.study_figures"

ENTRIES = (
    AnalysisEntry(
        "morph",
        ("images_per_class", "steps", "pairs", "seed", "select"),
        "interpolation morphing between classes (Ding & Möller)",
        f"{_A}.morph:run",
        f"{_FIG}:morph_figures",
    ),
    AnalysisEntry(
        "targeted_walk",
        ("images_per_class", "step_size", "max_steps", "backends", "select"),
        "targeted iterative FGSM until the target class is reached (Ding & Möller)",
        f"{_A}.walk:run",
        f"{_FIG}:walk_figures",
    ),
    AnalysisEntry(
        "pixel_flip_study",
        ("sizes", "angle_steps", "seeds", "engine"),
        "exhaustive one-pixel flips on the line data set, per size and angle step (Kügler et al.)",
        f"{_A}.pixelflip_study:run",
        f"{_FIG}:pixel_flip_figures",
    ),
    AnalysisEntry(
        "confidence_buckets",
        ("mode", "thresholds", "buckets", "eps", "steps", "step_size", "k", "backends"),
        "top-1/top-5 error of FGSM and BIM, inverse and least likely, per confidence bucket (Possas)",
        f"{_A}.buckets:run",
    ),
    AnalysisEntry(
        "uap",
        (
            "norms",
            "zetas",
            "targets",
            "attacker",
            "max_iter",
            "delta",
            "fit_images",
            "seed",
            "success_over",
        ),
        "universal adversarial perturbations, non-targeted (fooling rate) and targeted (success "
        "rate), each against a random control of the same norm (Hirano & Takemoto, in Zingade)",
        f"{_A}.uap:run",
        f"{_STUDY_FIG}:uap_figures",
    ),
    AnalysisEntry(
        "transfer",
        ("models", "norm", "eps", "steps", "step_size", "backends"),
        "black-box transfer: PGD on each surrogate model, success on each target model (Zingade)",
        f"{_A}.transfer:run",
        f"{_STUDY_FIG}:transfer_figures",
    ),
)

#: name -> entry, in the order above.
ANALYSES: dict[str, AnalysisEntry] = {e.name: e for e in ENTRIES}


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


def analysis_runner(name: str) -> Callable[..., Any]:
    """The ``run`` function of analysis ``name`` (imported on first use)."""
    return _load(ANALYSES[name].runner)


def analysis_figures(name: str) -> Callable[..., Any] | None:
    """The report-figure function of analysis ``name``, or None when it draws none."""
    target = ANALYSES[name].figures
    return _load(target) if target else None
