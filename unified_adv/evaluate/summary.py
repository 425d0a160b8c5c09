"""``summary.json``: built once, by :func:`build_summary`, from its parts.

Every part (headline numbers, cross-check, findings, defences, analyses, provenance) is
computed by its own function and returned whole; nothing is added to the summary after it
is built.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from unified_adv import __version__
from unified_adv.adapters import adapter_class, backend_names, dropped_backends
from unified_adv.analyses.pixelflip import de_budget
from unified_adv.defences.variants import non_adaptive_outcomes
from unified_adv.evaluate import metrics, robustness
from unified_adv.evaluate.crosscheck import crosscheck
from unified_adv.evaluate.defence_table import defence_summary
from unified_adv.evaluate.ensemble import autoattack_checks
from unified_adv.evaluate.findings import model_findings, result_findings
from unified_adv.evaluate.results import headline, samples_table
from unified_adv.run.prepared import Prepared, UnitOutcome
from unified_adv.sources.models import SCORE_BATCH, SCORE_THREADS

__all__ = [
    "SUMMARY_SCHEMA",
    "Outcomes",
    "build_summary",
    "eps_label",
    "json_default",
    "strict_json",
    "unit_entry",
    "versions",
]

SUMMARY_SCHEMA = 1


@dataclass(frozen=True)
class Outcomes:
    """A run's unit outcomes by evaluation: on the model itself, run against a defence
    (adaptive), and the undefended examples scored through each defence (non-adaptive)."""

    undefended: list[UnitOutcome]
    defended: list[UnitOutcome]
    derived: list[UnitOutcome]

    @classmethod
    def split(cls, prep: Prepared, outcomes: list[UnitOutcome]) -> Outcomes:
        undefended = [o for o in outcomes if not o.unit.defence]
        derived = non_adaptive_outcomes(prep, undefended) if prep.variants else []
        return cls(undefended, [o for o in outcomes if o.unit.defence], derived)

    @property
    def all(self) -> list[UnitOutcome]:
        return self.undefended + self.defended + self.derived

    def samples(self, prep: Prepared) -> pd.DataFrame:
        """The per-sample table of every evaluation."""
        return samples_table(prep, self.all)


# --------------------------------------------------------------------------- JSON


def json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def strict_json(doc: Any) -> str:
    """``doc`` as strict JSON (RFC 8259): no NaN or Infinity tokens, ever."""
    plain = json.loads(json.dumps(doc, default=json_default))
    return json.dumps(_finite(plain), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- parts


def versions() -> dict[str, str]:
    out = {
        "unified-adv": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for name in backend_names():
        cls = adapter_class(name)
        out[cls.distribution] = cls.version()
    return out


def _with_eps_text(prep: Prepared, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item with ``eps_text`` (the scenario's own ``8/255``) beside its float ``eps``."""
    specs = {p.spec.label: p.spec for p in prep.plans}
    out = []
    for item in items:
        spec = specs.get(item.get("attack_id", ""))
        if spec is not None and "eps" in item:
            item = {**item, "eps_text": spec.eps_text(item["eps"])}
        out.append(item)
    return out


def eps_label(prep: Prepared) -> Any:
    """For the report: ``eps_label(attack_id, eps)`` gives the eps as the scenario wrote it."""
    specs = {p.spec.label: p.spec for p in prep.plans}

    def label(attack_id: str, eps: float | None) -> str:
        spec = specs.get(attack_id)
        if eps is None:
            return "–"
        return (spec.eps_text(eps) if spec is not None else None) or f"{eps:.4g}"

    return label


def _dropped(prep: Prepared) -> list[dict[str, str]]:
    """Backends that ``backends: all`` left out of an attack, and why."""
    input_range = prep.scenario.model.input_range
    return [
        {"attack_id": plan.spec.label, "backend": name, "reason": reason}
        for plan in prep.plans
        for name, reason in dropped_backends(plan.spec, input_range).items()
    ]


def unit_entry(o: UnitOutcome) -> dict[str, Any]:
    return {
        "name": o.unit.name,
        "status": o.meta.get("status", "error"),
        "time_s": float(o.meta.get("time_s", 0.0)),
        "reused": o.reused,
        **({"error": o.meta["error"]} if "error" in o.meta else {}),
    }


