"""The canonical attack catalogue: every entry, by name, and the tables derived from it.

An entry (:class:`~unified_adv.catalogue.entry.AttackDef`) lives in the module of its family
(``gradient``, ``minimal``, ``black_box``, ``universal``, ``noise``, ``ensemble``); this module lists them
once, in the order the CLI and the benchmarks show them. See CONTRIBUTING.md, "Adding an
attack".
"""

from __future__ import annotations

from unified_adv.catalogue.black_box import BOUNDARY, HOPSKIPJUMP, ONE_PIXEL, SQUARE
from unified_adv.catalogue.ensemble import AUTOATTACK
from unified_adv.catalogue.entry import (
    FALLBACK_TOLERANCE,
    MATTERS_FOR_EVERY_ATTACK,
    NORMS,
    TARGET_MODES,
    AttackDef,
)
from unified_adv.catalogue.gradient import APGD, BIM, FGSM, MIFGSM, PGD
from unified_adv.catalogue.minimal import ALMA, CW_L2, DDN, DEEPFOOL, FAB, FMN, LBFGS
from unified_adv.catalogue.noise import GAUSSIAN_NOISE
from unified_adv.catalogue.params import MAX_NUMBER, Param, madry_step, shown
from unified_adv.catalogue.universal import UNIVERSAL

__all__ = [
    "ALL_PARAMS",
    "ATTACKS",
    "FALLBACK_TOLERANCE",
    "MATTERS",
    "MAX_NUMBER",
    "NORMS",
    "PARAM_KINDS",
    "TARGET_MODES",
    "AttackDef",
    "Param",
    "madry_step",
    "shown",
]

_ENTRIES = (
    FGSM,
    BIM,
    PGD,
    MIFGSM,
    DEEPFOOL,
    CW_L2,
    LBFGS,
    DDN,
    ALMA,
    ONE_PIXEL,
    UNIVERSAL,
    SQUARE,
    APGD,
    FAB,
    FMN,
    AUTOATTACK,
    HOPSKIPJUMP,
    BOUNDARY,
    GAUSSIAN_NOISE,
)

ATTACKS: dict[str, AttackDef] = {a.name: a for a in _ENTRIES}


def _param_kinds() -> dict[str, type]:
    """Each parameter name's one type: the same name means the same kind of value."""
    kinds: dict[str, type] = {}
    for attack in _ENTRIES:
        for p in attack.params:
            if kinds.setdefault(p.name, p.kind) is not p.kind:
                raise TypeError(f"{attack.name}.{p.name} is {p.kind}, elsewhere {kinds[p.name]}")
    return kinds


def _matters() -> dict[str, tuple[tuple[str, str], ...]]:
    """Recorded semantics key -> the (attack, norm) pairs it is known to matter for
    ("*": every attack or norm), gathered from the entries."""
    out: dict[str, tuple[tuple[str, str], ...]] = {
        key: (("*", "*"),) for key in MATTERS_FOR_EVERY_ATTACK
    }
    for attack in _ENTRIES:
        for key, norms in attack.matters.items():
            out[key] = out.get(key, ()) + tuple((attack.name, n) for n in norms)
    return out


#: Every canonical parameter name and its type (int, float or str).
PARAM_KINDS: dict[str, type] = _param_kinds()
ALL_PARAMS: tuple[str, ...] = tuple(sorted(PARAM_KINDS))
MATTERS: dict[str, tuple[tuple[str, str], ...]] = _matters()
