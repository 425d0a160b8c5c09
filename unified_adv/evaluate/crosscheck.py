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

from unified_adv.catalogue.attacks import ATTACKS, MATTERS
from unified_adv.evaluate.metrics import mean_interval, proportion_ci
from unified_adv.evaluate.results import (
    NOISE_CASE,
    WORST_CASE,
    RowsOf,
    fooled_and_tied,
    fooled_median,
    perturbation_sizes,
    robust_mask,
    row_chunks,
)
from unified_adv.run.prepared import Prepared, UnitOutcome

VERDICTS = ("identical", "equivalent", "statistically consistent", "divergent")


def tolerance_for(
    given: dict[str, float], attack: str, norm: str, input_range: tuple[float, float]
) -> float:
    """The tolerance in input units: the scenario's ``attack/norm`` or ``attack`` entry, else
    our default, times the width of the input range."""
    rel = given.get(
        f"{attack}/{norm}",
        given.get(attack, ATTACKS[attack].tolerance_for(norm)),
    )
    return float(rel) * (input_range[1] - input_range[0])


def known_to_matter(
    key: str, attack: str, norm: str, params: dict[str, Any], all_correct: bool
) -> bool:
    """Whether a difference in recorded semantic ``key`` is known to change this attack's
    outcome: its own parameters always; a fact only where MATTERS says so, and
    * ``labels`` only when some attacked sample is misclassified (else labels = predictions);
    * ``binary_search_rule`` only with more than one binary-search step."""
    if key == "eps" or key in ATTACKS[attack].param_names:
        return True
    scopes = MATTERS.get(key, ())
    if not any(a in (attack, "*") and n in (norm, "*") for a, n in scopes):
        return False
    if key == "labels":
        return not all_correct
    if key == "binary_search_rule":
        return int(params.get("binary_search_steps", 1)) > 1
    return True


def is_randomised(attack: str, params: dict[str, Any]) -> bool:
    """Attacks whose result depends on random draws, so backends cannot agree sample by sample."""
    return ATTACKS[attack].is_randomised(params)


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
    #: Samples left on the decision boundary (a tie) by each backend: compared apart.
    ties: tuple[int, int]
    success_rates: tuple[float, float]
    #: Each backend's success rate's 95 % interval (metrics.CI_METHOD).
    success_rates_ci: tuple[list[float] | None, list[float] | None]
    rate_difference: float
    rate_difference_ci: tuple[float, float]
    mcnemar_p: float
    #: Minimal-distance attacks: the paired test on the distances of samples both fooled.
    distance_test: dict[str, Any] | None
    same_adv_pred: float
    max_pixel_diff: float
    #: Medians over each backend's successful samples (None where it fooled none).
    median_distances: dict[str, tuple[float | None, float | None]]
    tolerance: float
    randomised: bool
    verdict: str
    #: Divergent pairs: True when a recorded difference known to matter for this attack × norm
    #: names the cause, False when none does ("unexplained"); None otherwise.
    explained: bool | None
    explanation: list[str] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backends"] = list(self.backends)
        d["ties"] = list(self.ties)
        d["success_rates_ci"] = list(self.success_rates_ci)
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


def _stack(prep: Prepared, units: list[UnitOutcome], shards: set[int], norm: str) -> dict[str, Any]:
    """One backend's results for one attack × ε, shards concatenated in order: the per-sample
    arrays, and the perturbations' sizes (linf, l2, mae and the attack's ``norm``) computed
    shard by shard. The examples themselves stay with their units (``parts``): a stored
    unit's are read from disk one shard at a time, never all at once."""
    chosen = sorted(
        (o for o in units if o.unit.shard_index in shards), key=lambda o: o.unit.shard_index
    )
    arrays = [o.arrays for o in chosen if o.arrays is not None]
    cat: dict[str, Any] = {
        k: np.concatenate([a[k] for a in arrays]) for k in ("positions", "adv_logits", "target")
    }
    cat["backend_failed"] = np.concatenate(
        [a.get("backend_failed", np.zeros(len(a["positions"]), dtype=np.bool_)) for a in arrays]
    )
    cat["success"], cat["tie"] = fooled_and_tied(prep.data.y[cat["positions"]], cat)
    names = dict.fromkeys(("linf", "l2", "mae", norm))
    sizes = [
        perturbation_sizes(a["x_adv"], RowsOf(prep.data.x, a["positions"]), names) for a in arrays
    ]
    cat["sizes"] = {k: np.concatenate([s[k] for s in sizes]) for k in names}
    cat["parts"] = arrays
    cat["calls"] = chosen[0].meta.get("library_call", {})
    cat["defence"] = chosen[0].unit.defence
    cat["note"] = chosen[0].meta.get("note", "")
    return cat