def _crosscheck(prep: Prepared, outcomes: list[UnitOutcome]) -> dict[str, Any]:
    checks = crosscheck(prep, outcomes)
    return {
        **checks,
        "pairs": _with_eps_text(prep, checks["pairs"]),
        "worst_case": _with_eps_text(prep, checks["worst_case"]),
    }


def _de_budget(attack: dict[str, Any], channels: int) -> dict[str, Any]:
    """Each one-pixel attack's differential-evolution budget, stated beside its result."""
    if attack["attack"] != "one_pixel":
        return attack
    p = attack["params"]
    budget = de_budget(
        attack["backend"], int(p["pixels"]), channels, int(p["steps"]), int(p["popsize"])
    )
    return {**attack, "de_budget": budget}


def _defences(prep: Prepared, samples: pd.DataFrame, outcomes: Outcomes) -> dict[str, Any]:
    """Lim's table and the honest (adaptive) numbers; the backends cross-checked on each
    defended model too."""
    out = defence_summary(prep, samples, outcomes.all)
    pairs = []
    for variant in prep.variants.values():
        mine = [o for o in outcomes.defended if o.unit.defence == variant.id]
        for pair in crosscheck(prep, mine)["pairs"] if mine else []:
            pairs.append({**pair, "defence": variant.id})
    return {
        **out,
        "table": _with_eps_text(prep, out["table"]),
        "entries": _with_eps_text(prep, out["entries"]),
        "crosscheck": _with_eps_text(prep, pairs),
    }


def _search_comparison(
    bound: dict[str, Any], attacks: list[dict[str, Any]], samples: pd.DataFrame
) -> list[dict[str, Any]]:
    """Search-based one-pixel attacks vs the exhaustive upper bound on the same images."""
    rows = []
    for a in attacks:
        if a["attack"] != "one_pixel" or a["status"] != "ok":
            continue
        mine = samples[(samples.attack_id == a["attack_id"]) & (samples.backend == a["backend"])]
        possible = [bound["per_sample"].get(int(s), False) for s in mine["sample"]]
        budget = a.get("de_budget")
        rows.append(
            {
                "attack_id": a["attack_id"],
                "backend": a["backend"],
                "n": int(len(mine)),
                "pixels": a["params"].get("pixels"),
                "success_rate": a["success_rate"],
                "success_rate_ci": a["success_rate_ci"],
                "exhaustive_upper_bound": float(np.mean(possible)) if possible else None,
                "time_s": a["time_s"],
                "de_budget": budget["text"] if budget else None,
            }
        )
    return rows


def _analyses(
    entries: list[dict[str, Any]], attacks: list[dict[str, Any]], samples: pd.DataFrame
) -> list[dict[str, Any]]:
    """The analyses' entries; the pixel-flip study's beside the search attacks it bounds."""
    out = []
    for entry in entries:
        bound = entry.get("upper_bound") if entry.get("name") == "pixel_flip_study" else None
        if bound:
            entry = {**entry, "search_comparison": _search_comparison(bound, attacks, samples)}
        out.append(entry)
    return out


