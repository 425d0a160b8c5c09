"""Lim's table, generalised: how much accuracy each defence keeps under each attack, scored
non-adaptively (the examples made without the defence) and adaptively (the attack saw it),
worst case across backends; and the findings where a defence collapses or costs clean
accuracy. The defended models themselves are :mod:`unified_adv.defences.variants`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate.metrics import count_of, mean_interval, proportion_ci
from unified_adv.evaluate.results import NOISE_CASE, WORST_CASE, robust_by_sample, robust_samples
from unified_adv.run.prepared import Prepared, UnitOutcome

#: Adaptive accuracy this far (absolute) below the non-adaptive one: the defence "collapses".
COLLAPSE_DROP = 0.10
#: Adaptive accuracy this far (absolute) above the non-adaptive one: the adaptive attack is
#: weaker than the attack that ignores the defence (more than sampling noise of the scoring).
ADAPTIVE_SLACK = 0.02
#: Clean accuracy lost to a defence beyond which the report warns.
CLEAN_DROP = 0.05


def _entries(
    prep: Prepared, samples: pd.DataFrame, outcomes: list[UnitOutcome]
) -> list[dict[str, Any]]:
    """Accuracy of every model variant under every attack × ε × backend × evaluation."""
    errors: dict[tuple[Any, ...], str] = {}
    eot: dict[tuple[Any, ...], int] = {}
    for o in outcomes:
        k = (o.unit.attack_index, o.unit.eps_index, o.unit.backend, o.unit.defence, o.unit.adaptive)
        if not o.ok:
            errors[k] = o.meta.get("error", "unknown error")
        else:
            eot[k] = int(o.unit.param_dict.get("eot_samples", 1))
    out = []
    for (a_i, e_i, backend, defence, adaptive), names in _group_units(outcomes).items():
        plan = prep.plans[a_i]
        rows = samples[samples["unit"].isin(names)]
        correct = prep.variants[defence].correct if defence else prep.correct
        attacked = np.zeros(len(correct), bool)
        attacked[plan.positions] = True
        unattacked_correct = int((correct & ~attacked)[: plan.scope].sum())
        complete = (a_i, e_i, backend, defence, adaptive) not in errors and len(rows) == len(
            plan.positions
        )
        n_right = robust_samples(rows) + unattacked_correct
        out.append(
            {
                "attack_id": plan.spec.label,
                "attack": plan.spec.name,
                "eps": plan.spec.eps_values[e_i],
                "backend": backend,
                "defence": defence or None,
                "evaluation": "undefended"
                if not defence
                else ("adaptive" if adaptive else "non-adaptive"),
                "eot_samples": eot.get((a_i, e_i, backend, defence, adaptive), 1),
                "n_samples": int(len(rows)),
                "success_rate": float(rows["success"].mean()) if len(rows) else None,
                "success_rate_ci": proportion_ci(int(rows["success"].sum()), len(rows)),
                "accuracy": n_right / plan.scope if complete else None,
                "accuracy_ci": proportion_ci(n_right, plan.scope) if complete else None,
                "status": "ok" if complete else "error",
                "error": errors.get((a_i, e_i, backend, defence, adaptive)),
            }
        )
    return out


def _group_units(outcomes: list[UnitOutcome]) -> dict[tuple[Any, ...], set[str]]:
    groups: dict[tuple[Any, ...], set[str]] = {}
    for o in outcomes:
        u = o.unit
        key = (u.attack_index, u.eps_index, u.backend, u.defence, u.adaptive)
        groups.setdefault(key, set()).add(u.name)
    return dict(
        sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], not kv[0][4], kv[0][2])
        )
    )


def _right_per_sample(samples: pd.DataFrame, names: set[str]) -> pd.Series:
    return robust_by_sample(samples[samples["unit"].isin(names)])


def _cells(
    mine: list[dict[str, Any]],
    names: dict[tuple[Any, ...], set[str]],
    key: tuple[int, int],
    defence: str | None,
    evaluations: tuple[str, ...],
) -> list[tuple[dict[str, Any], set[str]]]:
    """The entries of one attack × ε for a defence and evaluation(s), with their units."""
    return [
        (e, names[(*key, e["backend"], defence, e["evaluation"])])
        for e in mine
        if e["defence"] == defence and e["evaluation"] in evaluations
    ]


def _across(
    prep: Prepared,
    samples: pd.DataFrame,
    cells: list[tuple[dict[str, Any], set[str]]],
    correct: np.ndarray,
    a_i: int,
) -> dict[str, Any] | None:
    """One cell of Lim's table from its backends' entries (and unit names), by
    :data:`WORST_CASE` — or, for a random corruption, :data:`NOISE_CASE`."""
    ok = [(e, n) for e, n in cells if e["accuracy"] is not None]
    if not ok:
        return None
    lowest = min(ok, key=lambda en: (en[0]["accuracy"], en[0]["backend"]))[0]
    backends = sorted({e["backend"] for e, _ in ok})
    out: dict[str, Any] = {"lowest_backend": lowest["backend"], "backends": len(backends)}
    plan = prep.plans[a_i]
    if ATTACKS[plan.spec.name].threat == "noise":
        acc = float(np.mean([e["accuracy"] for e, _ in ok]))
        ci = mean_interval([count_of(e["accuracy"], plan.scope) for e, _ in ok], plan.scope)
        return {
            **out,
            "accuracy": acc,
            "accuracy_ci": ci,
            "statistic": NOISE_CASE,
            "backend": "mean",
        }
    right: pd.Series | None = None
    for _, names in ok:
        r = _right_per_sample(samples, names)
        right = r if right is None else (right & r.reindex(right.index, fill_value=False))
    assert right is not None
    attacked = np.zeros(len(correct), bool)
    attacked[plan.positions] = True
    unattacked_correct = int((correct & ~attacked)[: plan.scope].sum())
    k = int(right.sum()) + unattacked_correct
    label = backends[0] if len(backends) == 1 else f"any of {len(backends)}"
    ci = proportion_ci(k, plan.scope)
    return {
        **out,
        "accuracy": k / plan.scope,
        "accuracy_ci": ci,
        "statistic": WORST_CASE,
        "backend": label,
    }


def collapse_finding(
    defence: str,
    attack_id: str,
    eps: float | str | None,
    non: dict[str, Any] | None,
    ada: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """A warning when the adaptive accuracy lies more than COLLAPSE_DROP below the
    non-adaptive one: the number a non-adaptive evaluation reports overstates the defence."""
    if not non or not ada or not ada["accuracy"] < non["accuracy"] - COLLAPSE_DROP:
        return None
    eot = int(ada.get("eot_samples", 1))
    return {
        "level": "warning",
        "code": "defence-collapses",
        "attack_id": attack_id,
        "backend": ada["backend"],
        "message": (
            f"{defence} against {attack_id}"
            + (
                f" (eps {eps if isinstance(eps, str) else format(eps, 'g')})"
                if eps is not None
                else ""
            )
            + f": {100 * non['accuracy']:.1f} % accuracy when the attack ignores the defence, "
            f"{100 * ada['accuracy']:.1f} % when it attacks the defended model "
            f"({ada['backend']}" + (f", EOT over {eot} draws" if eot > 1 else "") + "). "
            "The non-adaptive number overstates the defence."
        ),
    }


def adaptive_weaker_findings(
    defence: str,
    attack_id: str,
    eps: float | None,
    adaptive: list[tuple[dict[str, Any], set[str]]],
    non: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """AutoAttack-style: an adaptive attack (it sees the defence) that does worse than the
    non-adaptive one (made without it) is a broken or weak adaptive attack, not evidence
    for the defence. One warning per backend whose adaptive accuracy lies above the
    non-adaptive accuracy of the same cell by more than ADAPTIVE_SLACK."""
    if not non:
        return []
    out = []
    for e, _ in adaptive:
        if e["accuracy"] is None or not e["accuracy"] > non["accuracy"] + ADAPTIVE_SLACK:
            continue
        eot = int(e.get("eot_samples", 1))
        out.append(
            {
                "level": "warning",
                "code": "adaptive-weaker-than-non-adaptive",
                "attack_id": attack_id,
                "backend": e["backend"],
                "message": (
                    f"{defence} against {attack_id}"
                    + (f" (eps {eps:g})" if eps is not None else "")
                    + f": the adaptive attack on {e['backend']}"
                    + (f" (EOT over {eot} draws)" if eot > 1 else "")
                    + f" leaves {100 * e['accuracy']:.1f} % accuracy, more than the "
                    f"{100 * non['accuracy']:.1f} % of the non-adaptive attack. An adaptive "
                    "attack should be at least as strong: its gradient is misled (on a "
                    "randomised defence, an EOT of summed per-draw losses can be dominated by "
                    "draws already misclassified; see bench/lim_eot.py). The table's adaptive "
                    "cell takes, per sample, the worse of both."
                ),
            }
        )
    return out


def _variant_records(prep: Prepared) -> list[dict[str, Any]]:
    """Each defended model as the summary describes it."""
    return [
        {
            "id": v.id,
            "name": v.spec.name,
            "parts": v.parts,
            "randomized": v.randomized,
            "eot_samples": v.eot_samples,
            "adaptive": v.spec.adaptive,
            "clean_accuracy": float(v.correct.mean()),
            "clean_accuracy_ci": proportion_ci(int(v.correct.sum()), len(v.correct)),
            "fingerprint": v.fingerprint,
        }
        for v in prep.variants.values()
    ]


def _clean_cost_findings(variants: list[dict[str, Any]], clean: float) -> list[dict[str, Any]]:
    """A warning for each defence that costs more than CLEAN_DROP clean accuracy."""
    return [
        {
            "level": "warning",
            "code": "defence-costs-clean-accuracy",
            "attack_id": None,
            "backend": None,
            "message": (
                f"{v['id']}: clean accuracy {100 * v['clean_accuracy']:.1f} % against "
                f"{100 * clean:.1f} % without it."
            ),
        }
        for v in variants
        if v["clean_accuracy"] < clean - CLEAN_DROP
    ]


def defence_summary(
    prep: Prepared, samples: pd.DataFrame, outcomes: list[UnitOutcome]
) -> dict[str, Any]:
    """Lim's table, generalised: per attack × ε, accuracy (a) clean, (b) attacked, then for
    every defence the non-adaptive and the adaptive accuracy (worst case across backends);
    plus findings where a defence collapses under the adaptive attack or costs clean accuracy."""
    if not prep.variants:
        return {}
    entries = _entries(prep, samples, outcomes)
    clean = float(prep.correct.mean())
    variants = _variant_records(prep)
    names: dict[tuple[Any, ...], set[str]] = {}
    for (a_i, e_i, backend, defence, adaptive), group in _group_units(outcomes).items():
        evaluation = "undefended" if not defence else ("adaptive" if adaptive else "non-adaptive")
        names[(a_i, e_i, backend, defence or None, evaluation)] = group
    rows = []
    findings = []
    for a_i, plan in enumerate(prep.plans):
        for e_i, eps in enumerate(plan.spec.eps_values):
            mine = [e for e in entries if e["attack_id"] == plan.spec.label and e["eps"] == eps]

            def cells(defence: str | None, *evaluations: str) -> list[Any]:
                return _cells(mine, names, (a_i, e_i), defence, evaluations)  # noqa: B023

            row: dict[str, Any] = {
                "attack_id": plan.spec.label,
                "attack": plan.spec.name,
                "eps": eps,
                "clean": clean,
                "clean_ci": proportion_ci(int(prep.correct.sum()), len(prep.correct)),
                "attacked": _across(prep, samples, cells(None, "undefended"), prep.correct, a_i),
                "defences": {},
            }
            for v in prep.variants.values():
                non = _across(prep, samples, cells(v.id, "non-adaptive"), v.correct, a_i)
                alone = _across(prep, samples, cells(v.id, "adaptive"), v.correct, a_i)
                # An adaptive attacker may also use the examples made without the defence:
                # the adaptive cell is the per-sample union of both (never above non-adaptive).
                ada = (
                    _across(prep, samples, cells(v.id, "adaptive", "non-adaptive"), v.correct, a_i)
                    if alone is not None
                    else None
                )
                if ada is not None and alone is not None:
                    ada_entries = [e for e, _ in cells(v.id, "adaptive")]
                    ada["eot_samples"] = max(e["eot_samples"] for e in ada_entries)
                    ada["adaptive_alone"] = alone["accuracy"]
                    ada["adaptive_alone_ci"] = alone["accuracy_ci"]
                row["defences"][v.id] = {"non_adaptive": non, "adaptive": ada}
                finding = collapse_finding(v.id, plan.spec.label, plan.spec.eps_text(eps), non, ada)
                if finding is not None:
                    findings.append(finding)
                findings += adaptive_weaker_findings(
                    v.id, plan.spec.label, eps, cells(v.id, "adaptive"), non
                )
            rows.append(row)
    findings += _clean_cost_findings(variants, clean)
    return {"variants": variants, "table": rows, "entries": entries, "findings": findings}