def _explain(
    first: str,
    second: str,
    a: dict[str, Any],
    b: dict[str, Any],
    scope: tuple[str, str, dict[str, Any], bool],
) -> tuple[list[str], bool]:
    """Name the recorded semantics that differ, split into those known to matter for this
    attack × norm (which explain the divergence) and the rest; then the libraries' notes."""
    attack, norm, params, all_correct = scope
    sem_a, sem_b = a["calls"].get("semantics", {}), b["calls"].get("semantics", {})
    matter: list[str] = []
    other: list[str] = []
    for key in sorted(set(sem_a) | set(sem_b)):
        va, vb = sem_a.get(key, "not set"), sem_b.get(key, "not set")
        if isinstance(va, float) and isinstance(vb, float) and math.isclose(va, vb, rel_tol=1e-12):
            continue
        if va != vb:
            line = f"{key} differs: {first} {va!r}, {second} {vb!r}"
            (matter if known_to_matter(key, attack, norm, params, all_correct) else other).append(
                line
            )
    lines = []
    if matter:
        lines.append(f"Recorded differences known to matter for {attack} {norm}:")
        lines += matter
    else:
        lines.append("No recorded difference explains this (unexplained): see the worst samples.")
    if other:
        lines.append(
            f"Recorded differences not known to matter for {attack} {norm}: " + "; ".join(other)
        )
    known = [f"{name}: {note}" for name, note in ((first, a["note"]), (second, b["note"])) if note]
    if known:
        lines.append("Library notes: " + " | ".join(known))
    return lines, bool(matter)


def _consistent_despite(
    first: str,
    second: str,
    a: dict[str, Any],
    b: dict[str, Any],
    scope: tuple[str, str, dict[str, Any], bool],
    p_value: float,
) -> list[str]:
    """A consistent pair of an ensemble attack whose backends record differences known to
    matter (its components): those differences, which did not change the success rates
    here; nothing when there are none."""
    lines, matter = _explain(first, second, a, b, scope)
    if not matter:
        return []
    return [
        f"Success rates agree (McNemar p = {p_value:.3g}) despite recorded differences "
        "known to matter:",
        *lines[1:],
    ]


def distance_test(
    norm: str, x: np.ndarray, a: np.ndarray, b: np.ndarray, both: np.ndarray
) -> dict[str, Any]:
    """Wilcoxon signed-rank test on the per-sample distances (in the attack's norm) of the
    samples both backends fooled: do the two find perturbations of the same size?"""
    size = lambda adv: perturbation_sizes(adv, x, (norm,))[norm]  # noqa: E731
    return distances_test(norm, size(a), size(b), both)


def distances_test(norm: str, da: np.ndarray, db: np.ndarray, both: np.ndarray) -> dict[str, Any]:
    """:func:`distance_test` on distances already measured (per sample, in ``norm``)."""
    da, db = da[both], db[both]
    p = 1.0
    if len(da) and np.any(da != db):
        p = float(stats.wilcoxon(da, db, zero_method="zsplit").pvalue)
    return {
        "test": "Wilcoxon signed-rank on per-sample distances, samples both fooled",
        "norm": norm,
        "n": int(len(da)),
        "medians": (
            float(np.median(da)) if len(da) else None,
            float(np.median(db)) if len(db) else None,
        ),
        "p": p,
    }


