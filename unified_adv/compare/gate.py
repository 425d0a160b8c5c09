"""``unified-adv check``: gate one run on robustness requirements, optionally as JUnit XML.

A requirement reads ``ATTACK@EPS>=VALUE``: ATTACK is an attack id or an attack name (a name
stands for every attack of that name in the run), EPS a number or a fraction (``8/255``), VALUE
a fraction (``0.40``) or a percentage (``40%``) that the worst-case robust accuracy across
backends must reach. ``ATTACK@EPS>=lo:VALUE`` applies it to the lower bound of the 95 %
interval instead (the run's ``robust_accuracy_ci`` when it has one, else Clopper–Pearson).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from unified_adv.compare.runs import Row, RunFolder, all_rows
from unified_adv.errors import InputError
from unified_adv.files import atomic_write_bytes

FIELD = "--require"
_SYNTAX = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9_.\-]+)\s*@\s*(?P<eps>[0-9.eE+\-]+(?:/[0-9.eE+\-]+)?)"
    r"\s*>=\s*(?P<lo>lo:)?\s*(?P<value>[0-9.]+)(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class Requirement:
    text: str
    name: str
    eps: float
    value: float
    lower_bound: bool

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """The requirement, or an :class:`InputError` saying what is malformed (one line)."""
        m = _SYNTAX.match(text)
        if m is None:
            raise InputError.one(
                "",
                FIELD,
                f"{text!r}: expected ATTACK@EPS>=VALUE or ATTACK@EPS>=lo:VALUE "
                "(e.g. 'pgd@8/255>=0.40')",
            )
        try:
            eps = float(Fraction(m["eps"])) if "/" in m["eps"] else float(m["eps"])
            value = float(m["value"]) / (100 if m["pct"] else 1)
        except (ValueError, ZeroDivisionError):
            raise InputError.one("", FIELD, f"{text!r}: ε or threshold is not a number") from None
        if not (math.isfinite(eps) and eps >= 0):
            raise InputError.one("", FIELD, f"{text!r}: ε must be a number >= 0")
        if not 0 <= value <= 1:
            raise InputError.one(
                "", FIELD, f"{text!r}: the threshold must lie in [0, 1] (or 0-100%)"
            )
        return cls(text.strip(), m["name"], eps, value, bool(m["lo"]))

    def matches(self, row: Row) -> bool:
        return (
            row.worst
            and row.defence == "none"
            and self.name in (row.attack_id, row.attack)
            and row.eps is not None
            and math.isclose(row.eps, self.eps, rel_tol=1e-6, abs_tol=1e-12)
        )


@dataclass(frozen=True)
class Outcome:
    """One JUnit test case: a requirement on one attack, or a cross-check pair."""

    classname: str
    name: str
    failure: str | None
    detail: str


def _measured(req: Requirement, row: Row) -> tuple[float | None, str]:
    if req.lower_bound:
        lo = row.ci[0] if row.ci else None
        return lo, "lower 95 % bound of the worst-case robust accuracy"
    return row.robust_accuracy, "worst-case robust accuracy"


def check_requirement(req: Requirement, rows: list[Row]) -> list[Outcome]:
    """One outcome per matching attack (none matching: one failed outcome)."""
    mine = [r for r in rows if req.matches(r)]
    if not mine:
        have = sorted(
            {f"{r.attack_id}@{r.eps_text}" for r in rows if r.worst and r.eps is not None}
        )
        why = f"{req.text}: no result for {req.name} at ε={req.eps:g} in this run (it has: {', '.join(have) or 'none'})"
        return [Outcome("requirements", req.text, why, why)]
    out = []
    for row in mine:
        value, what = _measured(req, row)
        where = f"{row.attack_id} @ {row.eps_text}"
        if value is None:
            why = f"{req.text}: {where} has no complete result (failed units)"
            out.append(Outcome("requirements", f"{req.text} [{row.attack_id}]", why, why))
            continue
        detail = f"{where}: {what} {value:.4f} (required >= {req.value:g})"
        failure = None if value >= req.value else f"{req.text}: {detail}"
        out.append(Outcome("requirements", f"{req.text} [{row.attack_id}]", failure, detail))
    return out


def crosscheck_outcomes(summary: dict[str, Any], no_divergent: bool) -> list[Outcome]:
    """One outcome per cross-check pair; a divergent pair fails under ``--no-divergent``."""
    pairs = list(summary["crosscheck"]["pairs"]) + list(
        (summary.get("defences") or {}).get("crosscheck", [])
    )
    out = []
    for p in pairs:
        eps = p.get("eps_text") or ("no ε" if p.get("eps") is None else f"{p['eps']:g}")
        where = f" [{p['defence']}]" if p.get("defence") else ""
        name = f"{p['attack_id']} @ {eps}{where}: {' vs '.join(p['backends'])}"
        detail = f"verdict: {p['verdict']}"
        failed = no_divergent and p["verdict"] == "divergent"
        out.append(
            Outcome("crosscheck", name, f"divergent backends: {name}" if failed else None, detail)
        )
    return out


def check_run(run: RunFolder, requirements: list[Requirement], no_divergent: bool) -> list[Outcome]:
    rows = list(all_rows(run).values())
    outcomes = [o for req in requirements for o in check_requirement(req, rows)]
    return outcomes + crosscheck_outcomes(run.summary, no_divergent)


def junit_xml(run: RunFolder, outcomes: list[Outcome]) -> bytes:
    """JUnit XML (Jenkins, GitLab and GitHub read it): one test case per outcome."""
    failures = sum(1 for o in outcomes if o.failure)
    suites = ET.Element("testsuites", tests=str(len(outcomes)), failures=str(failures))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"unified-adv check {run.name}",
        tests=str(len(outcomes)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=f"unified-adv.{o.classname}", name=o.name)
        if o.failure:
            ET.SubElement(case, "failure", message=o.failure, type="robustness").text = o.detail
        else:
            ET.SubElement(case, "system-out").text = o.detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, run: RunFolder, outcomes: list[Outcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, junit_xml(run, outcomes))
