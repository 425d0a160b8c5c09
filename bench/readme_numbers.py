"""Regenerate README.md's number tables from runs of their scenarios (``make readme-numbers``).

Each generated table lives between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->``
in README.md. This script re-runs the table's scenario (or reads an existing run's
summary.json with ``--summary NAME=PATH``), formats the table from summary.json, and
rewrites the block; ``--check`` rewrites nothing, prints a diff and exits 1 when the README
differs. The numbers are formatted here, not computed: whatever summary.json says (its
robust accuracy, success rate and median distances) is what the README shows.

Usage:
    python bench/readme_numbers.py                 # re-run every table's scenario, rewrite
    python bench/readme_numbers.py --check         # compare only (exit 1 and a diff if stale)
    python bench/readme_numbers.py --only quickstart --summary quickstart=reports/quickstart/summary.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BACKENDS = ("art", "foolbox", "torchattacks")
NAMES = {"art": "ART", "foolbox": "Foolbox", "torchattacks": "torchattacks"}

Summary = dict[str, Any]


def _entries(summary: Summary, attack: str, norm: str | None = None) -> list[dict[str, Any]]:
    return [
        a
        for a in summary["attacks"]
        if a["attack"] == attack and (norm is None or a["norm"] == norm)
    ]


def _one(summary: Summary, attack: str, norm: str | None, eps: float | None, backend: str) -> dict[str, Any]:
    for a in _entries(summary, attack, norm):
        if a["backend"] == backend and (eps is None or _same(a["eps"], eps)):
            return a
    raise KeyError(f"summary.json has no {attack} {norm} eps={eps} on {backend}")


def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(float(a) - b) < 1e-9


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _verdict(summary: Summary, attack: str, norm: str | None, eps: float | None) -> str:
    """The cross-check's verdicts for one attack × ε: one word when every pair agrees."""
    pairs = [
        p
        for p in summary["crosscheck"]["pairs"]
        if p["attack"] == attack
        and (norm is None or p["norm"] == norm)
        and (eps is None or _same(p["eps"], eps))
    ]
    verdicts = {p["verdict"] for p in pairs}
    if len(verdicts) == 1:
        return verdicts.pop()
    return "; ".join(f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} {p['verdict']}" for p in pairs)


def _row(label: str, cells: list[str], agreement: str) -> str:
    return f"| {label} | " + " | ".join(cells) + f" | {agreement} |"


def quickstart_table(summary: Summary) -> str:
    """The opening table of README.md, from scenarios/quickstart.yaml's summary.json."""
    lines = [
        "| attack | " + " | ".join(NAMES[b] for b in BACKENDS) + " | cross-check verdict |",
        "|---|---|---|---|---|",
    ]
    fgsm = [pct(_one(summary, "fgsm", "linf", 0.1, b)["robust_accuracy"]) for b in BACKENDS]
    lines.append(_row("FGSM L∞ ε=0.1, robust accuracy", fgsm, _verdict(summary, "fgsm", "linf", 0.1)))
    steps = (0.05, 0.1, 0.2)
    pgd = [
        " / ".join(f"{100 * _one(summary, 'pgd', 'linf', e, b)['robust_accuracy']:.1f}" for e in steps) + " %"
        for b in BACKENDS
    ]
    verdicts = {_verdict(summary, "pgd", "linf", e) for e in steps}
    lines.append(
        _row(
            "PGD L∞ ε=0.05 / 0.1 / 0.2, robust accuracy",
            pgd,
            verdicts.pop() if len(verdicts) == 1 else " / ".join(_verdict(summary, "pgd", "linf", e) for e in steps),
        )
    )
    l2 = [pct(_one(summary, "pgd", "l2", 1.0, b)["robust_accuracy"]) for b in BACKENDS]
    lines.append(_row("PGD L2 ε=1, robust accuracy", l2, _verdict(summary, "pgd", "l2", 1.0)))
    for attack, label in (
        ("deepfool", "DeepFool, success / median L2"),
        ("cw_l2", "C&W L2 (100 steps, lr 0.05, c 1), success / median L2"),
    ):
        cells = []
        for b in BACKENDS:
            a = _one(summary, attack, None, None, b)
            ties = a.get("n_ties", 0)
            cells.append(
                f"{pct(a['success_rate'])} / {_num(a['median_l2_fooled'])}"
                + (f" ({ties} ties)" if ties else "")
            )
        lines.append(_row(label, cells, _verdict(summary, attack, None, None)))
    return "\n".join(lines) + "\n\n" + pixel_line(summary) + "\n\n" + fingerprint_line(summary)