def _verdict(
    worst: float,
    tolerance: float,
    changed: int,
    randomised: bool,
    rates: tuple[float, tuple[float, float]],
    dist: dict[str, Any] | None,
    alpha: float,
) -> str:
    """One rule. A randomised pair is consistent only when McNemar's p ≥ alpha and Newcombe's
    95 % interval covers 0 (the two can disagree near alpha; then it is divergent) and, for a
    minimal-distance attack, the distances do not differ (Wilcoxon p ≥ alpha)."""
    p_value, (lo, hi) = rates
    if worst == 0.0:
        return "identical"
    if worst <= tolerance and changed == 0:
        return "equivalent"
    rates_agree = p_value >= alpha and lo <= 0.0 <= hi
    if randomised and rates_agree and (dist is None or dist["p"] >= alpha):
        return "statistically consistent"
    return "divergent"


def _statistics_lines(
    randomised: bool,
    rates: tuple[float, tuple[float, float]],
    dist: dict[str, Any] | None,
    alpha: float,
    worst: float,
    tolerance: float,
    changed: int,
) -> list[str]:
    p_value, (lo, hi) = rates
    lines = []
    if not randomised:
        lines.append(
            f"A deterministic attack, yet the results differ by up to {worst:.3g} "
            f"(tolerance {tolerance:.3g}) and {changed} samples change outcome."
        )
    elif p_value < alpha:
        lines.append(f"Success rates differ significantly (McNemar p = {p_value:.3g} < {alpha}).")
    elif not lo <= 0.0 <= hi:
        lines.append(
            f"McNemar p = {p_value:.3g} ≥ {alpha}, but the 95 % interval ({lo:.3g}, {hi:.3g}) "
            "excludes 0: a pair is consistent only when both say so."
        )
    if dist is not None and dist["p"] < alpha:
        lines.append(
            f"Distances differ on the samples both fooled (Wilcoxon p = {dist['p']:.3g}, "
            f"n = {dist['n']}, median {dist['norm']} {dist['medians'][0]:.4g} "
            f"vs {dist['medians'][1]:.4g})."
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
    spec = prep.plans[a_i].spec
    eps = spec.eps_values[e_i]
    _same_samples(spec.label, first, second, a, b)
    n = len(a["positions"])
    diff = _pixel_diff(a, b)
    # A sample tied on the boundary in either backend has no outcome: compared apart.
    scored = ~(a["tie"] | b["tie"])
    sa, sb = a["success"] & scored, b["success"] & scored
    both, neither = int((sa & sb).sum()), int((~sa & ~sb & scored).sum())
    only_a, only_b = int((sa & ~sb).sum()), int((~sa & sb).sum())
    pa, pb = a["adv_logits"].argmax(1), b["adv_logits"].argmax(1)
    p_value = mcnemar_exact(only_a, only_b)
    ci = paired_difference_ci(both, only_a, only_b, neither)
    params = spec.resolved_params(eps)
    # A randomised defended model draws random numbers too.
    randomised = is_randomised(spec.name, params) or bool(
        a.get("defence") and prep.variants[a["defence"]].randomized
    )
    dtest = _minimal_distances_test(spec.name, spec.norm, a, b, sa & sb)
    worst = float(diff.max(initial=0.0))
    changed = only_a + only_b
    verdict = _verdict(worst, tolerance, changed, randomised, (p_value, ci), dtest, alpha)
    scope = (spec.name, spec.norm, params, bool(prep.correct[a["positions"]].all()))
    explanation: list[str] = []
    explained: bool | None = None
    if verdict == "divergent":
        explanation, explained = _explain(first, second, a, b, scope)
        explanation[:0] = _statistics_lines(
            randomised, (p_value, ci), dtest, alpha, worst, tolerance, changed
        )
    elif verdict == "statistically consistent" and ATTACKS[spec.name].ensemble:
        explanation = _consistent_despite(first, second, a, b, scope, p_value)
    rows = _Rows(first, second, pa, pb, sa, sb, diff)
    order = np.argsort(-diff, kind="stable")
    disagree = [int(i) for i in order if sa[i] != sb[i] or pa[i] != pb[i]][:20]
    if explained is False:
        worst_rows = disagree[:3] or [int(i) for i in order[:3]]
        explanation.append(_worst_samples(prep, a, rows, worst_rows))
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
        ties=(int(a["tie"].sum()), int(b["tie"].sum())),
        success_rates=_success_rates(a, b),
        success_rates_ci=_success_rates_ci(a, b),
        rate_difference=(only_a - only_b) / max(int(scored.sum()), 1),
        rate_difference_ci=ci,
        mcnemar_p=p_value,
        distance_test=dtest,
        same_adv_pred=float((pa == pb).mean()) if n else 1.0,
        max_pixel_diff=worst,
        median_distances=_median_distances(a, b),
        tolerance=tolerance,
        randomised=randomised,
        verdict=verdict,
        explained=explained,
        explanation=explanation,
        disagreements=[_disagreement(prep, a, rows, i) for i in disagree],
    )


