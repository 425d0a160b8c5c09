"""The summary's rates as flat tables, written beside ``samples.csv`` as CSV and Parquet:
``attacks`` (every attack × ε × backend, and the worst case across backends), ``per_class``
and ``curves`` (robust accuracy against ε from the minimal attacks' distances). Each row
carries the 95 % interval of its rates as ``*_ci_low`` / ``*_ci_high`` columns, so a CI
pipeline can gate on a lower bound without parsing JSON.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from unified_adv.files import atomic_write_bytes, atomic_write_text

ATTACK_COLUMNS = [
    "attack_id", "attack", "norm", "eps", "eps_text", "backend", "statistic",
    "n_samples", "n_success", "success_rate", "success_rate_ci_low", "success_rate_ci_high",
    "n_evaluated", "n_robust", "robust_accuracy", "robust_accuracy_ci_low",
    "robust_accuracy_ci_high", "median_linf_fooled", "median_l2_fooled", "status",
]  # fmt: skip
CURVE_COLUMNS = [
    "attack_id", "norm", "backend", "eps", "robust_accuracy",
    "robust_accuracy_ci_low", "robust_accuracy_ci_high",
]  # fmt: skip
#: The ``backend`` of the rows that hold the worst case across backends.
WORST_CASE_BACKEND = "worst_case"


def _ci(row: dict[str, Any], name: str, interval: list[float] | None) -> None:
    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = interval or (None, None)


def _attack_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for a in summary["attacks"]:
        row = {k: a.get(k) for k in ATTACK_COLUMNS}
        row["statistic"] = "backend"
        _ci(row, "success_rate", a.get("success_rate_ci"))
        _ci(row, "robust_accuracy", a.get("robust_accuracy_ci"))
        rows.append(row)
    norms = {a["attack_id"]: (a["attack"], a["norm"]) for a in summary["attacks"]}
    for w in summary["crosscheck"]["worst_case"]:
        attack, norm = norms.get(w["attack_id"], (None, None))
        row = {
            "attack_id": w["attack_id"], "attack": attack, "norm": norm, "eps": w["eps"],
            "eps_text": w.get("eps_text"), "backend": WORST_CASE_BACKEND,
            "statistic": w["statistic"], "n_samples": w["n_samples"],
            "success_rate": w["success_rate_any_backend"], "n_evaluated": w.get("n_evaluated"),
            "n_robust": w.get("n_robust"), "robust_accuracy": w["robust_accuracy_worst_case"],
            "status": "ok",
        }  # fmt: skip
        _ci(row, "success_rate", w.get("success_rate_any_backend_ci"))
        _ci(row, "robust_accuracy", w.get("robust_accuracy_ci"))
        rows.append(row)
    return rows


def _per_class_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in summary["per_class"]:
        for c in entry["classes"]:
            row = {
                "attack_id": entry["attack_id"], "eps": entry["eps"],
                "eps_text": entry["eps_text"], "class": c["class"], "name": c["name"],
                "n": c["n"], "n_robust": c["n_robust"], "robust_accuracy": c["robust_accuracy"],
            }  # fmt: skip
            _ci(row, "robust_accuracy", c["robust_accuracy_ci"])
            rows.append(row)
    return rows


def _curve_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in summary["minimal_perturbation"]:
        for norm, curves in entry["curves"].items():
            named = [("best", curves["best"]), *sorted(curves["backends"].items())]
            for backend, c in named:
                points = zip(c["eps"], c["robust_accuracy"], c["robust_accuracy_ci"], strict=True)
                for eps, value, (lo, hi) in points:
                    rows.append(
                        {
                            "attack_id": entry["attack_id"], "norm": norm, "backend": backend,
                            "eps": eps, "robust_accuracy": value,
                            "robust_accuracy_ci_low": lo, "robust_accuracy_ci_high": hi,
                        }
                    )  # fmt: skip
    return rows


def metric_tables(summary: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The tables, by file stem."""
    attacks = pd.DataFrame(_attack_rows(summary), columns=ATTACK_COLUMNS)
    counts = ["n_samples", "n_success", "n_evaluated", "n_robust"]
    attacks[counts] = attacks[counts].astype("Int64")  # a count stays an integer beside a gap
    return {
        "attacks": attacks,
        "per_class": pd.DataFrame(_per_class_rows(summary)),
        "curves": pd.DataFrame(_curve_rows(summary), columns=CURVE_COLUMNS),
    }


def write_tables(out_dir: Path, summary: dict[str, Any]) -> None:
    """Write each table as ``<stem>.csv`` and ``<stem>.parquet`` into ``out_dir``."""
    for stem, table in metric_tables(summary).items():
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        atomic_write_bytes(out_dir / f"{stem}.parquet", buf.getvalue())
        atomic_write_text(out_dir / f"{stem}.csv", table.to_csv(index=False))
