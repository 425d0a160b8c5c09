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
from typing import Any

import numpy as np
from torch import nn

from unified_adv.adapters import adapter_class
from unified_adv.adapters.art_defences import art_preprocessor
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.defences import layers as d
from unified_adv.defences.randomness import DefenceChain, is_randomized, reseed
from unified_adv.errors import InputError
from unified_adv.run.prepared import CleanScores, Prepared, UnitOutcome
from unified_adv.run.units import replace_arrays, unit_seed
from unified_adv.scenario.schema import DefenceSpec
from unified_adv.sources.builtin.autoencoder import builtin_digits_autoencoder
from unified_adv.sources.models import ModelWrapper, state_fingerprint

#: Draws per gradient against a randomised defence, for the attacks that support EOT.
DEFAULT_EOT_SAMPLES = 10


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
        reseed(self.wrapper, self.score_seed)
        return self.wrapper.logits(x)


def _part(
    spec: DefenceSpec, index: int, prep: Prepared, file: str
) -> tuple[nn.Module, dict[str, Any]]:
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
        ae, details = builtin_digits_autoencoder(
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
        art_layer = art_preprocessor(
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
        # The weights' install path differs per machine; their sha256 (in the part) does not.
        placeless = [{k: v for k, v in p.items() if k != "weights"} for p in parts]
        blob = json.dumps(placeless, sort_keys=True, default=str).encode()
        fingerprint = hashlib.sha256(
            blob + state_fingerprint(pre).encode() + prep.model.fingerprint.encode()
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
    variant = prep.variants[defence]
    if not ATTACKS[attack].supports_eot or variant.eot_samples <= 1:
        return None
    cap = adapter_class(backend).capabilities[attack]
    return variant.eot_samples if norm in cap.eot_norms else 1


def non_adaptive_outcomes(prep: Prepared, outcomes: list[UnitOutcome]) -> list[UnitOutcome]:
    """Every finished undefended unit, scored through every defence (forward passes only)."""
    derived = []
    for o in outcomes:
        if not o.ok or o.unit.defence or o.arrays is None:
            continue
        for variant in prep.variants.values():
            logits = variant.score(o.arrays["x_adv"]).astype(np.float32)
            arrays = replace_arrays(o.arrays, adv_logits=logits)
            meta = {
                **o.meta,
                "note": "non-adaptive: the examples made against the undefended model, "
                "passed through the defence",
            }
            unit = dataclasses.replace(o.unit, defence=variant.id, adaptive=False)
            derived.append(UnitOutcome(unit, arrays, meta, reused=o.reused))
    return derived
