"""The report's context: built once, by :func:`report_context`, from the summary and the
run's outcomes; the template reads nothing else."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate.summary import Outcomes, eps_label, json_default, unit_entry
from unified_adv.report import disagreement_figures, triptychs
from unified_adv.report.analysis_figures import analysis_figures
from unified_adv.report.attack_figures import distance_figure, security_curve
from unified_adv.report.defence_figures import defence_figures
from unified_adv.report.metric_figures import eps_curves, per_class_heatmap
from unified_adv.run.prepared import Prepared, UnitOutcome

__all__ = ["report_context"]


def _unit_row(o: UnitOutcome) -> dict[str, Any]:
    """A unit in the report's provenance: its summary entry, seed and exact library call."""
    call = o.meta.get("library_call", o.meta.get("error", ""))
    return {
        **unit_entry(o),
        "seed": o.unit.seed,
        "call": json.dumps(call, indent=1, default=json_default),
    }


def _attack_block(
    prep: Prepared,
    a_i: int,
    summary: dict[str, Any],
    samples: pd.DataFrame,
    triptych_list: list[dict[str, Any]],
) -> dict[str, Any]:
    """One attack's block: its rows, worst case, verdicts, figures and examples."""
    spec = prep.plans[a_i].spec
    entries = [e for e in summary["attacks"] if e["attack_id"] == spec.label]
    worst = [w for w in summary["crosscheck"]["worst_case"] if w["attack_id"] == spec.label]
    pairs = [p for p in summary["crosscheck"]["pairs"] if p["attack_id"] == spec.label]
    verdicts: dict[str, int] = {}
    for p in pairs:
        verdicts[p["verdict"]] = verdicts.get(p["verdict"], 0) + 1
    e_top = max(spec.eps) if spec.eps is not None else None
    rows = samples[samples["attack_id"] == spec.label]
    if e_top is not None:
        rows = rows[rows["eps"] == e_top]
    entry = ATTACKS[spec.name]
    robust = [e["robust_accuracy"] for e in entries if e["robust_accuracy"] is not None]
    lowest = [w["robust_accuracy_worst_case"] for w in worst] or robust
    return {
        "attack_id": spec.label,
        "attack": spec.name,
        "summary": entry.summary,
        "paper": entry.paper,
        "norm": spec.norm,
        "target": spec.target.describe(),
        "eps_values": [e for e in spec.eps_values if e is not None],
        "entries": entries,
        "dropped": [d for d in summary["dropped_backends"] if d["attack_id"] == spec.label],
        "worst": worst,
        "verdicts": verdicts,
        "lowest_robust": min(lowest) if lowest else None,
        "distances": distance_figure(rows, spec.norm, entry.threat == "ball", e_top),
        "curve": security_curve(entries, worst),
        "triptych": next((t for t in triptych_list if t["attack_id"] == spec.label), None),
        "minimal": _minimal_block(summary, spec.label),
    }


def _minimal_block(summary: dict[str, Any], attack_id: str) -> dict[str, Any] | None:
    """A minimal-perturbation attack's distances, curves (figure) and optimality."""
    entry = next((m for m in summary["minimal_perturbation"] if m["attack_id"] == attack_id), None)
    if entry is None:
        return None
    return {**entry, "figure": eps_curves(entry, summary["bounded"])}


#: Beyond this many classes the report lists each row's least robust classes, not all.
HEATMAP_CLASSES = 30


def _per_class(summary: dict[str, Any], label: Any) -> dict[str, Any]:
    rows = summary["per_class"]
    few = bool(rows) and len(rows[0]["classes"]) <= HEATMAP_CLASSES
    return {
        "rows": rows,
        "figure": per_class_heatmap(rows, label) if few else None,
        "all_classes": few,
    }


def report_context(
    prep: Prepared,
    summary: dict[str, Any],
    outcomes: Outcomes,
    samples: pd.DataFrame,
    analysis: dict[str, Any],
) -> dict[str, Any]:
    """Everything ``index.html`` shows. ``samples``: the undefended per-sample rows."""
    s = prep.scenario
    plain = outcomes.undefended
    units = [_unit_row(o) for o in plain]
    defended = [_unit_row(o) for o in outcomes.defended] if prep.variants else []
    examples = triptychs(prep, plain, s.report.triptychs)
    return {
        "title": s.report.title or f"Robustness report: {s.name}",
        "eps_label": eps_label(prep),
        "scenario": {**summary["scenario"], "text": s.text},
        "model": {
            **summary["model"],
            "held_out_accuracy": summary["model"].get("held_out_accuracy"),
        },
        "data": summary["data"],
        "results": summary["attacks"],
        "crosscheck": summary["crosscheck"],
        "crosscheck_alpha": s.crosscheck.alpha,
        "findings": summary["findings"],
        "disagreement_figures": disagreement_figures(prep, plain, summary["crosscheck"]),
        "headline": summary["headline"],
        "intervals": summary["intervals"],
        "minimal": summary["minimal_perturbation"],
        "per_class": _per_class(summary, eps_label(prep)),
        "triptychs": examples,
        "per_attack": [
            _attack_block(prep, a_i, summary, samples, examples) for a_i in range(len(prep.plans))
        ],
        "units": units + defended,
        "n_failed": sum(1 for u in units if u["status"] != "ok"),  # of the undefended units
        "errors": [
            {"unit": o.unit.name, "error": o.meta.get("error", "")} for o in plain if not o.ok
        ],
        "provenance": summary["provenance"],
        "analyses": summary.get("analyses", []),
        "monitor": summary.get("monitor", []),
        "analysis_figures": analysis_figures(prep, analysis) if analysis["analyses"] else {},
        "defences": summary.get("defences"),
        "defence_figures": defence_figures(prep, summary.get("defences", {}), plain),
    }
