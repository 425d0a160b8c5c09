"""A finished run in MLflow (``pip install 'unified-adv[mlflow]'``).

Logged: the scenario's parameters (and each attack's resolved parameters), clean accuracy,
per attack × ε × backend the robust accuracy, success rate and median distances of the fooled
samples, the worst case across backends per attack × ε and overall; ``index.html``,
``summary.json`` and the per-sample table as artifacts; the model and data fingerprints as
tags. ``mlflow`` is imported only here, only when tracking is asked for (it takes seconds).
A failure to log is one warning line on stderr; the run's own files are already written.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from unified_adv import __version__

ARTIFACTS = ("index.html", "summary.json", "samples.parquet")
#: MLflow's limits per ``log_batch`` call.
MAX_PARAMS, MAX_METRICS = 100, 1000
#: Unless the user's environment sets them: few retries, a short timeout.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
_UNSAFE = re.compile(r"[^\w.\- /:]")


def key(*parts: Any) -> str:
    """An MLflow metric or parameter key (letters, digits, _ - . space : /)."""
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts)


def eps_part(eps: float | None) -> str:
    return "no_eps" if eps is None else f"eps_{eps:.6g}"


def params(summary: dict[str, Any]) -> dict[str, str]:
    """The scenario's parameters and each attack's resolved ones (values cut to 500 chars)."""
    s, d = summary["scenario"], summary["data"]
    out: dict[str, Any] = {
        "scenario": s["name"],
        "scenario_sha256": s.get("sha256"),
        "seed": s.get("seed"),
        "model": summary["model"].get("description"),
        "data": d.get("description"),
        "n_evaluated": d.get("n_evaluated"),
        "only_correct": d.get("only_correct"),
        "unified_adv_version": __version__,
    }
    for a in summary["attacks"]:
        out.setdefault(key(a["attack_id"], "attack"), a["attack"])
        out.setdefault(key(a["attack_id"], "norm"), a["norm"])
        out.setdefault(key(a["attack_id"], "target"), a.get("target"))
        out[key(a["attack_id"], "backends")] = ",".join(
            sorted({b["backend"] for b in summary["attacks"] if b["attack_id"] == a["attack_id"]})
        )
        for name, value in (a.get("params") or {}).items():
            if name != "eps":
                out.setdefault(key(a["attack_id"], name), value)
    return {k: str(v)[:500] for k, v in out.items() if v is not None}


def metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Clean accuracy; per attack × ε × backend; the worst case per attack × ε and overall."""
    out = {"clean_accuracy": float(summary["data"]["clean_accuracy"])}
    lowest: list[float] = []
    for a in summary["attacks"]:
        where = (a["attack_id"], eps_part(a["eps"]), a["backend"])
        for name in ("robust_accuracy", "success_rate", "median_linf_fooled", "median_l2_fooled"):
            if a.get(name) is not None:
                out[key(name, *where)] = float(a[name])
    worst = {(w["attack_id"], w["eps"]): w for w in summary["crosscheck"]["worst_case"]}
    for a in summary["attacks"]:
        w = worst.get((a["attack_id"], a["eps"]))
        value = w["robust_accuracy_worst_case"] if w else a.get("robust_accuracy")
        if value is not None and a["eps"] is not None:
            out[key("robust_accuracy_worst_case", a["attack_id"], eps_part(a["eps"]))] = float(
                value
            )
            lowest.append(float(value))
    if lowest:
        out["robust_accuracy_worst_case/overall"] = min(lowest)
    return out


def tags(summary: dict[str, Any]) -> dict[str, str]:
    return {
        "model_fingerprint": str(summary["model"].get("fingerprint", "")),
        "data_fingerprint": str(summary["data"].get("fingerprint", "")),
        "scenario": str(summary["scenario"]["name"]),
        "tool": f"unified-adv {__version__}",
    }


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _log(client: Any, run_id: str, out_dir: Path, summary: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    for chunk in _chunks([Param(k, v) for k, v in params(summary).items()], MAX_PARAMS):
        client.log_batch(run_id, params=chunk)
    ms = [Metric(k, v, now, 0) for k, v in metrics(summary).items()]
    for chunk in _chunks(ms, MAX_METRICS):
        client.log_batch(run_id, metrics=chunk)
    for name in ARTIFACTS:
        if (out_dir / name).is_file():
            client.log_artifact(run_id, str(out_dir / name))


def log_run(out_dir: Path, summary: dict[str, Any], uri: str, experiment: str) -> str | None:
    """Log the finished run in ``out_dir`` to MLflow at ``uri``; its MLflow run id, or None
    after one warning line on stderr when anything failed."""
    run_id = None
    client: Any = None
    try:
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses file stores unless asked; a file: URI given here is that ask.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # An unreachable server fails in seconds, not after MLflow's default backoff (minutes).
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(
            exp_id, run_name=str(summary["scenario"]["name"]), tags=tags(summary)
        )
        run_id = run.info.run_id
        _log(client, run_id, out_dir, summary)
        client.set_terminated(run_id)
        return str(run_id)
    except Exception as exc:  # any tracker failure is a warning, never fatal
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        why = (
            "mlflow is not installed (pip install 'unified-adv[mlflow]')"
            if isinstance(exc, ImportError)
            else f"{type(exc).__name__}: {first}"
        )
        print(
            f"warning: MLflow logging to {uri} failed ({why}); the run's files are kept in {out_dir}",
            file=sys.stderr,
        )
        if run_id is not None:
            with contextlib.suppress(Exception):  # the warning above says it all
                client.set_terminated(run_id, status="FAILED")
        return None
