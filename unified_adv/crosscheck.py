"""Cross-check: do the backends agree on the same attack, sample by sample, and why not.

For every attack × ε run on two or more backends, each pair of backends is compared
on the same samples and targets: success agreement, prediction agreement, the
largest pixel difference, distances, and the paired difference in success rate
(Newcombe's interval, McNemar's exact test). A verdict follows:

* ``identical`` — bit-equal adversarial examples;
* ``equivalent`` — within the attack family's tolerance, same per-sample outcomes;
* ``statistically consistent`` — a randomised attack (random start, black-box search,
  noise) whose success rates do not differ significantly;
* ``divergent`` — anything else; explained from the recorded semantics of each call.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from .attacks import ATTACKS
from .results import success_mask
from .runner import Prepared, UnitOutcome

VERDICTS = ("identical", "equivalent", "statistically consistent", "divergent")

#: Largest pixel difference still called "equivalent", per attack (input units).
DEFAULT_TOLERANCE = {
    "fgsm": 1e-5,
    "bim": 1e-5,
    "pgd": 1e-5,
    "mifgsm": 1e-5,
    "deepfool": 1e-4,
    "cw_l2": 1e-4,
}
FALLBACK_TOLERANCE = 1e-4


def is_randomised(attack: str, params: dict[str, Any]) -> bool:
    """Attacks whose result depends on random draws, so backends cannot agree sample by sample."""
    spec = ATTACKS[attack]
    return spec.black_box or attack == "universal" or bool(params.get("random_starts", 0))


@dataclass
class PairResult:
    attack_id: str
    attack: str
    norm: str
    eps: float | None
    backends: tuple[str, str]
    n: int
    both_fooled: int
    neither: int
    only_first: int
    only_second: int
    success_rates: tuple[float, float]
    rate_difference: float
    rate_difference_ci: tuple[float, float]
    mcnemar_p: float
    same_adv_pred: float
    max_pixel_diff: float
    median_distances: dict[str, tuple[float, float]]
    tolerance: float
    randomised: bool
    verdict: str
    explanation: list[str] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backends"] = list(self.backends)
        return d


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval for k successes in n (scipy), exact 0 / 1 at the ends."""
    if n == 0:
        return (0.0, 1.0)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (0.0 if k == 0 else float(ci.low), 1.0 if k == n else float(ci.high))