def pixel_line(summary: Summary) -> str:
    """The largest per-pixel gap of each backend pair on PGD L2 ε=1 (the cross-check's figure)."""
    gaps = [
        f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} {p['max_pixel_diff']:.3g}"
        for p in summary["crosscheck"]["pairs"]
        if p["attack"] == "pgd" and p["norm"] == "l2" and _same(p["eps"], 1.0)
    ]
    return "Largest per-pixel difference between backends on PGD L2 ε=1: " + ", ".join(gaps) + "."


def fingerprint_line(summary: Summary) -> str:
    model, data = summary["model"], summary["data"]
    held_out = model.get("held_out_accuracy")
    acc = f", held-out accuracy {100 * held_out:.1f} %" if held_out is not None else ""
    scoring = summary["provenance"].get("scoring", {})
    return (
        f"*{model['description']}{acc}; model fingerprint `{model['fingerprint'][:16]}` "
        f"(summary.json `model.fingerprint`); {data['n_evaluated']} images, clean accuracy "
        f"{pct(data['clean_accuracy'])}; torch {summary['provenance']['versions']['torch'].split('+')[0]}, "
        f"scoring in batches of {scoring.get('batch_size', '?')} on "
        f"{scoring.get('torch_threads', '?')} thread. Generated by `make readme-numbers`.*"
    )


#: Every generated table: its scenario and its formatter.
TABLES: dict[str, tuple[str, Callable[[Summary], str]]] = {
    "quickstart": ("scenarios/quickstart.yaml", quickstart_table),
}


def run_summary(name: str) -> Summary:
    """Run the table's scenario into a temporary folder; its summary.json."""
    import unified_adv

    scenario = unified_adv.load_scenario(REPO / TABLES[name][0])
    with tempfile.TemporaryDirectory() as tmp:
        return unified_adv.run(scenario, Path(tmp) / name).summary


def block(name: str, summary: Summary) -> str:
    return f"<!-- numbers:{name} -->\n{TABLES[name][1](summary)}\n<!-- /numbers:{name} -->"


def replace_block(text: str, name: str, new_block: str) -> str:
    pattern = re.compile(rf"<!-- numbers:{re.escape(name)} -->.*?<!-- /numbers:{re.escape(name)} -->", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md: no <!-- numbers:{name} --> ... <!-- /numbers:{name} --> block")
    return pattern.sub(lambda _: new_block, text, count=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 with a diff if stale")
    p.add_argument("--only", nargs="*", choices=sorted(TABLES), help="tables to regenerate")
    p.add_argument("--summary", action="append", default=[], metavar="NAME=PATH", help="use this run's summary.json")
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    given = dict(s.split("=", 1) for s in args.summary)
    old = args.readme.read_text(encoding="utf-8")
    new = old
    for name in args.only or TABLES:
        summary = json.loads(Path(given[name]).read_text(encoding="utf-8")) if name in given else run_summary(name)
        new = replace_block(new, name, block(name, summary))
    if new == old:
        print("README.md numbers are up to date", file=sys.stderr)
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "regenerated"))
        return 1
    args.readme.write_text(new, encoding="utf-8")
    print("README.md: number tables rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