def determinism() -> dict[str, Any]:
    """The seeds' and determinism flags' state as the run ended (for the provenance): the
    scenario's seed is in the scenario block; each unit's seed derives from it."""
    cuda = torch.cuda.is_available()
    return {
        "torch_threads": torch.get_num_threads(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cuda_device": torch.cuda.get_device_name() if cuda else None,
        "unit_seeds": "SeedSequence([scenario seed, attack, eps, shard]), shared by the "
        "backends; batch b > 0 of a unit: SeedSequence([unit seed, b])",
    }


def _provenance(executor: dict[str, Any], started: dt.datetime, duration: float) -> dict[str, Any]:
    machine = platform.processor() or platform.machine()
    return {
        "versions": versions(),
        # How unified-adv's own forward passes ran (see models.SCORE_BATCH).
        "scoring": {"batch_size": SCORE_BATCH, "torch_threads": SCORE_THREADS},
        "determinism": determinism(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, {machine}",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": duration,
        "executor": executor,
    }


def _scenario(prep: Prepared) -> dict[str, Any]:
    s = prep.scenario
    return {
        "name": s.name,
        "description": s.description,
        "file": s.file,
        "sha256": s.sha256,
        "seed": s.seed,
    }


def _model(prep: Prepared) -> dict[str, Any]:
    return {
        "description": prep.model.description,
        "fingerprint": prep.model.fingerprint,
        "num_classes": prep.num_classes,
        "input_shape": list(prep.data.x.shape[1:]),
        "input_range": list(prep.model.wrapper.input_range),
        **prep.model.details,
    }


def _data(prep: Prepared) -> dict[str, Any]:
    attacked = np.zeros(len(prep.data.y), bool)
    for plan in prep.plans:
        attacked[plan.positions] = True
    return {
        "description": prep.data.description,
        "fingerprint": prep.data.fingerprint,
        "n_evaluated": len(prep.data.y),
        "n_correct": int(prep.correct.sum()),
        "clean_accuracy": float(prep.correct.mean()),
        "clean_accuracy_ci": metrics.proportion_ci(int(prep.correct.sum()), len(prep.data.y)),
        "only_correct": prep.scenario.data.only_correct,
        "n_attacked": int(attacked.sum()),
        # Source, split, limit and its mode, image transform, class order (when given).
        **prep.data.details,
    }


def _intervals() -> dict[str, Any]:
    return {"method": metrics.CI_METHOD, "confidence": metrics.CI_LEVEL, "text": metrics.CI_TEXT}


def _reviewer_numbers(
    prep: Prepared, samples: pd.DataFrame, attacks: list[dict[str, Any]], checks: dict[str, Any]
) -> dict[str, Any]:
    """The bounded headline, the minimal-perturbation attacks' distances and curves, and
    per-class robust accuracy (:mod:`unified_adv.evaluate.robustness`)."""
    points = robustness.bounded_points(prep, attacks, checks["worst_case"])
    return {
        "intervals": _intervals(),
        "headline": robustness.headline(points),
        "bounded": points,
        "minimal_perturbation": robustness.minimal_perturbation(prep, samples, attacks, points),
        "per_class": robustness.per_class(prep, samples, attacks),
    }


# --------------------------------------------------------------------------- the summary


def build_summary(
    prep: Prepared,
    samples: pd.DataFrame,
    outcomes: Outcomes,
    analysis: dict[str, Any],
    executor: dict[str, Any],
    started: dt.datetime,
    duration: float,
) -> dict[str, Any]:
    """The whole ``summary.json`` of a run. ``samples``: the per-sample table of every
    evaluation; ``analysis``: what :func:`~unified_adv.analyses.driver.run_analyses`
    returned; ``executor``: where the units ran (its ``describe()``)."""
    main = samples[samples["evaluation"] == "undefended"]
    channels = int(prep.data.x.shape[1])
    plain = headline(prep, main, outcomes.undefended)
    checks = _crosscheck(prep, outcomes.undefended)
    aa = autoattack_checks(prep, outcomes.undefended)
    findings = model_findings(prep) + result_findings(prep, plain, checks, outcomes.undefended, aa)
    attacks = [_de_budget(a, channels) for a in plain]
    defences = _defences(prep, samples, outcomes) if prep.variants else None
    units = outcomes.undefended + (outcomes.defended if defences is not None else [])
    return {
        "schema_version": SUMMARY_SCHEMA,
        **_reviewer_numbers(prep, main, plain, checks),
        "scenario": _scenario(prep),
        "model": _model(prep),
        "data": _data(prep),
        "attacks": attacks,
        "dropped_backends": _dropped(prep),
        "crosscheck": checks,
        "findings": [f.to_dict() for f in findings] + (defences or {}).get("findings", []),
        "units": [unit_entry(o) for o in units],
        "provenance": _provenance(executor, started, duration),
        **({"defences": defences} if defences is not None else {}),
        "analyses": _analyses(analysis["analyses"], attacks, samples),
        "monitor": analysis["monitor"],
        **({"autoattack": aa} if aa is not None else {}),
    }
