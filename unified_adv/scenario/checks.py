"""Checks across a scenario's sections, run once its sections are valid (AutoAttack's
``checks.py`` style: one function per check, each returning its problems as
``"field.path: message"`` lines).

Here rather than in the schema because some need other layers (what each backend can run,
from the adapters registry), and all must keep one order: a scenario with several problems
lists them in the order of :data:`CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable

from unified_adv.adapters import backend_names, backends_with, capable_backends, check_backends
from unified_adv.catalogue.speed import fastest_backend
from unified_adv.errors import did_you_mean
from unified_adv.scenario.schema import AttackSpec, Scenario


def backends_capable(s: Scenario) -> list[str]:
    """Each attack's backends can run it as asked (norm, target, parameters, input range)."""
    return [
        f"attacks[{i}].backends: {msg}"
        for i, attack in enumerate(s.attacks)
        for msg in check_backends(attack, s.model.input_range)
    ]


def eps_within_range(s: Scenario) -> list[str]:
    """An L-inf eps wider than the input range is no bound at all (every image lies in
    the ball): a typo, e.g. 8 for 8/255. The L2 bound needs the image size: prepare()."""
    lo, hi = s.model.input_range
    width = hi - lo
    out = []
    bounded: list[tuple[str, str | None, tuple[float, ...]]] = [
        (f"attacks[{i}].eps", a.norm, a.eps) for i, a in enumerate(s.attacks) if a.eps
    ]
    bounded += [
        (f"analyses[{i}].eps", a.norm or "linf", (a.eps,))
        for i, a in enumerate(s.analyses)
        if a.eps is not None
    ]
    for where, norm, values in bounded:
        if norm == "linf" and max(values) > width:
            out.append(
                f"{where}: {max(values):g} is wider than the whole input range "
                f"[{lo:g}, {hi:g}]: every image lies in that L-inf ball; give eps in "
                "input units (e.g. 8/255 for images in [0, 1])"
            )
    return out


def line_cnn_on_lines(s: Scenario) -> list[str]:
    if s.model.builtin == "line-cnn" and s.data.builtin != "lines":
        return ["model.builtin: line-cnn is trained on the lines data: use data: {builtin: lines, ...}"]
    return []


def something_to_run(s: Scenario) -> list[str]:
    if not s.attacks and not s.analyses:
        return ["attacks: give at least one attack (or an analysis under analyses)"]
    return []


def walk_backends_known(s: Scenario) -> list[str]:
    """The targeted walk's backends are names of the registry (or 'all') whose BIM returns
    the point after its step (the walk goes on from it)."""
    out = []
    for i, analysis in enumerate(s.analyses):
        if analysis.name != "targeted_walk":
            continue
        for name in analysis.backends or ():
            if name != "all" and name not in backend_names():
                out.append(
                    f"analyses[{i}].backends: {did_you_mean('backend', name, backend_names())}"
                )
            elif name != "all" and not backends_with("bim", among=[name], last_point=True):
                out.append(
                    f"analyses[{i}].backends: backend '{name}' cannot take the walk's steps: its "
                    "BIM does not return the point after its step"
                )
    return out


def _repeated_labels(section: str, what: str, labels: list[str]) -> list[str]:
    return [
        f"{section}[{i}].id: '{label}' is used twice; give each {what} its own id"
        for i, label in enumerate(labels)
        if label in labels[:i]
    ]


def analysis_ids_unique(s: Scenario) -> list[str]:
    return _repeated_labels("analyses", "analysis", [a.label for a in s.analyses])


def attack_ids_unique(s: Scenario) -> list[str]:
    return _repeated_labels("attacks", "attack", [a.label for a in s.attacks])


def defences_fit(s: Scenario) -> list[str]:
    """Each defence's id is its own, what it chains and the attacks it names exist, the
    autoencoder has its digits data, and there are attacks to evaluate defences under."""
    out: list[str] = []
    for i in range(len(s.defences)):
        out += _defence_problems(s, i)
    if s.defences and not s.attacks:
        out.append("defences: defences are evaluated under the attacks: give at least one attack")
    return out


def _defence_problems(s: Scenario, i: int) -> list[str]:
    d = s.defences[i]
    ids = [e.label for e in s.defences]
    kinds = {e.label: e.name for e in s.defences}
    attack_labels = [a.label for a in s.attacks]
    out: list[str] = []
    if d.label in ids[:i]:
        out.append(f"defences[{i}].id: '{d.label}' is used twice; give each its own id")
    for j, ref in enumerate(d.of or ()):
        if ref not in kinds:
            out.append(f"defences[{i}].of[{j}]: {did_you_mean('defence id', ref, set(ids))}")
        elif kinds[ref] == "chain":
            out.append(f"defences[{i}].of[{j}]: '{ref}' is itself a chain; list its parts")
    for j, ref in enumerate(d.attacks or ()):
        if ref not in attack_labels:
            out.append(
                f"defences[{i}].attacks[{j}]: {did_you_mean('attack id', ref, attack_labels)}"
            )
    if d.name == "autoencoder" and s.data.builtin != "digits":
        out.append(
            f"defences[{i}].name: the autoencoder is built in for the digits data "
            "(data: {builtin: digits}) only"
        )
    return out


#: Every check, in the order their problems are listed.
CHECKS: tuple[Callable[[Scenario], list[str]], ...] = (
    backends_capable,
    eps_within_range,
    line_cnn_on_lines,
    something_to_run,
    walk_backends_known,
    analysis_ids_unique,
    attack_ids_unique,
    defences_fit,
)


def scenario_problems(s: Scenario) -> list[str]:
    """Every problem across the scenario's sections, as ``"field.path: message"`` lines."""
    return [problem for check in CHECKS for problem in check(s)]


def backends_for(s: Scenario, attack: AttackSpec) -> tuple[str, ...]:
    """The backends that run ``attack``: those named, every capable one for ``all``, the
    fastest capable one for ``fastest``."""
    if attack.backends == ("all",):
        return capable_backends(attack, s.model.input_range)
    if attack.backends == ("fastest",):
        return (fastest_backend(attack.name, capable_backends(attack, s.model.input_range)),)
    return attack.backends
