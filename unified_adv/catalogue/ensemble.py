"""Ensembles of attacks run as one: AutoAttack (Croce & Hein 2020).

An ensemble runs its components one after another, each (in the original) on the samples
the earlier ones have not fooled; a sample counts as fooled when any component fooled it.

Library facts known to change its outcome (``matters``), each read in the libraries' source:

* ``components``: which attacks run, and in which order. ART has no FAB, and its
  ``AutoAttack(targeted=True)`` runs every listed attack untargeted and then every one
  targeted (APGD-CE too; Square refuses); torchattacks follows the original's list.
* ``targeted_success``: what counts as a success of a targeted component. The original and
  torchattacks keep any misclassification; ART keeps a targeted run's example only where
  the prediction is the target.
* ``target_order``: which other classes a targeted component aims at, and in which order
  (the top-ranked first in the original; ART: class-index order).

The iterations of the gradient components are read back as ``steps`` on both (torchattacks'
AutoAttack passes none, its components' default being 10, so unified-adv sets them on the
built components): a parameter, compared directly, not a fact (``component_steps`` says how).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unified_adv.catalogue.entry import UNTARGETED, AttackDef
from unified_adv.catalogue.params import Param, steps
from unified_adv.catalogue.threats import FixedEpsilon

#: The original's versions: its component lists, in order.
AUTOATTACK_VERSIONS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
#: The rand version's expectation over transformation: gradients averaged over 20 draws.
RAND_EOT = 20

_BOTH = ("linf", "l2")


def eot_of(params: Mapping[str, Any]) -> int:
    """The EOT iterations of an AutoAttack run: 20 in the rand version, else 1."""
    return RAND_EOT if params.get("version") == "rand" else 1


AUTOATTACK = AttackDef(
    "autoattack",
    "AutoAttack: APGD-CE, APGD-T, FAB-T and Square in turn, each on the samples not yet "
    "fooled (version standard); APGD-CE and APGD-DLR with EOT 20 (version rand)",
    "Croce & Hein 2020",
    FixedEpsilon(_BOTH),
    (
        Param(
            "version",
            str,
            "standard",
            "standard: APGD-CE, APGD-T, FAB-T, Square; rand (randomised defences): "
            f"APGD-CE and APGD-DLR, gradients averaged over {RAND_EOT} draws",
            choices=tuple(AUTOATTACK_VERSIONS),
        ),
        steps(100),
        Param("restarts", int, 1, "restarts of every component", minimum=1, inclusive=True),
        Param("queries", int, 5000, "Square's query budget per sample", minimum=0),
        Param(
            "p_init", float, 0.8, "Square's initial share of pixels changed", minimum=0, maximum=1
        ),
    ),
    targets=UNTARGETED,
    randomised=True,
    ensemble=True,
    matters={
        "components": _BOTH,
        "targeted_success": _BOTH,
        "target_order": _BOTH,
    },
    doc="The original's defaults: `steps` 100 for APGD-CE, APGD-T (against the 9 "
    "top-ranked other classes) and FAB-T, Square with 5000 queries and p_init 0.8, one "
    "restart each. The components draw random starts and searches, so backends agree only "
    "statistically. The libraries differ in the components they have and in what counts as "
    "a targeted success: each records its list, order and rules (see the module's notes).",
)
