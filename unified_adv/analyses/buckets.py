"""Confidence bucketing (Possas): are confident predictions harder to perturb?

Correctly classified samples are bucketed by the model's top-1 softmax confidence on the
clean input, then attacked with {fast = FGSM, iterative = BIM} × {inverse = untargeted,
least likely = towards the k-th ranked class of the clean prediction}. Per bucket: top-1
error (the adversarial top-1 is not the label) and top-5 error (the label is not among the
adversarial top-5), with Wilson 95 % intervals — the layout of the paper's Table 1.

Bucket boundaries, exactly: ``paper`` mode, thresholds (t1, t2) = (0.15, 0.30):
low = conf < t1, medium = t1 ≤ conf < t2, high = conf ≥ t2. ``quantile`` mode: the
confidences' quantiles split the samples into equal-sized buckets; a sample equal to an
inner edge goes to the upper bucket (``searchsorted(..., side="right")``).

Confidences are ranked as float64 log-probabilities (``log_softmax`` of the float64
logits): a confident model's float32 softmax rounds many of them to exactly 1.0, and those
ties would all land on one side of a quantile edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from unified_adv.adapters import Adapter, AttackRequest, adapter_class, backends_with
from unified_adv.analyses.base import AnalysisContext, AnalysisOutput, AnalysisUnit
from unified_adv.catalogue.attacks import ATTACKS, madry_step
from unified_adv.evaluate.crosscheck import wilson
from unified_adv.run.prepared import Prepared
from unified_adv.run.units import unit_seed
from unified_adv.scenario.schema import AnalysisSpec

METHODS = (
    ("fast", "inverse", "fgsm"),
    ("fast", "least_likely", "fgsm"),
    ("iterative", "inverse", "bim"),
    ("iterative", "least_likely", "bim"),
)
PAPER_THRESHOLDS = (0.15, 0.30)


def bucket_names(mode: str, count: int) -> list[str]:
    if mode == "paper" or count == 3:
        return ["low", "medium", "high"]
    return [f"q{i + 1}" for i in range(count)]


def log_confidence(logits: np.ndarray) -> np.ndarray:
    """Top-1 log-probability per sample, in float64 (no ties from float32 rounding)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return -np.log(np.exp(z).sum(axis=1))  # log softmax of the top class (its z is 0)


def assign_buckets(
    log_conf: np.ndarray,
    mode: str,
    thresholds: tuple[float, float] = PAPER_THRESHOLDS,
    count: int = 3,
) -> tuple[np.ndarray, list[float]]:
    """Bucket index per sample (0 = least confident) and the inner edges used, as
    probabilities. ``log_conf``: float64 top-1 log-probabilities (:func:`log_confidence`)."""
    log_conf = np.asarray(log_conf, dtype=np.float64)
    if mode == "paper":
        log_edges = np.log(np.asarray(thresholds, dtype=np.float64))
    else:
        log_edges = np.quantile(log_conf, np.linspace(0, 1, count + 1)[1:-1])
    bucket = np.searchsorted(log_edges, log_conf, side="right").astype(np.int64)
    return bucket, [float(e) for e in np.exp(log_edges)]


def bucket_notes(
    log_conf: np.ndarray, bucket: np.ndarray, names: list[str], mode: str
) -> list[str]:
    """Plain statements about empty or degenerate buckets, for the report."""
    notes = []
    counts = [int((bucket == b).sum()) for b in range(len(names))]
    full = [n for n, c in zip(names, counts, strict=True) if c]
    if len(full) == 1 and len(log_conf):
        notes.append(
            f"degenerate: all {len(log_conf)} samples are in '{full[0]}'; the other buckets "
            "are empty and no comparison between buckets is possible"
        )
    else:
        notes += [f"'{n}' is empty" for n, c in zip(names, counts, strict=True) if not c]
    if mode != "paper" and len(log_conf):
        low = float(np.exp(log_conf.min()))
        if low >= PAPER_THRESHOLDS[1]:
            notes.append(
                f"every sample has confidence >= {low:.3g}: all buckets are 'high' by the paper's "
                f"thresholds, so '{names[0]}' means low within >= {low:.3g}, not low confidence"
            )
    return notes


