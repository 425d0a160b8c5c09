"""Backend registry: one place, lazy ``"module:attr"`` entries (as lm-evaluation-harness).

Importing an adapter module does not import its library; the library is
imported the first time the adapter runs an attack.

The builtin backends are listed in :data:`BACKENDS`. A third-party backend is one
adapter file in its own distribution, registered under the entry-point group
``unified_adv.backends`` (see CONTRIBUTING.md, "Adding a backend")::

    [project.entry-points."unified_adv.backends"]
    mylib = "mypackage.adapter:MyLibAdapter"

It is read lazily as well: the adapter module is imported the first time it is used.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from unified_adv.adapters.base import (
    Adapter,
    AdapterOutput,
    AttackRequest,
    Capability,
    Translator,
    Translators,
)
from unified_adv.errors import did_you_mean

if TYPE_CHECKING:
    from unified_adv.scenario.schema import AttackSpec

__all__ = [
    "Adapter",
    "AdapterOutput",
    "AttackRequest",
    "Capability",
    "Translator",
    "Translators",
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "adapter_class",
    "backend_names",
    "backends_with",
    "capable_backends",
    "check_backends",
    "dropped_backends",
    "registry",
]

#: The builtin backends. Third-party ones come from the entry-point group below.
BACKENDS: dict[str, str] = {
    "art": "unified_adv.adapters.art:ArtAdapter",
    "foolbox": "unified_adv.adapters.foolbox:FoolboxAdapter",
    "torchattacks": "unified_adv.adapters.torchattacks:TorchattacksAdapter",
    "adv-lib": "unified_adv.adapters.advlib:AdvLibAdapter",
    "secml-torch": "unified_adv.adapters.secmltorch:SecmlTorchAdapter",
    # Project code, not a library: attacks none of the three libraries has (L-BFGS).
    "unified-adv": "unified_adv.adapters.project:ProjectAdapter",
}
ENTRY_POINT_GROUP = "unified_adv.backends"


@cache
def registry() -> dict[str, str]:
    """Every backend: name -> ``"module:attr"``, the builtin ones first, then those the
    installed distributions register under :data:`ENTRY_POINT_GROUP` (a name a builtin
    already has is refused: it would silently replace a library). Read once per process;
    ``registry.cache_clear()`` and ``adapter_class.cache_clear()`` read it again."""
    out = dict(BACKENDS)
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
        if ep.name in BACKENDS:
            raise ValueError(
                f"entry point {ENTRY_POINT_GROUP}:{ep.name} ({ep.value}) reuses the name of "
                "a builtin backend"
            )
        out.setdefault(ep.name, ep.value)
    return out


def backend_names() -> tuple[str, ...]:
    return tuple(registry())


@cache
def adapter_class(name: str) -> type[Adapter]:
    backends = registry()
    if name not in backends:
        raise KeyError(did_you_mean("backend", name, backends))
    module_name, _, attr = backends[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{backends[name]} is not an Adapter subclass")
    return cls


def _why_not(name: str, attack: AttackSpec, input_range: Sequence[float]) -> str | None:
    cls = adapter_class(name)
    cap = cls.capabilities.get(attack.name)
    if cap is None:
        able = [b for b in backend_names() if attack.name in adapter_class(b).capabilities]
        return f"backend '{name}' has no {attack.name} (backends with {attack.name}: {', '.join(able)})"
    if attack.norm not in cap.norms:
        return (
            f"backend '{name}' cannot run {attack.name} with norm {attack.norm} "
            f"(it supports: {', '.join(cap.norms)})"
        )
    if attack.target.mode not in cap.targets:
        return (
            f"backend '{name}' cannot run {attack.name} with target {attack.target.mode} "
            f"(it supports: {', '.join(cap.targets)})"
        )
    for param, value in cap.fixed.items():
        for eps in attack.eps_values:
            have = attack.resolved_params(eps).get(param)
            if have != value:
                return (
                    f"backend '{name}' runs {attack.name} only with {param}={value} "
                    f"(got {param}={have})"
                )
    for param, allowed in cap.choices.items():
        have = attack.resolved_params(attack.eps_values[0]).get(param)
        if have is not None and have not in allowed:
            return (
                f"backend '{name}' runs {attack.name} only with {param} in "
                f"({', '.join(allowed)}) (got {param}={have})"
            )
    limit = cap.max_random_starts
    if attack.random_starts is not None and limit is not None and attack.random_starts > limit:
        return (
            f"backend '{name}' can do at most {limit} random start(s) for {attack.name}, "
            f"got random_starts: {attack.random_starts}"
        )
    if (attack.eot_samples or 1) > 1 and attack.norm not in cap.eot_norms:
        return (
            f"backend '{name}' has no expectation over transformation for {attack.name} "
            f"{attack.norm} (eot_samples > 1)"
        )
    if cls.requires_unit_range and tuple(input_range) != (0.0, 1.0):
        lo, hi = input_range
        return (
            f"backend '{name}' needs model.input_range [0, 1] (it clamps to [0, 1] internally); "
            f"got [{lo:g}, {hi:g}]: move the scaling into the model's mean/std"
        )
    return None


def check_backends(attack: AttackSpec, input_range: Sequence[float]) -> list[str]:
    """Every reason the attack's backend list cannot run, as messages (empty if fine)."""
    if attack.backends in (("all",), ("fastest",)):
        if not capable_backends(attack, input_range):
            reasons = [_why_not(b, attack, input_range) for b in backend_names()]
            return ["no backend can run this attack: " + "; ".join(r for r in reasons if r)]
        return []
    problems = []
    for word in ("all", "fastest"):
        if word in attack.backends:
            problems.append(f"'{word}' cannot be combined with backend names")
    seen: set[str] = set()
    for name in attack.backends:
        if name in ("all", "fastest"):
            continue
        if name in seen:
            problems.append(f"backend '{name}' is listed twice")
            continue
        seen.add(name)
        if name not in registry():
            problems.append(did_you_mean("backend", name, registry()))
            continue
        reason = _why_not(name, attack, input_range)
        if reason:
            problems.append(reason)
    return problems


def backends_with(
    attack: str,
    norm: str | None = None,
    mode: str | None = None,
    among: Sequence[str] | None = None,
    last_point: bool = False,
) -> tuple[str, ...]:
    """The backends (``among`` those named; all when None, empty or ``("all",)``) whose
    declared capabilities cover ``attack``, in ``norm`` and targeting ``mode`` when given,
    and (``last_point``) that return the point after the attack's last step: the one answer
    to "which backends can run X" for code that has no full attack spec."""
    names = among if among and tuple(among) != ("all",) else backend_names()
    out = []
    for name in names:
        cap = adapter_class(name).capabilities.get(attack)
        if (
            cap
            and (norm is None or norm in cap.norms)
            and (mode is None or mode in cap.targets)
            and (cap.last_point or not last_point)
        ):
            out.append(name)
    return tuple(out)


def capable_backends(attack: AttackSpec, input_range: Sequence[float]) -> tuple[str, ...]:
    return tuple(b for b in backend_names() if _why_not(b, attack, input_range) is None)


def dropped_backends(attack: AttackSpec, input_range: Sequence[float]) -> dict[str, str]:
    """For ``backends: all``: each backend that has the attack but cannot run it as asked
    (norm, target, a fixed parameter, the input range, ...), with the reason. The report and
    summary.json say so, so a missing backend is never a silent gap."""
    if attack.backends != ("all",):
        return {}
    out = {}
    for name in backend_names():
        if attack.name in adapter_class(name).capabilities:
            reason = _why_not(name, attack, input_range)
            if reason:
                out[name] = reason
    return out