def _minimal_distances_test(
    attack: str, norm: str, a: dict[str, Any], b: dict[str, Any], both: np.ndarray
) -> dict[str, Any] | None:
    """For a minimal-perturbation attack, :func:`distances_test` on the two backends'
    distances in the attack's norm (None for any other attack)."""
    if ATTACKS[attack].threat != "minimal":
        return None
    return distances_test(norm, a["sizes"][norm], b["sizes"][norm], both)


def _pixel_diff(a: dict[str, Any], b: dict[str, Any]) -> np.ndarray:
    """Per sample, the largest pixel difference between the two backends' examples (shard by
    shard: the two backends' units cover the same shards, in the same order)."""
    out = []
    for pa, pb in zip(a["parts"], b["parts"], strict=True):
        xa, xb = pa["x_adv"], pb["x_adv"]
        part = np.zeros(len(xa))
        for r in row_chunks(len(xa)):
            diff = np.abs(xa[r].astype(np.float64) - xb[r].astype(np.float64))
            part[r] = diff.reshape(r.stop - r.start, -1).max(1, initial=0.0)
        out.append(part)
    return np.concatenate(out) if out else np.zeros(0)


def _success_rates(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """Each backend's own success rate (its ties are not successes); the paired difference
    and its interval are over the samples tied in neither."""
    n = len(a["success"])
    return (float(a["success"].mean()) if n else 0.0, float(b["success"].mean()) if n else 0.0)


def _success_rates_ci(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[list[float] | None, list[float] | None]:
    """The intervals of :func:`_success_rates` (metrics.CI_METHOD)."""
    n = len(a["success"])
    return proportion_ci(int(a["success"].sum()), n), proportion_ci(int(b["success"].sum()), n)


def _same_samples(
    label: str, first: str, second: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    if not np.array_equal(a["positions"], b["positions"]) or not np.array_equal(
        a["target"], b["target"]
    ):
        raise RuntimeError(f"{label}: {first} and {second} ran on different samples or targets")


def _worst_samples(prep: Prepared, a: dict[str, Any], rows: _Rows, which: list[int]) -> str:
    return "Worst samples: " + "; ".join(
        f"sample {int(prep.data.index[a['positions'][i]])} (pixel difference "
        f"{rows.diff[i]:.3g}, predictions {int(rows.pred_a[i])} / {int(rows.pred_b[i])})"
        for i in which
    )


def _median_distances(
    a: dict[str, Any], b: dict[str, Any]
) -> dict[str, tuple[float | None, float | None]]:
    """Median L-inf, L2 and mean absolute perturbation of each backend, over its own
    successful samples (None where it fooled none)."""
    return {
        name: (
            fooled_median(a["sizes"][name], a["success"]),
            fooled_median(b["sizes"][name], b["success"]),
        )
        for name in ("linf", "l2", "mae")
    }


@dataclass(frozen=True)
class _Rows:
    """Per-row outcomes of a pair of backends, for the disagreement records."""

    first: str
    second: str
    pred_a: np.ndarray
    pred_b: np.ndarray
    success_a: np.ndarray
    success_b: np.ndarray
    diff: np.ndarray


def _disagreement(prep: Prepared, a: dict[str, Any], rows: _Rows, i: int) -> dict[str, Any]:
    """One sample where the pair disagrees (outcome or prediction), as the summary lists it."""
    return {
        "position": int(a["positions"][i]),
        "sample": int(prep.data.index[a["positions"][i]]),
        "label": int(prep.data.y[a["positions"][i]]),
        "target": int(a["target"][i]),
        f"{rows.first}_pred": int(rows.pred_a[i]),
        f"{rows.second}_pred": int(rows.pred_b[i]),
        f"{rows.first}_success": bool(rows.success_a[i]),
        f"{rows.second}_success": bool(rows.success_b[i]),
        "pixel_diff": float(rows.diff[i]),
        "row": int(i),
    }


def _robust(right: np.ndarray, pos: np.ndarray) -> int:
    """Samples robust in ``right``; one repeated for several targets must survive all."""
    return sum(1 for p in set(pos.tolist()) if right[pos == p].all())


def worst_case(
    prep: Prepared, stacks: dict[str, dict[str, Any]], a_i: int, e_i: int
) -> dict[str, Any]:
    """Per sample, robust only if no backend fooled it (``results.WORST_CASE``, the one
    definition used everywhere). A random corruption is not unioned (``results.NOISE_CASE``):
    its value is the mean of the backends' robust accuracies."""
    plan = prep.plans[a_i]
    backends = sorted(stacks)
    pos = stacks[backends[0]]["positions"]
    still_right = np.ones(len(pos), bool)
    fooled_any = np.zeros(len(pos), bool)
    per_backend = {}
    per_backend_ci = {}
    rights = []
    for name in backends:
        s = stacks[name]
        scored = prep.variants[s["defence"]] if s["defence"] else prep
        rights.append(robust_mask(s["success"], scored.correct[s["positions"]], s["tie"]))
        still_right &= rights[-1]
        fooled_any |= s["success"]
        per_backend[name] = float(s["success"].mean()) if len(pos) else 0.0
        per_backend_ci[name] = proportion_ci(int(s["success"].sum()), len(pos))
    robust_samples = _robust(still_right, pos)
    correct = prep.correct
    attacked = np.zeros(len(correct), bool)
    attacked[pos] = True
    unattacked_correct = int((correct & ~attacked)[: plan.scope].sum())
    n_robust = robust_samples + unattacked_correct
    value = n_robust / plan.scope
    interval = proportion_ci(n_robust, plan.scope)
    statistic = WORST_CASE
    if ATTACKS[plan.spec.name].threat == "noise":
        statistic = NOISE_CASE
        counts = [_robust(r, pos) + unattacked_correct for r in rights]
        value = float(np.mean([k / plan.scope for k in counts]))
        interval = mean_interval(counts, plan.scope)
    return {
        "attack_id": plan.spec.label,
        "eps": plan.spec.eps_values[e_i],
        "backends": backends,
        "n_samples": int(len(pos)),
        "success_rate_any_backend": float(fooled_any.mean()) if len(pos) else 0.0,
        "success_rate_any_backend_ci": proportion_ci(int(fooled_any.sum()), len(pos)),
        "success_rate_per_backend": per_backend,
        "success_rate_per_backend_ci": per_backend_ci,
        "robust_accuracy_worst_case": value,
        # The interval of robust_accuracy_worst_case (the name compare/check reads).
        "robust_accuracy_ci": interval,
        "n_robust": n_robust if statistic == WORST_CASE else None,
        "n_evaluated": plan.scope,
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
        stacks = {
            name: _stack(prep, units, shards, spec.norm) for name, units in by_backend.items()
        }
        tol = tolerance_for(
            settings.tolerance, spec.name, spec.norm, prep.model.wrapper.input_range
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