def _topk_errors(logits: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ranked = np.argsort(-logits, axis=1, kind="stable")
    top1 = ranked[:, 0] != labels
    top5 = ~(ranked[:, : min(k, logits.shape[1])] == labels[:, None]).any(1)
    return top1, top5


def run_method(
    adapter: Adapter,
    attack: str,
    targeted: bool,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray,
    eps: float,
    steps: int,
    step_size: float,
    seed: int,
) -> np.ndarray:
    params = (
        ATTACKS[attack].resolve(eps, {"steps": steps, "step_size": step_size})
        if attack == "bim"
        else {}
    )
    request = AttackRequest(attack=attack, norm="linf", eps=eps, params=params, targeted=targeted)
    out = adapter.generate(request, x, y, targets if targeted else None, seed=seed)
    return out.x_adv


def method_backends(requested: tuple[str, ...] | None, attack: str, targeted: bool) -> list[str]:
    mode = "least_likely" if targeted else "untargeted"
    # The error of the point after the last step: adv-lib's BIM returns the input where the
    # target was not reached, secml-torch's its highest-loss point (Capability.last_point).
    return list(backends_with(attack, "linf", mode, among=requested, last_point=True))


def table(
    adv_logits: dict[tuple[str, str], np.ndarray],
    labels: np.ndarray,
    bucket: np.ndarray,
    names: list[str],
    top_k: int = 5,
) -> list[dict[str, Any]]:
    """One row per method × gradient: top-1 and top-5 error per bucket, with intervals."""
    rows = []
    for (method, gradient), logits in adv_logits.items():
        top1, top5 = _topk_errors(logits, labels, top_k)
        cells = {}
        for b, name in enumerate(names):
            m = bucket == b
            n = int(m.sum())
            e1, e5 = int(top1[m].sum()), int(top5[m].sum())
            cells[name] = {
                "n": n,
                "top1": e1 / n if n else None,
                "top1_ci": wilson(e1, n) if n else None,
                "top5": e5 / n if n else None,
                "top5_ci": wilson(e5, n) if n else None,
            }
        rows.append(
            {
                "method": method,
                "gradient": gradient,
                "buckets": cells,
                "top1_all": float(top1.mean()) if len(top1) else None,
                "top5_all": float(top5.mean()) if len(top5) else None,
            }
        )
    return rows


def paper_findings(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Which of the paper's four findings hold here, each with its evidence."""
    by = {(r["method"], r["gradient"]): r for r in rows}
    low, high = names[0], names[-1]

    def err(method: str, gradient: str, bucket: str, which: str = "top1") -> float | None:
        row = by.get((method, gradient))
        return None if row is None else row["buckets"][bucket][which]

    out = []
    pairs: list[tuple[float, float, str]] = []
    for m, g, _ in METHODS:
        lo_err, hi_err = err(m, g, low), err(m, g, high)
        if lo_err is not None and hi_err is not None and low != high:
            pairs.append((lo_err, hi_err, f"{m}/{g}"))
    out.append(
        {
            "finding": "low confidence is more vulnerable",
            "holds": all(lo >= hi for lo, hi, _ in pairs) if pairs else None,
            "evidence": "; ".join(
                f"{w}: top-1 error {lo:.1%} ({low}) vs {hi:.1%} ({high})" for lo, hi, w in pairs
            ),
        }
    )
    comps = []
    for m in ("fast", "iterative"):
        for b in names:
            a, c = err(m, "inverse", b), err(m, "least_likely", b)
            if a is not None and c is not None:
                comps.append((a, c, f"{m}/{b}"))
    out.append(
        {
            "finding": "inverse beats least likely",
            "holds": all(a >= c for a, c, _ in comps) if comps else None,
            "evidence": "; ".join(f"{w}: {a:.1%} vs {c:.1%}" for a, c, w in comps),
        }
    )
    comps = []
    for g in ("inverse", "least_likely"):
        for b in names:
            it, fa = err("iterative", g, b), err("fast", g, b)
            if it is not None and fa is not None:
                comps.append((it, fa, f"{g}/{b}"))
    out.append(
        {
            "finding": "iterative is at least as strong as fast",
            "holds": all(it >= fa for it, fa, _ in comps) if comps else None,
            "evidence": "; ".join(f"{w}: {it:.1%} vs {fa:.1%}" for it, fa, w in comps),
        }
    )
    gaps = [
        (r["top1_all"], r["top5_all"], f"{r['method']}/{r['gradient']}")
        for r in rows
        if r["top1_all"] is not None
    ]
    out.append(
        {
            "finding": "top-5 error is well below top-1 error",
            "holds": all(t5 < t1 for t1, t5, _ in gaps) if gaps else None,
            "evidence": "; ".join(f"{w}: top-1 {t1:.1%}, top-5 {t5:.1%}" for t1, t5, w in gaps),
        }
    )
    return out


def backend_spread(tables: dict[str, list[dict[str, Any]]]) -> float | None:
    """Largest difference in any top-1 error cell between two backends."""
    cells: dict[tuple[str, str, str], list[float]] = {}
    for rows in tables.values():
        for r in rows:
            for b, c in r["buckets"].items():
                if c["top1"] is not None:
                    cells.setdefault((r["method"], r["gradient"], b), []).append(c["top1"])
    spreads = [max(v) - min(v) for v in cells.values() if len(v) > 1]
    return max(spreads) if spreads else None


# --------------------------------------------------------------------------- the analysis


@dataclass
class Settings:
    """The analysis's parameters with the defaults filled in."""

    mode: str
    count: int
    thresholds: tuple[float, float]
    eps: float
    steps: int
    step_size: float
    k: int

    @classmethod
    def of(cls, prep: Prepared, spec: AnalysisSpec) -> Settings:
        lo, hi = prep.model.wrapper.input_range
        mode = spec.mode or "paper"
        eps = spec.eps if spec.eps is not None else 0.1 * (hi - lo)
        steps = spec.steps or 10
        return cls(
            mode=mode,
            count=3 if mode == "paper" else (spec.buckets or 3),
            thresholds=spec.thresholds or PAPER_THRESHOLDS,
            eps=eps,
            steps=steps,
            step_size=spec.step_size if spec.step_size is not None else madry_step(eps, steps),
            k=min(spec.k or 5, prep.num_classes),
        )

    def params(self, attack: str, gradient: str) -> tuple[tuple[str, Any], ...]:
        return (
            ("attack", attack),
            ("eps", self.eps),
            ("gradient", gradient),
            ("k", self.k),
            ("step_size", self.step_size),
            ("steps", self.steps),
        )


def _attack_logits(
    prep: Prepared, backend: str, attack: str, targeted: bool, batch: tuple[Any, ...],
    st: Settings, seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # fmt: skip
    x, y, targets = batch
    adapter = adapter_class(backend)(model=prep.model.wrapper)
    x_adv = run_method(
        adapter, attack, targeted, x, y, targets, st.eps, st.steps, st.step_size, seed
    )
    return {"adv_logits": prep.model.wrapper.logits(x_adv)}, {}


def _attack_all(
    ctx: AnalysisContext, index: int, spec: AnalysisSpec, st: Settings, positions: np.ndarray
) -> tuple[dict[str, dict[tuple[str, str], np.ndarray]], dict[str, list[str]]]:
    """Every (method, gradient) on every backend that has it: adversarial logits per backend."""
    prep = ctx.prep
    x, y = prep.data.x[positions], prep.data.y[positions]
    ranked = np.argsort(-prep.clean_logits[positions], axis=1, kind="stable")
    targets = ranked[:, st.k - 1].astype(np.int64)  # the lowest-ranked of the top-k
    seed = unit_seed(prep.scenario.seed, 2000 + index, 0, 0)
    context = f"{prep.model.fingerprint}:{prep.data.fingerprint}"
    per_backend: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    ran: dict[str, list[str]] = {}
    for method, gradient, attack in METHODS:
        targeted = gradient == "least_likely"
        for backend in method_backends(spec.backends, attack, targeted):
            unit = AnalysisUnit(
                index, spec.label, "confidence_buckets", "final", backend,
                st.params(attack, gradient), seed, context, variant=f"{method}-{gradient}",
            )  # fmt: skip
            arrays, _ = ctx.store.cached(
                unit,
                partial(_attack_logits, prep, backend, attack, targeted, (x, y, targets), st, seed),
            )
            per_backend.setdefault(backend, {})[(method, gradient)] = arrays["adv_logits"]
            ran.setdefault(f"{method}/{gradient}", []).append(backend)
    return per_backend, ran


def _bucket_stats(conf: np.ndarray, bucket: np.ndarray, names: list[str]) -> dict[str, Any]:
    return {
        "bucket_counts": {n: int((bucket == i).sum()) for i, n in enumerate(names)},
        "bucket_ranges": {
            n: [float(conf[bucket == i].min()), float(conf[bucket == i].max())]
            if (bucket == i).any()
            else None
            for i, n in enumerate(names)
        },
    }


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """Possas's Table 1 on the final model: correctly classified samples only."""
    prep = ctx.prep
    st = Settings.of(prep, spec)
    positions = np.flatnonzero(prep.correct)
    y = prep.data.y[positions]
    log_conf = log_confidence(prep.clean_logits[positions])
    conf = np.exp(log_conf)
    bucket, edges = assign_buckets(log_conf, st.mode, st.thresholds, st.count)
    names = bucket_names(st.mode, st.count)
    per_backend, ran = _attack_all(ctx, index, spec, st, positions)
    tables = {b: table(d, y, bucket, names, st.k) for b, d in per_backend.items()}
    primary = sorted(tables, key=lambda b: -len(per_backend[b]))[0] if tables else None
    quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
    return AnalysisOutput(
        {
            "id": spec.label,
            "name": "confidence_buckets",
            "mode": st.mode,
            "edges": edges,
            "bucket_names": names,
            "eps": st.eps,
            "steps": st.steps,
            "step_size": st.step_size,
            "k": st.k,
            "n_samples": int(len(positions)),
            **_bucket_stats(conf, bucket, names),
            "bucket_notes": bucket_notes(log_conf, bucket, names, st.mode),
            "ranking": "float64 log-probabilities",
            "confidence_quantiles": {str(q): float(np.quantile(conf, q)) for q in quantiles}
            if len(conf)
            else {},
            "backends_per_method": ran,
            "tables": tables,
            "primary_backend": primary,
            "paper_findings": paper_findings(tables[primary], names) if primary else [],
            "backend_spread": backend_spread(tables),
        }
    )
