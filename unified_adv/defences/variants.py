"""The scenario's defences as defended model variants, and how attacks are scored on them.

Each entry of ``defences:`` becomes one :class:`Variant`: the unchanged classifier with the
defence in front of it (inside :class:`~unified_adv.sources.models.ModelWrapper`, so every backend
attacks the same defended function). An attack is scored on a variant two ways:

* **non-adaptive** (what Lim reports): the adversarial examples made against the undefended
  model, passed through the defence. Derived from the undefended units; nothing is re-run.
* **adaptive**: the attack runs against the defended model itself; on a randomised defence,
  gradient attacks average ``eot_samples`` draws (expectation over transformation, with each
  library's own EOT support). Only this number says what the defence is worth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from torch import nn

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.errors import InputError
from unified_adv.evaluate.results import robust_by_sample, robust_samples
from unified_adv.run.runner import CleanScores
from unified_adv.run.units import unit_seed
from unified_adv.sources.models import ModelWrapper, _state_fingerprint

if TYPE_CHECKING:
    from unified_adv.run.runner import Prepared, UnitOutcome
    from unified_adv.scenario.schema import DefenceSpec

#: Draws per gradient against a randomised defence, for the attacks that support EOT.
DEFAULT_EOT_SAMPLES = 10
#: Adaptive accuracy this far (absolute) below the non-adaptive one: the defence "collapses".
COLLAPSE_DROP = 0.10
#: Adaptive accuracy this far (absolute) above the non-adaptive one: the adaptive attack is
#: weaker than the attack that ignores the defence (more than sampling noise of the scoring).
ADAPTIVE_SLACK = 0.02
#: Clean accuracy lost to a defence beyond which the report warns.
CLEAN_DROP = 0.05
ART_DEFENCES = (
    "spatial_smoothing",
    "jpeg_compression",
    "feature_squeezing",
    "gaussian_augmentation",
)


@dataclass
class Variant(CleanScores):
    """The classifier with one defence in front of it."""

    id: str
    spec: DefenceSpec
    wrapper: ModelWrapper
    randomized: bool
    fingerprint: str
    parts: list[dict[str, Any]]
    score_seed: int
    clean_logits: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)

    def labels(self) -> np.ndarray:
        return self.y

    @property
    def eot_samples(self) -> int:
        if self.spec.eot_samples is not None:
            return self.spec.eot_samples
        return DEFAULT_EOT_SAMPLES if self.randomized else 1

    def score(self, x: np.ndarray) -> np.ndarray:
        """Logits of the defended model, with its randomness drawn from a fixed seed, so
        every backend's examples meet the same draws position for position."""
        from unified_adv.defences.layers import reseed

        reseed(self.wrapper, self.score_seed)
        return self.wrapper.logits(x)


def _part(
    spec: DefenceSpec, index: int, prep: Prepared, file: str
) -> tuple[nn.Module, dict[str, Any]]:
    from unified_adv.defences import layers as d

    shape = prep.data.x.shape[1:]
    lo, hi = prep.model.wrapper.input_range
    where = f"defences[{index}]"
    given = {k: getattr(spec, k) for k in ("min_size", "max_size", "pad_to") if getattr(spec, k)}
    if spec.name == "randomization":
        size = (int(shape[1]), int(shape[2]))
        params = {**d.default_randomization(size), **given}
        if params["min_size"] > params["max_size"] or params["max_size"] > params["pad_to"]:
            raise InputError.one(
                file,
                where,
                "randomization needs min_size <= max_size <= pad_to; with the defaults for "
                f"{size[0]}x{size[1]} images that is {params}",
            )
        layer = d.RandomizationLayer(input_size=size, fill=lo, seed=prep.scenario.seed, **params)
        return layer, {"kind": "randomization", "library": "unified-adv", **params, "fill": lo}
    if spec.name == "autoencoder":
        if (lo, hi) != (0.0, 1.0):
            raise InputError.one(
                file, f"{where}.name", "the builtin autoencoder works on inputs in [0, 1]"
            )
        ae, details = d.builtin_digits_autoencoder(
            width=spec.width or 16,
            noise=spec.noise if spec.noise is not None else 0.1,
            epochs=spec.epochs or 30,
        )
        return ae, {"kind": "autoencoder", "library": "unified-adv", **details}
    params = {
        k: getattr(spec, k)
        for k in ("window_size", "quality", "bit_depth", "sigma")
        if getattr(spec, k) is not None
    }
    try:
        art_layer = d.art_preprocessor(
            spec.name,
            params,
            input_range=(lo, hi),
            channels=int(shape[0]),
            seed=prep.scenario.seed,
        )
    except ValueError as exc:
        raise InputError.one(file, where, str(exc)) from None
    return art_layer, {"kind": spec.name, "library": "ART", **art_layer.art_call}


