"""README.md's numbers are what the shipped weights give (bench/readme_numbers.py formats them).

The quickstart table is checked against a fresh run of scenarios/quickstart.yaml (about 35 s on
2 idle cores); every other generated block against the summary.json that `make readme-numbers`
stored for its scenario (bench/readme_summaries/) or the `make bench` results file it quotes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import unified_adv

REPO = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_numbers", REPO / "bench/readme_numbers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quickstart(quickstart_run: unified_adv.RunResult) -> Path:
    return quickstart_run.out_dir / "summary.json"  # conftest: one quickstart run per session


def test_the_readme_quickstart_table_is_what_the_quickstart_gives(quickstart: Path) -> None:
    gen = _generator()
    summary = json.loads(quickstart.read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    expected = gen.block("quickstart", summary)
    assert expected in readme, "README.md is stale: run `make readme-numbers`\n" + expected
    assert summary["model"]["fingerprint"][:16] in expected


def test_check_mode_reports_a_stale_table(quickstart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = _generator()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- numbers:quickstart -->\nSTALE-TABLE\n<!-- /numbers:quickstart -->\n", encoding="utf-8")
    args = ["--readme", str(readme), "--only", "quickstart", "--summary", f"quickstart={quickstart}"]
    assert gen.main([*args, "--check"]) == 1
    assert "-STALE-TABLE" in capsys.readouterr().out
    assert readme.read_text(encoding="utf-8").count("STALE-TABLE") == 1  # --check writes nothing
    assert gen.main(args) == 0 and gen.main([*args, "--check"]) == 0
    readme.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no <!-- numbers:quickstart -->"):
        gen.main(args)


# --- every generated block, from the stored summaries and bench results (no run; a second) ---

#: Documentation tables whose digits are defaults, exit codes or counts, not measurements.
#: A table of measured numbers belongs in a generated block; adding one here needs a reason.
NOT_MEASURED = {
    "| exit code | meaning | what is on disk |",  # exit codes
    "| attack | threat | parameters (default) | ART | Foolbox | torchattacks |",  # defaults
    "| attack | adv-lib | secml-torch |",  # library functions and norms (l2, l0, ...)
    "| verdict | meaning |",  # thresholds named in the text
    "| defence | fields (default) | what it is |",  # defaults
    "| D | 0.5° | 1° | 2° |",  # image counts of the line data set: combinatorics, no weights
    "| column | meaning |",  # column names
    "| source | runs code from the file? | trust flag |",  # model sources (file kinds)
}

#: The hand-typed tables still standing for the blocks in PENDING (allowed only while pending).
PENDING_TABLES = {
    "| norm | ζ | R_f (random control) | R_s → 3 | R_s → 8 |": "zingade-uap",
    "| surrogate \\ target | cnn | mlp | wide-cnn |": "zingade-transfer",
    "| checkpoint (epoch) | accuracy | valid pairs | pop-up share (valid / all pairs) | morph balance B (valid / all) |": (
        "ding-moller"
    ),
    "| configuration | images | adversarial share | per model | images with an adversarial flip | cand/s |": "kugler",
}


def _summaries(gen: ModuleType) -> dict[str, dict[str, Any]]:
    """Each block's input: the scenario summary stored by `make readme-numbers`, or bench JSON."""
    out = {}
    for name, (source, _) in gen.TABLES.items():
        if name in gen.PENDING or name == "quickstart":  # quickstart: checked against a fresh run above
            continue
        out[name] = gen.stored_summary(source) if source.endswith(".yaml") else gen.load_source(name, {})
    return out


