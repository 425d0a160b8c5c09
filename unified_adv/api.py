"""The Python API, mirroring the CLI: ``load_scenario(path)`` then ``run(scenario)``."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unified_adv import __version__
from unified_adv.adapters import adapter_class, backend_names
from unified_adv.analyses.driver import run_analyses
from unified_adv.defences.variants import defence_summary, non_adaptive_outcomes
from unified_adv.evaluate.crosscheck import crosscheck
from unified_adv.evaluate.findings import model_findings, result_findings
from unified_adv.evaluate.results import headline, samples_table
from unified_adv.report import disagreement_figures, render, triptychs
from unified_adv.report.analysis_figures import analysis_figures
from unified_adv.report.defence_figures import defence_figures
from unified_adv.run.executors import run_units_with
from unified_adv.run.outdir import check_out_dir, make_out_dir, storage_errors
from unified_adv.run.runner import Prepared, UnitOutcome, plan_units, prepare
from unified_adv.run.units import atomic_write_bytes
from unified_adv.scenario.schema import Scenario
from unified_adv.sources.models import SCORE_BATCH, SCORE_THREADS

SUMMARY_SCHEMA = 1


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    samples: pd.DataFrame

    @property
    def report(self) -> Path:
        return self.out_dir / "index.html"

    @property
    def failed(self) -> bool:
        return any(u["status"] != "ok" for u in self.summary["units"])


def versions() -> dict[str, str]:
    import torch

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


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    return str(value)


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
    plain = json.loads(json.dumps(doc, default=_json_default))
    return json.dumps(_finite(plain), indent=2, allow_nan=False)


def _build_summary(
    prep: Prepared,
    samples: pd.DataFrame,
    outcomes: list[UnitOutcome],
    started: dt.datetime,
    duration: float,
) -> dict[str, Any]:
    s = prep.scenario
    n_eval = len(prep.data.y)
    attacks = headline(prep, samples, outcomes)
    checks = crosscheck(prep, outcomes)
    with_eps_text(prep, checks["pairs"] + checks["worst_case"])
    findings = model_findings(prep) + result_findings(prep, attacks, checks, outcomes)
    attacked = np.zeros(n_eval, bool)
    for plan in prep.plans:
        attacked[plan.positions] = True
    return {
        "schema_version": SUMMARY_SCHEMA,
        "scenario": {
            "name": s.name,
            "description": s.description,
            "file": s.file,
            "sha256": s.sha256,
            "seed": s.seed,
        },
        "model": {
            "description": prep.model.description,
            "fingerprint": prep.model.fingerprint,
            "num_classes": prep.num_classes,
            "input_shape": list(prep.data.x.shape[1:]),
            "input_range": list(prep.model.wrapper.input_range),
            **prep.model.details,
        },
        "data": {
            "description": prep.data.description,
            "fingerprint": prep.data.fingerprint,
            "n_evaluated": n_eval,
            "n_correct": int(prep.correct.sum()),
            "clean_accuracy": float(prep.correct.mean()),
            "only_correct": s.data.only_correct,
            "n_attacked": int(attacked.sum()),
        },
        "attacks": attacks,
        "dropped_backends": _dropped(prep),
        "crosscheck": checks,
        "findings": [f.to_dict() for f in findings],
        "units": [_unit_entry(o) for o in outcomes],
        "provenance": {
            "versions": versions(),
            # How unified-adv's own forward passes ran (see models.SCORE_BATCH).
            "scoring": {"batch_size": SCORE_BATCH, "torch_threads": SCORE_THREADS},
            "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": duration,
        },
    }


def _dropped(prep: Prepared) -> list[dict[str, str]]:
    """Backends that ``backends: all`` left out of an attack, and why."""
    from unified_adv.adapters import dropped_backends

    input_range = prep.scenario.model.input_range
    return [
        {"attack_id": plan.spec.label, "backend": name, "reason": reason}
        for plan in prep.plans
        for name, reason in dropped_backends(plan.spec, input_range).items()
    ]


def with_eps_text(prep: Prepared, items: list[dict[str, Any]]) -> None:
    """Add ``eps_text`` (the scenario's own ``8/255``) beside each item's float ``eps``."""
    specs = {p.spec.label: p.spec for p in prep.plans}
    for item in items:
        spec = specs.get(item.get("attack_id", ""))
        if spec is not None and "eps" in item:
            item["eps_text"] = spec.eps_text(item["eps"])


def eps_label(prep: Prepared) -> Any:
    """For the report: ``eps_label(attack_id, eps)`` gives the eps as the scenario wrote it."""
    specs = {p.spec.label: p.spec for p in prep.plans}

    def label(attack_id: str, eps: float | None) -> str:
        spec = specs.get(attack_id)
        if eps is None:
            return "–"
        return (spec.eps_text(eps) if spec is not None else None) or f"{eps:.4g}"

    return label


def _executor(
    scenario: Scenario, given: Any, scheduler: str | None, workers: int | None
) -> tuple[Any, bool]:
    """The executor to use and whether this run owns (and closes) it. Arguments win over the
    scenario's ``execution`` fields; a scheduler or worker count alone means dask."""
    from unified_adv.errors import InputError
    from unified_adv.run.executors import make_executor

    if given is not None and not isinstance(given, str):
        return given, False
    e = scenario.execution
    kind: str = given or "dask"
    if given is None and scheduler is None and workers is None:
        kind, scheduler, workers = e.executor, e.scheduler, e.workers
    try:
        return make_executor(kind, scheduler=scheduler, workers=workers), True
    except (ValueError, ImportError) as exc:
        raise InputError.one(scenario.file, "execution", str(exc).splitlines()[0]) from None


def _unit_row(o: UnitOutcome) -> dict[str, Any]:
    """A unit in the report's provenance: its summary entry, seed and exact library call."""
    call = o.meta.get("library_call", o.meta.get("error", ""))
    return {
        **_unit_entry(o),
        "seed": o.unit.seed,
        "call": json.dumps(call, indent=1, default=_json_default),
    }


def _unit_entry(o: UnitOutcome) -> dict[str, Any]:
    return {
        "name": o.unit.name,
        "status": o.meta.get("status", "error"),
        "time_s": float(o.meta.get("time_s", 0.0)),
        "reused": o.reused,
        **({"error": o.meta["error"]} if "error" in o.meta else {}),
    }


def _defences(
    prep: Prepared,
    samples: pd.DataFrame,
    outcomes: list[UnitOutcome],
    defended: list[UnitOutcome],
    derived: list[UnitOutcome],
) -> dict[str, Any]:
    """Lim's table and the honest (adaptive) numbers; the backends cross-checked on each
    defended model too."""
    out = defence_summary(prep, samples, outcomes + defended + derived)
    pairs = []
    for variant in prep.variants.values():
        mine = [o for o in defended if o.unit.defence == variant.id]
        for pair in crosscheck(prep, mine)["pairs"] if mine else []:
            pairs.append({**pair, "defence": variant.id})
    out["crosscheck"] = pairs
    return out


def default_out_dir(scenario: Scenario) -> Path:
    return Path("reports") / scenario.name


def run(
    scenario: Scenario,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    strict: bool = False,
    progress: bool | None = None,
    executor: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
) -> RunResult:
    """Run every unit of ``scenario`` and write the report, summary and per-sample table.

    ``resume``: reuse the units an earlier run of the same scenario finished in ``out``.
    ``strict``: the first unit that raises stops the run with
    :class:`unified_adv.run.runner.UnitFailed`, before any table, summary or report is
    written; the units finished so far stay in ``out/units`` for a later ``resume``.
    Without it a failing unit is recorded (status ``error`` in ``summary.json`` and the
    report) and the other units go on.
    ``progress``: a progress bar on stderr; default on when stderr is a terminal.
    ``executor``: where the units run: ``"local"`` (in this process), ``"dask"`` (with
    ``scheduler`` or ``workers``), or an executor object (e.g.
    ``unified_adv.run.executors.DaskExecutor(client=...)``), which is left open. Default: the
    scenario's ``execution`` fields. Results are identical whichever runs them.
    ``force``: write into ``out`` even when it is a non-empty folder that no earlier run
    made (without it that is refused, as is an unwritable or full disk, before any work).
    """
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    out_dir = check_out_dir(out if out is not None else default_out_dir(scenario), force=force)
    prep = prepare(scenario)
    units = plan_units(prep)
    ex, owned = _executor(scenario, executor, scheduler, workers)
    make_out_dir(out_dir, scenario.name)
    with storage_errors(out_dir):
        return _run_and_write(
            prep, units, ex, owned, out_dir, resume, strict, progress, started, t0
        )


def _run_and_write(
    prep: Prepared,
    units: list[Any],
    ex: Any,
    owned: bool,
    out_dir: Path,
    resume: bool,
    strict: bool,
    progress: bool | None,
    started: dt.datetime,
    t0: float,
) -> RunResult:
    """Run the units and analyses, then write the tables, the summary and the report."""
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm.auto import tqdm

    with tqdm(
        total=len(units), desc="units", unit="unit", disable=not show, file=sys.stderr
    ) as bar:

        def tick(unit: Any) -> None:
            bar.set_postfix_str(unit.name, refresh=False)
            bar.update(1)

        try:
            outcomes = run_units_with(
                ex, prep, units, out_dir / "units", resume=resume, strict=strict, progress=tick
            )
            # The one-pixel study's sweeps go through the executor too; the rest runs here.
            analysis = run_analyses(prep, out_dir / "units", resume=resume, executor=ex)
        finally:
            if owned:
                ex.close()

    # Units run against a defence, and the undefended examples scored through each defence.
    defended = [o for o in outcomes if o.unit.defence]
    outcomes = [o for o in outcomes if not o.unit.defence]
    derived = non_adaptive_outcomes(prep, outcomes) if prep.variants else []
    samples = samples_table(prep, outcomes + defended + derived)
    table = io.BytesIO()
    samples.to_parquet(table, index=False)
    atomic_write_bytes(out_dir / "samples.parquet", table.getvalue())
    _write_text(out_dir / "samples.csv", samples.to_csv(index=False))
    main_samples = samples[samples["evaluation"] == "undefended"]
    summary = _build_summary(prep, main_samples, outcomes, started, time.perf_counter() - t0)
    if prep.variants:
        summary["defences"] = _defences(prep, samples, outcomes, defended, derived)
        d = summary["defences"]
        with_eps_text(prep, d["table"] + d["entries"] + d["crosscheck"])
        summary["findings"] += summary["defences"]["findings"]
        summary["units"] += [_unit_entry(o) for o in defended]
    summary["provenance"]["executor"] = ex.describe()
    summary["analyses"] = analysis["analyses"]
    _compare_with_search(summary, samples)
    _de_budgets(summary)
    summary["monitor"] = analysis["monitor"]
    _write_text(out_dir / "summary.json", strict_json(summary))
    context = _report_context(prep, summary, outcomes, main_samples)
    context["analysis_figures"] = analysis_figures(prep, analysis) if analysis["analyses"] else {}
    context["defences"] = summary.get("defences")
    context["units"] += [_unit_row(o) for o in defended]
    context["defence_figures"] = defence_figures(prep, summary.get("defences", {}), outcomes)
    render(out_dir, context)
    return RunResult(out_dir, summary, samples)


def _per_attack(
    prep: Prepared,
    summary: dict[str, Any],
    samples: pd.DataFrame,
    triptych_list: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One block per attack: its rows, worst case, verdicts, figures and examples."""
    from unified_adv.catalogue.attacks import ATTACKS
    from unified_adv.report.attack_figures import distance_figure, security_curve

    out = []
    for plan in prep.plans:
        spec = plan.spec
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
        ball = ATTACKS[spec.name].threat == "ball"
        robust = [e["robust_accuracy"] for e in entries if e["robust_accuracy"] is not None]
        worst_value = [w["robust_accuracy_worst_case"] for w in worst]
        out.append(
            {
                "attack_id": spec.label,
                "attack": spec.name,
                "summary": ATTACKS[spec.name].summary,
                "paper": ATTACKS[spec.name].paper,
                "norm": spec.norm,
                "target": spec.target.describe(),
                "eps_values": [e for e in spec.eps_values if e is not None],
                "entries": entries,
                "dropped": [d for d in summary["dropped_backends"] if d["attack_id"] == spec.label],
                "worst": worst,
                "verdicts": verdicts,
                "lowest_robust": min(worst_value or robust) if (worst_value or robust) else None,
                "distances": distance_figure(rows, spec.norm, ball, e_top),
                "curve": security_curve(entries, worst),
                "triptych": next((t for t in triptych_list if t["attack_id"] == spec.label), None),
            }
        )
    return out


def _report_context(
    prep: Prepared,
    summary: dict[str, Any],
    outcomes: list[UnitOutcome],
    samples: pd.DataFrame,
) -> dict[str, Any]:
    s = prep.scenario
    robust = [a["robust_accuracy"] for a in summary["attacks"] if a["robust_accuracy"] is not None]
    units = [_unit_row(o) for o in outcomes]
    return {
        "title": s.report.title or f"Robustness report: {s.name}",
        "eps_label": eps_label(prep),
        "scenario": {
            "name": s.name,
            "description": s.description,
            "file": s.file,
            "sha256": s.sha256,
            "seed": s.seed,
            "text": s.text,
        },
        "model": {
            **summary["model"],
            "held_out_accuracy": summary["model"].get("held_out_accuracy"),
        },
        "data": summary["data"],
        "results": summary["attacks"],
        "crosscheck": summary["crosscheck"],
        "crosscheck_alpha": s.crosscheck.alpha,
        "findings": summary["findings"],
        "disagreement_figures": disagreement_figures(prep, outcomes, summary["crosscheck"]),
        "worst_robust": min(robust) if robust else None,
        "triptychs": (examples := triptychs(prep, outcomes, s.report.triptychs)),
        "per_attack": _per_attack(prep, summary, samples, examples),
        "units": units,
        "n_failed": sum(1 for u in units if u["status"] != "ok"),
        "errors": [
            {"unit": o.unit.name, "error": o.meta.get("error", "")} for o in outcomes if not o.ok
        ],
        "provenance": summary["provenance"],
        "analyses": summary.get("analyses", []),
        "monitor": summary.get("monitor", []),
    }


def _de_budgets(summary: dict[str, Any]) -> None:
    """State each one-pixel attack's differential-evolution budget beside its result."""
    from unified_adv.analyses.pixelflip import de_budget

    channels = int(summary["model"]["input_shape"][0])
    for a in summary["attacks"]:
        if a["attack"] == "one_pixel":
            p = a["params"]
            a["de_budget"] = de_budget(
                a["backend"], int(p["pixels"]), channels, int(p["steps"]), int(p["popsize"])
            )
    for entry in summary.get("analyses", []):
        for row in entry.get("search_comparison", []):
            match = [a for a in summary["attacks"] if a["attack_id"] == row["attack_id"]]
            budget = next(
                (a.get("de_budget") for a in match if a["backend"] == row["backend"]), None
            )
            row["de_budget"] = budget["text"] if budget else None


def _compare_with_search(summary: dict[str, Any], samples: pd.DataFrame) -> None:
    """Search-based one-pixel attacks vs the exhaustive upper bound on the same images."""
    for entry in summary["analyses"]:
        bound = entry.get("upper_bound") if entry.get("name") == "pixel_flip_study" else None
        if not bound:
            continue
        rows = []
        for a in summary["attacks"]:
            if a["attack"] != "one_pixel" or a["status"] != "ok":
                continue
            mine = samples[
                (samples.attack_id == a["attack_id"]) & (samples.backend == a["backend"])
            ]
            possible = [bound["per_sample"].get(int(s), False) for s in mine["sample"]]
            rows.append(
                {
                    "attack_id": a["attack_id"],
                    "backend": a["backend"],
                    "n": int(len(mine)),
                    "pixels": a["params"].get("pixels"),
                    "success_rate": a["success_rate"],
                    "exhaustive_upper_bound": float(np.mean(possible)) if possible else None,
                    "time_s": a["time_s"],
                }
            )
        entry["search_comparison"] = rows
