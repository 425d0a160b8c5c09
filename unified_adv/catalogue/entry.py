"""One catalogue entry: everything the code knows about one canonical attack.

Scenarios speak this vocabulary; adapters translate it. Defaults are ours and are
resolved here, once, so that every backend receives the same explicit values and no
library default can leak into a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from unified_adv.catalogue.params import Param
from unified_adv.catalogue.threats import ThreatModel

NORMS = ("linf", "l2", "l1", "l0")
TARGET_MODES = ("untargeted", "class", "least_likely", "random", "each_other_class")
UNTARGETED = ("untargeted",)
TARGETED = ("class", "least_likely", "random", "each_other_class")

#: Cross-check tolerance where an entry states none for a norm: the largest pixel difference
#: still called "equivalent", as a fraction of the input range's width.
FALLBACK_TOLERANCE = 1e-4
#: Recorded semantics that can change the outcome of every attack (see ``AttackDef.matters``).
MATTERS_FOR_EVERY_ATTACK = ("eot_samples", "eot_average", "labels")


@dataclass(frozen=True)
class AttackDef:
    """What a canonical attack is, accepts and how its results are judged.

    ``params`` excludes eps, norm and target (the threat model and the scenario own those).
    """

    name: str
    #: One line, shown in the report.
    summary: str
    paper: str
    #: How the result is bounded, in which norms (FixedEpsilon, Minimization, ...).
    threat_model: ThreatModel
    params: tuple[Param, ...] = ()
    targets: tuple[str, ...] = TARGET_MODES
    #: Gradient-free: queries the model's outputs only.
    black_box: bool = False
    #: Draws random numbers whatever its parameters (a search, noise, the data order), so
    #: backends can agree only statistically. A parameter with ``randomises`` adds to this.
    randomised: bool = False
    #: A step along the loss gradient (its sign for L∞): the FGSM family. The adapters then
    #: record the library's loss reduction, update order and L2 step rule.
    sign_gradient: bool = False
    #: Cross-check tolerance per norm, relative to the input range's width: the largest pixel
    #: difference between two backends still called "equivalent" (else FALLBACK_TOLERANCE).
    tolerance: Mapping[str, float] = field(default_factory=dict)
    #: Recorded library semantics (adapter facts) known to change this attack's outcome, and
    #: for which norms; each shown by an experiment in tests/test_crosscheck_audit.py or read
    #: in the libraries' source. A difference outside this table does not explain a divergence.
    matters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The longer description: the algorithm, our defaults and why.
    doc: str = ""

    @property
    def norms(self) -> tuple[str, ...]:
        return self.threat_model.norms

    @property
    def default_norm(self) -> str:
        return self.norms[0]

    @property
    def threat(self) -> str:
        """The threat model's short name: ``ball``, ``minimal``, ``l0`` or ``noise``."""
        return self.threat_model.kind

    @property
    def takes_eps(self) -> bool:
        return self.threat_model.takes_eps

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def supports_eot(self) -> bool:
        """Expectation over transformation against a randomised defence (``eot_samples``)."""
        return "eot_samples" in self.param_names

    def tolerance_for(self, norm: str) -> float:
        return self.tolerance.get(norm, FALLBACK_TOLERANCE)

    def is_randomised(self, params: Mapping[str, Any]) -> bool:
        """Whether a run with these resolved ``params`` depends on random draws."""
        return self.randomised or any(p.randomises and params.get(p.name) for p in self.params)

    def resolve(self, eps: float | None, given: Mapping[str, Any]) -> dict[str, Any]:
        """Our defaults for every parameter the attack takes, given values checked."""
        out: dict[str, Any] = {}
        for p in self.params:
            value = given.get(p.name)
            if value is None:
                value = p.default(eps, out) if isinstance(p.default, Callable) else p.default  # type: ignore[arg-type]
            out[p.name] = p.check(value)
        return out