def build_variants(prep: Prepared) -> dict[str, Variant]:
    """One defended model per entry of ``defences:``; chains reuse their parts' settings."""
    from unified_adv.defences.layers import DefenceChain, is_randomized, reseed

    scenario = prep.scenario
    by_id = {d.label: (i, d) for i, d in enumerate(scenario.defences)}
    spec_m = scenario.model
    variants: dict[str, Variant] = {}
    for i, spec in enumerate(scenario.defences):
        members = (
            [by_id[ref] for ref in spec.of] if spec.name == "chain" and spec.of else [(i, spec)]
        )
        modules, parts = [], []
        for j, member in members:
            module, record = _part(member, j, prep, scenario.file)
            modules.append(module)
            parts.append({"id": member.label, **record})
        pre: nn.Module = modules[0] if len(modules) == 1 else DefenceChain(*modules)
        wrapper = ModelWrapper(
            prep.model.wrapper.net,
            input_range=spec_m.input_range,
            mean=spec_m.mean,
            std=spec_m.std,
            device=spec_m.device,
            pre=pre,
        )
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        fingerprint = hashlib.sha256(
            blob + _state_fingerprint(pre).encode() + prep.model.fingerprint.encode()
        ).hexdigest()
        score_seed = unit_seed(scenario.seed, 7000 + i, 0, 0)
        reseed(wrapper, score_seed)
        variants[spec.label] = Variant(
            id=spec.label,
            spec=spec,
            wrapper=wrapper,
            randomized=is_randomized(pre),
            fingerprint=fingerprint,
            parts=parts,
            score_seed=score_seed,
            clean_logits=wrapper.logits(prep.data.x),
            y=prep.data.y,
        )
    return variants


def adaptive_defences(prep: Prepared, attack_label: str, attack_name: str) -> list[str]:
    """The defences an attack runs against adaptively. A model-independent corruption
    (Gaussian noise) gives the same images either way: it is scored non-adaptively only."""
    if ATTACKS[attack_name].threat == "noise":
        return []
    return [
        v.id
        for v in prep.variants.values()
        if v.spec.adaptive and (v.spec.attacks is None or attack_label in v.spec.attacks)
    ]


def eot_for(prep: Prepared, defence: str, attack: str, norm: str, backend: str) -> int | None:
    """``eot_samples`` for one adaptive unit, or None to keep the attack's own setting."""
    from unified_adv.adapters import adapter_class

    variant = prep.variants[defence]
    if not ATTACKS[attack].supports_eot or variant.eot_samples <= 1:
        return None
    cap = adapter_class(backend).capabilities[attack]
    return variant.eot_samples if norm in cap.eot_norms else 1


def non_adaptive_outcomes(prep: Prepared, outcomes: list[UnitOutcome]) -> list[UnitOutcome]:
    """Every finished undefended unit, scored through every defence (forward passes only)."""
    from unified_adv.run.runner import UnitOutcome

    derived = []
    for o in outcomes:
        if not o.ok or o.unit.defence or o.arrays is None:
            continue
        for variant in prep.variants.values():
            arrays = {**o.arrays, "adv_logits": variant.score(o.arrays["x_adv"]).astype(np.float32)}
            meta = {
                **o.meta,
                "note": "non-adaptive: the examples made against the undefended model, "
                "passed through the defence",
            }
            unit = dataclasses.replace(o.unit, defence=variant.id, adaptive=False)
            derived.append(UnitOutcome(unit, arrays, meta, reused=o.reused))
    return derived


# --------------------------------------------------------------------------- summaries


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
                "accuracy": (robust_samples(rows) + unattacked_correct) / plan.scope
                if complete
                else None,
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


#: The one meaning of "worst case across backends", here and in the Summary
#: (:func:`unified_adv.evaluate.crosscheck.worst_case`): per sample, robust only if no backend's
#: adversarial example fooled it. A random corruption is not an attack: the worst of
#: several independent noise draws is not a stronger corruption, so noise is never
#: unioned — its cell is the mean accuracy over the backends' draws.
WORST_CASE = "per-sample union across backends (robust only if no backend fooled it)"
NOISE_CASE = "mean over backends (random corruption: draws are not unioned)"


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
        return {**out, "accuracy": acc, "statistic": NOISE_CASE, "backend": "mean"}
    right: pd.Series | None = None
    for _, names in ok:
        r = _right_per_sample(samples, names)
        right = r if right is None else (right & r.reindex(right.index, fill_value=False))
    assert right is not None
    attacked = np.zeros(len(correct), bool)
    attacked[plan.positions] = True
    unattacked_correct = int((correct & ~attacked)[: plan.scope].sum())
    acc = (int(right.sum()) + unattacked_correct) / plan.scope
    label = backends[0] if len(backends) == 1 else f"any of {len(backends)}"
    return {**out, "accuracy": acc, "statistic": WORST_CASE, "backend": label}


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
    variants = [
        {
            "id": v.id,
            "name": v.spec.name,
            "parts": v.parts,
            "randomized": v.randomized,
            "eot_samples": v.eot_samples,
            "adaptive": v.spec.adaptive,
            "clean_accuracy": float(v.correct.mean()),
            "fingerprint": v.fingerprint,
        }
        for v in prep.variants.values()
    ]
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
                row["defences"][v.id] = {"non_adaptive": non, "adaptive": ada}
                finding = collapse_finding(v.id, plan.spec.label, plan.spec.eps_text(eps), non, ada)
                if finding is not None:
                    findings.append(finding)
                findings += adaptive_weaker_findings(
                    v.id, plan.spec.label, eps, cells(v.id, "adaptive"), non
                )
            rows.append(row)
    for v in variants:
        if v["clean_accuracy"] < clean - CLEAN_DROP:
            findings.append(
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
            )
    return {"variants": variants, "table": rows, "entries": entries, "findings": findings}