def _expected_values(gen: ModuleType, name: str, s: dict[str, Any]) -> list[str]:
    """Values read straight from the summary that the block must show (formatted as the README does)."""
    pct = gen.pct
    if name == "quickstart":
        return [pct(a["robust_accuracy"]) for a in s["attacks"] if a["attack"] == "fgsm"]
    if name == "lim":
        return [pct(r["attacked"]["accuracy"]) for r in s["defences"]["table"]]
    if name == "zingade-uap":
        return [pct(r["rate"]) for r in gen._analysis(s, "uap")["rows"] if not r["empty"]]
    if name == "zingade-transfer":
        run = next(iter(gen._analysis(s, "transfer")["backends"].values()))
        return [pct(v) for row in run["matrix"] for v in row]
    if name == "ding-moller":
        return [f"{m['robustness_index']:.1f}" for m in s["monitor"]] + [pct(m["accuracy"]) for m in s["monitor"]]
    if name == "possas":
        q = gen._analysis(s, "confidence_buckets", "quantile")
        return [pct(b["top1"]) for t in q["tables"][q["primary_backend"]] for b in t["buckets"].values()]
    if name == "kugler":
        return [gen.pct2(c["adversarial_share"]) for c in gen._analysis(s, "pixel_flip_study")["configs"]]
    if name == "bench:overhead":
        return [f"{r['ours_s']:.3f} s" for r in s["rows"]]
    if name == "bench:speed":
        return [f"{100 * r['success_rate']:.0f} %" for per in s["attacks"].values() for r in per.values()]
    if name == "bench:scaling":
        return [f"{r['run_seconds']:.1f}" for r in s["rows"]]
    if name == "bench:pixelflip":
        return [f"{sp['candidates_per_s']['fast']:,.0f}" for sp in s["speeds"]]
    if name == "bench:engines":
        return [f"{s['morph']['sweep_images_per_s']:,.0f}"]
    if name == "bench:scaleout":
        return [f"{r['median_s']:.2f} s" for r in s["rows"]]
    if name == "lim-eot":
        return [pct(e["success_rate"]) for e in s["defences"]["entries"]
                if e["defence"] == "randomization" and e["evaluation"] == "adaptive"]
    if name == "bench:audit-lbfgs":
        return [f"{s['lbfgs']['reached']}/{s['lbfgs']['n']}", f"{s['lbfgs']['median_l2']:.2f}"]
    if name == "bench:audit-scoring":
        return [f"{s['scoring']['cw_l2']['robust_accuracy']:.3f}", pct(s["scoring"]["square"]["success_rate"])]
    if name == "bench:audit-ties":
        return [f"{s['deepfool_ties'][b]['ties']} samples" for b in ("torchattacks",)]
    if name == "bench:audit-noise":
        return [f"({s['noise_scale']['pooled_std']:.3f})"]
    if name == "bench:audit-differences":  # an experiment not in the file yet is named instead
        shown = {"cw_stall": lambda r: f"{r['gap_before']:.3f}", "pgd_l2": lambda r: f"{r['single_gap']:.3f}",
                 "deepfool_candidates": lambda r: f"{r['art_median_l2']:.3f}",
                 "boundary": lambda r: f"{r['25x20']['median_l2']:.2f}"}
        return [f(s[k]) for k, f in shown.items() if k in s] + [k for k in gen.DIFFERENCES if k not in s]
    if name == "bench:audit-builtin":
        return [pct(s["retrain"]["shipped"])]
    if name == "bench:autoattack":
        return [f"{r[k]:.1f} s" for r in s["timing"].values() for k in ("median_s", "median_cpu_s")] + [
            f"{v['pgd_robust']} / {s['samples']}" for v in s["versus_pgd"].values()
        ]
    if name == "bench:at-size":
        return [f"{r['ours_s']:.2f} s" for k in ("at_32", "at_224") for r in s.get(k, {}).get("rows", [])]
    if name == "bench:at-size-memory":
        if s.get("memory") is None or s.get("report") is None:
            return ["not measured in this run"]
        return [f"{r['peak_rss_mib']:.0f}" for r in s["memory"]["rows"]]
    if name == "bench:shapes-example":
        r = s["run"]
        return [pct(s["train"]["test_accuracy"]), pct(r["clean_accuracy"]), f"{r['peak_rss_mib']:,.0f} MiB",
                f"in {r['seconds']:.0f} s", s["train"]["weights_sha256"][:16]] + [pct(a["success_rate"]) for a in r["attacks"]]
    raise AssertionError(f"no expected values for the README block {name}: add them here")


def test_every_readme_block_is_its_stored_summary_formatted() -> None:
    gen = _generator()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, summary in _summaries(gen).items():
        text = gen.block(name, summary)
        assert text in readme, f"README.md block {name} is stale: run `make readme-numbers STORED=1`\n{text}"
        values = _expected_values(gen, name, summary)
        assert values and all(v in text for v in values), (name, [v for v in values if v not in text])


def _hand_typed_tables(readme: str) -> list[str]:
    """Headers of the markdown tables with digits in their body outside every generated block."""
    outside = re.sub(r"(?m)^<!-- ((?:numbers|bench):[\w-]+) -->$.*?^<!-- /\1 -->$", "", readme, flags=re.S)
    assert not re.search(r"(?m)^<!-- /?(?:numbers|bench):", outside), "a block marker without its pair"
    tables = [rows.splitlines() for rows in re.findall(r"(?m)(?:^\|.*\|\n)+", outside)]
    return [t[0] for t in tables if any(re.search(r"\d", r) for r in t[2:])]


