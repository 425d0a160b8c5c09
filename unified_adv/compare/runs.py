"""A finished run read back from its folder: summary, per-sample table, rows by canonical key.

A *row* is one attack × ε × backend × defence evaluation of a run; its canonical key does not
depend on the order the scenario listed things in, so two runs' rows match by key. Each row
carries the per-sample robustness vector the paired comparison needs. The *worst case* row of
an attack × ε (× defence) counts a sample as robust only if no backend fooled it
(:data:`unified_adv.evaluate.results.WORST_CASE`); for a random corruption it is the mean over
the backends (:data:`~unified_adv.evaluate.results.NOISE_CASE`), as in the run's own summary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import binomtest

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.errors import InputError
from unified_adv.evaluate.metrics import CI_LEVEL, proportion_ci
from unified_adv.evaluate.results import NOISE_CASE, WORST_CASE, robust_by_sample
from unified_adv.evaluate.summary import SUMMARY_SCHEMA
from unified_adv.run.outdir import is_run_folder

#: Confidence of every interval in ``compare`` and ``check``: the run's own (evaluate.metrics).
CONFIDENCE = CI_LEVEL
#: The backend column of a worst-case row.
WORST = "worst case"
GROUP = ["attack_id", "attack", "norm", "eps", "backend", "defence", "evaluation"]


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def eps_key(eps: Any) -> float | None:
    """ε as a key: None for minimal-perturbation attacks, else rounded to 10 digits."""
    if eps is None or (isinstance(eps, float) and math.isnan(eps)):
        return None
    return float(f"{float(eps):.10g}")


@dataclass
class Row:
    """One attack × ε × backend × defence evaluation of a run."""

    attack_id: str
    attack: str
    norm: str
    eps: float | None
    eps_text: str
    backend: str
    defence: str
    evaluation: str
    scope: int  #: samples evaluated (the robust-accuracy denominator)
    robust: pd.Series | None  #: per sample id: robust (absent sample: not robust)
    robust_accuracy: float | None
    ci: list[float] | None = None
    statistic: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        where = "" if self.defence == "none" else f" [{self.defence}, {self.evaluation}]"
        return f"{self.attack_id} ({self.attack}/{self.norm}) @ {self.eps_text} · {self.backend}{where}"

    @property
    def worst(self) -> bool:
        return self.backend == WORST

    @property
    def paired_ok(self) -> bool:
        """Per-sample robustness is known (not a mean over noise draws, not a failed row)."""
        return self.robust is not None and self.robust_accuracy is not None

    def describe(self) -> dict[str, Any]:
        return {
            "attack_id": self.attack_id,
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "eps_text": self.eps_text,
            "backend": self.backend,
            "defence": self.defence,
            "evaluation": self.evaluation,
        }


@dataclass
class RunFolder:
    """A finished run: its folder, ``summary.json`` and per-sample table."""

    folder: Path
    summary: dict[str, Any]
    samples: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.summary["scenario"]["name"])

    def fingerprint(self, part: str) -> str:
        return str(self.summary.get(part, {}).get("fingerprint", ""))

    def describe(self) -> dict[str, Any]:
        s, m, d = self.summary["scenario"], self.summary["model"], self.summary["data"]
        return {
            "folder": str(self.folder),
            "scenario": s["name"],
            "scenario_sha256": s.get("sha256"),
            "model": m.get("description"),
            "model_fingerprint": m.get("fingerprint"),
            "data": d.get("description"),
            "data_fingerprint": d.get("fingerprint"),
            "n_evaluated": d.get("n_evaluated"),
            "clean_accuracy": d.get("clean_accuracy"),
            "version": self.summary.get("provenance", {}).get("versions", {}).get("unified-adv"),
            "finished": self.summary.get("provenance", {}).get("finished"),
        }


def load_run(folder: str | Path) -> RunFolder:
    """The run in ``folder``; an :class:`InputError` (one line) when it is not a usable run."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError.one(str(folder), "", "not a folder (give a run's output folder)")
    if not is_run_folder(path) or not (path / "summary.json").is_file():
        raise InputError.one(
            str(folder), "", "not a finished unified-adv run (no summary.json): run it first"
        )
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError.one(str(path / "summary.json"), "", f"unreadable: {exc}") from None
    version = summary.get("schema_version") if isinstance(summary, dict) else None
    if version != SUMMARY_SCHEMA:
        raise InputError.one(
            str(path / "summary.json"),
            "schema_version",
            f"is {version!r}; this unified-adv reads schema_version {SUMMARY_SCHEMA}",
        )
    return RunFolder(path, summary, _samples(path))


def _samples(path: Path) -> pd.DataFrame:
    try:
        if (path / "samples.parquet").is_file():
            return pd.read_parquet(path / "samples.parquet")
        return pd.read_csv(path / "samples.csv")
    except (OSError, ValueError) as exc:
        raise InputError.one(str(path), "samples", f"per-sample table unreadable: {exc}") from None


def _eps_text(eps: float | None, given: Any) -> str:
    if eps is None:
        return "no ε"
    return str(given) if given else f"{eps:g}"


def _vectors(samples: pd.DataFrame) -> dict[tuple[Any, ...], pd.Series]:
    """Per-sample robustness of every attack × ε × backend × defence in the table."""
    if samples.empty:
        return {}
    out = {}
    for key, rows in samples.groupby(GROUP, dropna=False, sort=False):
        k = tuple(key)
        out[(*k[:3], eps_key(k[3]), *k[4:])] = robust_by_sample(rows)
    return out


def backend_rows(run: RunFolder) -> list[Row]:
    """Every backend row: the summary's attack rows, and the defended evaluations in the table."""
    vectors = _vectors(run.samples)
    scope = {a["attack_id"]: int(a["n_evaluated"]) for a in run.summary["attacks"]}
    texts = {(a["attack_id"], eps_key(a["eps"])): a.get("eps_text") for a in run.summary["attacks"]}
    out = []
    for a in run.summary["attacks"]:
        eps = eps_key(a["eps"])
        ra = a["robust_accuracy"] if a.get("status") == "ok" else None
        vec = vectors.get(
            (a["attack_id"], a["attack"], a["norm"], eps, a["backend"], "none", "undefended")
        )
        ci = a.get("robust_accuracy_ci") or (
            proportion_ci(round(ra * a["n_evaluated"]), a["n_evaluated"])
            if ra is not None
            else None
        )
        out.append(
            Row(
                a["attack_id"],
                a["attack"],
                a["norm"],
                eps,
                _eps_text(eps, a.get("eps_text")),
                a["backend"],
                "none",
                "undefended",
                int(a["n_evaluated"]),
                vec,
                ra,
                ci,
                extra={
                    "success_rate": a.get("success_rate"),
                    "median_linf_fooled": a.get("median_linf_fooled"),
                    "median_l2_fooled": a.get("median_l2_fooled"),
                },
            )
        )
    for (attack_id, attack, norm, eps, backend, defence, evaluation), vec in vectors.items():
        if defence == "none" or attack_id not in scope:
            continue
        n = scope[attack_id]
        k = int(vec.sum())
        out.append(
            Row(
                attack_id,
                attack,
                norm,
                eps,
                _eps_text(eps, texts.get((attack_id, eps))),
                backend,
                defence,
                evaluation,
                n,
                vec,
                k / n,
                proportion_ci(k, n),
            )
        )
    return out


def _summary_worst(run: RunFolder) -> dict[tuple[str, float | None], dict[str, Any]]:
    return {(w["attack_id"], eps_key(w["eps"])): w for w in run.summary["crosscheck"]["worst_case"]}


def worst_rows(rows: list[Row], run: RunFolder) -> list[Row]:
    """Per attack × ε × defence: the worst case across its backends (one backend: itself)."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault(
            (r.attack_id, r.attack, r.norm, r.eps, r.defence, r.evaluation), []
        ).append(r)
    stored = _summary_worst(run)
    out = []
    for (attack_id, attack, norm, eps, defence, evaluation), mine in groups.items():
        first = mine[0]
        worst = Row(
            attack_id,
            attack,
            norm,
            eps,
            first.eps_text,
            WORST,
            defence,
            evaluation,
            first.scope,
            None,
            None,
            statistic=WORST_CASE,
            extra={"backends": sorted(r.backend for r in mine)},
        )
        if all(r.robust_accuracy is not None for r in mine):
            if attack in ATTACKS and ATTACKS[attack].threat == "noise":
                worst.statistic = NOISE_CASE
                worst.robust_accuracy = sum(r.robust_accuracy or 0.0 for r in mine) / len(mine)
            elif all(r.robust is not None for r in mine):
                index = sorted(
                    set().union(*(set(r.robust.index) for r in mine if r.robust is not None))
                )
                robust = pd.Series(True, index=index)
                for r in mine:
                    assert r.robust is not None
                    robust &= r.robust.reindex(index, fill_value=False).astype(bool)
                worst.robust = robust
                worst.robust_accuracy = int(robust.sum()) / first.scope
        if worst.robust_accuracy is not None:
            given = stored.get((attack_id, eps), {}) if defence == "none" else {}
            worst.ci = given.get("robust_accuracy_ci") or proportion_ci(
                round(worst.robust_accuracy * first.scope), first.scope
            )
        out.append(worst)
    return out


def all_rows(run: RunFolder) -> dict[str, Row]:
    """A run's rows by canonical key: each backend's and each worst case."""
    rows = backend_rows(run)
    return {r.key: r for r in rows + worst_rows(rows, run)}