def paired_difference_ci(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe (1998, method 10): CI for p1 - p2 from paired outcomes.

    a: both succeed, b: only the first, c: only the second, d: neither.
    """
    n = a + b + c + d
    if n == 0:
        return (-1.0, 1.0)
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    denom = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = (a * d - b * c) / denom if denom > 0 else 0.0
    delta = p1 - p2
    lo = delta - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    hi = delta + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return (max(-1.0, lo), min(1.0, hi))


def mcnemar_exact(b: int, c: int) -> float:
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def _collect(outcomes: list[UnitOutcome]) -> dict[tuple[int, int], dict[str, list[UnitOutcome]]]:
    by_key: dict[tuple[int, int], dict[str, list[UnitOutcome]]] = {}
    for o in outcomes:
        if o.ok:
            key = (o.unit.attack_index, o.unit.eps_index)
            by_key.setdefault(key, {}).setdefault(o.unit.backend, []).append(o)
    return by_key


def _stack(prep: Prepared, units: list[UnitOutcome], shards: set[int]) -> dict[str, Any]:
    """One backend's results for one attack × ε, shards concatenated in order."""
    chosen = sorted(
        (o for o in units if o.unit.shard_index in shards), key=lambda o: o.unit.shard_index
    )
    arrays = [o.arrays for o in chosen if o.arrays is not None]
    cat: dict[str, Any] = {
        k: np.concatenate([a[k] for a in arrays])
        for k in ("positions", "x_adv", "adv_logits", "target")
    }
    cat["backend_failed"] = np.concatenate(
        [a.get("backend_failed", np.zeros(len(a["positions"]), dtype=np.bool_)) for a in arrays]
    )
    cat["success"] = success_mask(prep.data.y[cat["positions"]], cat)
    cat["calls"] = chosen[0].meta.get("library_call", {})
    cat["defence"] = chosen[0].unit.defence
    cat["note"] = chosen[0].meta.get("note", "")
    return cat


def _explain(first: str, second: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Name the recorded semantics that differ, then the libraries' known quirks."""
    sem_a, sem_b = a["calls"].get("semantics", {}), b["calls"].get("semantics", {})
    lines = []
    for key in sorted(set(sem_a) | set(sem_b)):
        va, vb = sem_a.get(key, "not set"), sem_b.get(key, "not set")
        if isinstance(va, float) and isinstance(vb, float) and math.isclose(va, vb, rel_tol=1e-12):
            continue
        if va != vb:
            lines.append(f"{key} differs: {first} {va!r}, {second} {vb!r}")
    known = [f"{name}: {note}" for name, note in ((first, a["note"]), (second, b["note"])) if note]
    if lines:
        lines.insert(0, "Recorded arguments and behaviour that differ:")
    if known:
        lines.append("Known library differences: " + " | ".join(known))
    if not lines:
        lines.append(
            "No recorded argument differs and no known library difference explains this: "
            "worth investigating (see the disagreement list)."
        )
    return lines


def compare_pair(
    prep: Prepared,
    a_i: int,
    e_i: int,
    first: str,
    second: str,
    a: dict[str, Any],
    b: dict[str, Any],
    tolerance: float,
    alpha: float,
) -> PairResult:
    plan = prep.plans[a_i]
    spec = plan.spec
    eps = spec.eps_values[e_i]
    if not np.array_equal(a["positions"], b["positions"]) or not np.array_equal(
        a["target"], b["target"]
    ):
        raise RuntimeError(
            f"{spec.label}: {first} and {second} ran on different samples or targets"
        )
    x = prep.data.x[a["positions"]]
    n = len(x)
    diff = (
        np.abs(a["x_adv"].astype(np.float64) - b["x_adv"].astype(np.float64)).reshape(n, -1).max(1)
    )
    sa, sb = a["success"], b["success"]
    both, neither = int((sa & sb).sum()), int((~sa & ~sb).sum())
    only_a, only_b = int((sa & ~sb).sum()), int((~sa & sb).sum())
    pa, pb = a["adv_logits"].argmax(1), b["adv_logits"].argmax(1)
    dist: dict[str, tuple[float, float]] = {}
    for name, fn in (
        ("linf", lambda d: np.abs(d).max(1)),
        ("l2", lambda d: np.linalg.norm(d, axis=1)),
        ("mae", lambda d: np.abs(d).mean(1)),
    ):
        da = fn((a["x_adv"] - x).reshape(n, -1).astype(np.float64))
        db = fn((b["x_adv"] - x).reshape(n, -1).astype(np.float64))
        dist[name] = (float(np.median(da)), float(np.median(db)))
    p_value = mcnemar_exact(only_a, only_b)
    randomised = is_randomised(spec.name, spec.resolved_params(eps))
    if a.get("defence") and prep.variants[a["defence"]].randomized:
        randomised = True  # the defended model itself draws random numbers
    worst = float(diff.max(initial=0.0))
    if worst == 0.0:
        verdict = "identical"
    elif worst <= tolerance and only_a == only_b == 0:
        verdict = "equivalent"
    elif randomised and p_value >= alpha:
        verdict = "statistically consistent"
    else:
        verdict = "divergent"
    explanation = _explain(first, second, a, b) if verdict == "divergent" else []
    if verdict == "divergent" and randomised:
        explanation.insert(
            0, f"Success rates differ significantly (McNemar p = {p_value:.3g} < {alpha})."
        )
    elif verdict == "divergent":
        explanation.insert(
            0,
            f"A deterministic attack, yet the results differ by up to {worst:.3g} "
            f"(tolerance {tolerance:g}) and {only_a + only_b} samples change outcome.",
        )
    order = np.argsort(-diff, kind="stable")
    disagree = [int(i) for i in order if sa[i] != sb[i] or pa[i] != pb[i]][:20]
    return PairResult(
        attack_id=spec.label,
        attack=spec.name,
        norm=spec.norm,
        eps=eps,
        backends=(first, second),
        n=n,
        both_fooled=both,
        neither=neither,
        only_first=only_a,
        only_second=only_b,
        success_rates=(float(sa.mean()) if n else 0.0, float(sb.mean()) if n else 0.0),
        rate_difference=float(sa.mean() - sb.mean()) if n else 0.0,
        rate_difference_ci=paired_difference_ci(both, only_a, only_b, neither),
        mcnemar_p=p_value,
        same_adv_pred=float((pa == pb).mean()) if n else 1.0,
        max_pixel_diff=worst,
        median_distances=dist,
        tolerance=tolerance,
        randomised=randomised,
        verdict=verdict,
        explanation=explanation,
        disagreements=[
            {
                "position": int(a["positions"][i]),
                "sample": int(prep.data.index[a["positions"][i]]),
                "label": int(prep.data.y[a["positions"][i]]),
                "target": int(a["target"][i]),
                f"{first}_pred": int(pa[i]),
                f"{second}_pred": int(pb[i]),
                f"{first}_success": bool(sa[i]),
                f"{second}_success": bool(sb[i]),
                "pixel_diff": float(diff[i]),
                "row": int(i),
            }
            for i in disagree
        ],
    )


def _robust(right: np.ndarray, pos: np.ndarray) -> int:
    """Samples robust in ``right``; one repeated for several targets must survive all."""
    return sum(1 for p in set(pos.tolist()) if right[pos == p].all())


def worst_case(
    prep: Prepared, stacks: dict[str, dict[str, Any]], a_i: int, e_i: int
) -> dict[str, Any]:
    """Per sample, robust only if no backend fooled it (``defended.WORST_CASE``, the one
    definition used everywhere). A random corruption is not unioned (``defended.NOISE_CASE``):
    its value is the mean of the backends' robust accuracies."""
    from .attacks import ATTACKS
    from .defended import NOISE_CASE, WORST_CASE

    plan = prep.plans[a_i]
    backends = sorted(stacks)
    pos = stacks[backends[0]]["positions"]
    still_right = np.ones(len(pos), bool)
    fooled_any = np.zeros(len(pos), bool)
    per_backend = {}
    for name in backends:
        s = stacks[name]
        right = s["adv_logits"].argmax(1) == prep.data.y[s["positions"]]
        still_right &= right
        fooled_any |= s["success"]
        per_backend[name] = float(s["success"].mean()) if len(pos) else 0.0
    robust_samples = _robust(still_right, pos)
    correct = prep.correct
    attacked = np.zeros(len(correct), bool)
    attacked[pos] = True
    unattacked_correct = int((correct & ~attacked)[: plan.scope].sum())
    value = (robust_samples + unattacked_correct) / plan.scope
    statistic = WORST_CASE
    if ATTACKS[plan.spec.name].threat == "noise":
        statistic = NOISE_CASE
        rights = [
            stacks[n]["adv_logits"].argmax(1) == prep.data.y[stacks[n]["positions"]]
            for n in backends
        ]
        value = float(
            np.mean([(_robust(r, pos) + unattacked_correct) / plan.scope for r in rights])
        )
    return {
        "attack_id": plan.spec.label,
        "eps": plan.spec.eps_values[e_i],
        "backends": backends,
        "n_samples": int(len(pos)),
        "success_rate_any_backend": float(fooled_any.mean()) if len(pos) else 0.0,
        "success_rate_per_backend": per_backend,
        "robust_accuracy_worst_case": value,
        "statistic": statistic,
    }


def crosscheck(prep: Prepared, outcomes: list[UnitOutcome]) -> dict[str, Any]:
    settings = prep.scenario.crosscheck
    pairs: list[PairResult] = []
    worst: list[dict[str, Any]] = []
    for (a_i, e_i), by_backend in sorted(_collect(outcomes).items()):
        if len(by_backend) < 2:
            continue
        spec = prep.plans[a_i].spec
        shards = set.intersection(
            *({o.unit.shard_index for o in units} for units in by_backend.values())
        )
        if not shards:
            continue
        stacks = {name: _stack(prep, units, shards) for name, units in by_backend.items()}
        tol = settings.tolerance.get(
            spec.name, DEFAULT_TOLERANCE.get(spec.name, FALLBACK_TOLERANCE)
        )
        for first, second in combinations(sorted(stacks), 2):
            pairs.append(
                compare_pair(
                    prep,
                    a_i,
                    e_i,
                    first,
                    second,
                    stacks[first],
                    stacks[second],
                    tol,
                    settings.alpha,
                )
            )
        worst.append(worst_case(prep, stacks, a_i, e_i))
    return {"pairs": [p.to_dict() for p in pairs], "worst_case": worst, "verdicts": VERDICTS}