def test_no_table_of_numbers_outside_a_generated_block() -> None:
    allowed = NOT_MEASURED | {h for h, name in PENDING_TABLES.items() if name in _generator().PENDING}
    found = _hand_typed_tables((REPO / "README.md").read_text(encoding="utf-8"))
    assert set(found) <= allowed, f"README.md: hand-typed tables of numbers: {set(found) - allowed}"
    generated = "<!-- bench:x -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /bench:x -->\n"
    assert _hand_typed_tables(generated + "| c | d |\n|---|---|\n| 3 % | x |\n") == ["| c | d |"]
    assert _hand_typed_tables(generated) == []


# --- measured figures in the prose ---------------------------------------------------------

#: What looks like a measured figure: a percentage, a decimal with two or more places (not a
#: version such as 2.14.1), a number in scientific notation, a timing (unless approximate:
#: "about 35 s", "~2 min" describe how long a command takes), a count such as 20/20 or 7 of 8.
FIGURE = re.compile(
    r"\d+(?:[.,]\d+)?\s?%"
    r"|(?<![\d.])\d+\.\d{2,}(?![\d.])"
    r"|(?<![\w.])\d(?:\.\d+)?e-\d+"
    r"|(?P<about>\babout\s+|~)?(?<![\d.])(?<!min )\d+(?:\.\d+)?\s?(?:s|ms|min)\b"
    r"|\b\d+/\d+\b|\b\d+ of \d+\b",
    re.I,
)

#: Figure-like tokens in the prose that are parameters, thresholds or quotations, not
#: measurements. Adding one needs a reason; a measured figure belongs in a generated block.
NOT_MEASURED_FIGURES = {
    "100 %": "the top of an accuracy or width scale in the warnings' definitions",
    "8/255": "an ε written as a scenario writes it (a parameter)",
    "40 %": "the threshold of the CI gating examples (a parameter a user chooses)",
    "0.01": "HopSkipJump's θ factor, the retrain test's tolerance (parameters)",
    "0.02": "DeepFool's overshoot",
    "0.04": "Zingade's ζ",
    "0.05": "ε and learning rates",
    "0.15": "Possas's confidence thresholds",
    "0.30": "Possas's confidence thresholds",
    "0.25": "the line CNN's dropout",
    "0.55": "the line data set's segment width",
    "2.14": "the torch version",
    "1.10": "Ding & Möller's paper's threshold, quoted",
    "1/3": "Ding & Möller's paper's pop-up share, quoted",
    "1/2": "a probability of the randomization layer",
    "1/255": "α as a fraction of the input range",
    "0/0": "a division",
    "95 %": "confidence levels and the 5–95 % quantile range",
    "4 %": "the review's ζ",
    "1e-3": "a learning rate",
    "1e-4": "Foolbox's DeepFool offset, the pixel-flip engines' window",
    "1e-5": "the tie margin and test tolerances",
    "1e-10": "torchattacks' normaliser",
}


def _prose_figures(readme: str) -> list[str]:
    """Figure-like tokens in README prose outside generated blocks, code and tables, less
    NOT_MEASURED_FIGURES: each as 'TOKEN: line'."""
    outside = re.sub(r"(?ms)^<!-- ((?:numbers|bench):[\w-]+) -->$.*?^<!-- /\1 -->$", "", readme)
    outside = re.sub(r"(?ms)^```.*?^```$", "", outside)
    tables = re.sub(r"(?m)^\|.*$", "", outside)  # test_no_table_of_numbers_outside_a_generated_block
    prose = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), tables)  # code: names, values as typed
    lines = prose.splitlines()
    return [  # over the whole text, so that "about\n35 s" wrapped over two lines is still one phrase
        f"{m.group(0)}: {lines[prose.count(chr(10), 0, m.start())].strip()}"
        for m in FIGURE.finditer(prose)
        if not m.group("about") and m.group(0) not in NOT_MEASURED_FIGURES
    ]


def test_no_measured_figure_in_the_prose_outside_a_generated_block() -> None:
    found = _prose_figures((REPO / "README.md").read_text(encoding="utf-8"))
    assert not found, "README.md: measured figures typed by hand (generate them):\n" + "\n".join(found)


def test_the_prose_check_catches_a_hand_typed_figure() -> None:
    clean = "ε = 0.05, about 35 s, `0.463` in code, 95 % intervals.\n"
    generated = "<!-- bench:x -->\nmedian L2 0.463 in 6 s, 20/20 targets\n<!-- /bench:x -->\n"
    assert _prose_figures(clean + generated + "| a | 12.3 % |\n") == []
    for planted in ("median L2 0.463", "12.3 % success", "in 6 s", "reaches 20/20", "7 of 8 digits",
                    "gap 8.6e-3", "took 1.5 min"):
        assert len(_prose_figures(clean + generated + planted + "\n")) == 1, planted
