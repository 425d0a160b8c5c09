"""Labels the reader sees: notes per norm and mode, eps as the scenario wrote it, minimal
attacks without an eps heading, backends that `backends: all` left out, and the CLI's
--version, --help and `list` texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unified_adv
from unified_adv.adapters import adapter_class

SCENARIO = """
name: labels
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 40}
attacks:
  - {name: fgsm, eps: [8/255, 0.1], backends: all}
  - {name: pgd, eps: 8/255, steps: 5, backends: [foolbox, torchattacks]}
  - {name: pgd, norm: l2, eps: 1, steps: 5, backends: [torchattacks]}
  - {name: deepfool, steps: 10, limit: 10, backends: [foolbox]}
report: {triptychs: 1}
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    scenario = unified_adv.scenario_from_text(SCENARIO)
    return unified_adv.run(scenario, tmp_path_factory.mktemp("labels"), progress=False)


def _note(result: unified_adv.RunResult, attack_id: str, backend: str) -> str:
    (entry,) = {
        a["backend"] + a["attack_id"]: a
        for a in result.summary["attacks"]
        if a["attack_id"] == attack_id and a["backend"] == backend
    }.values()
    return str(entry["note"])


def test_notes_belong_to_their_norm_and_mode(result: unified_adv.RunResult) -> None:
    pgdl2 = "PGDL2"
    assert pgdl2 not in _note(result, "pgd", "torchattacks")  # L-inf PGD
    assert pgdl2 in _note(result, "pgd-l2", "torchattacks")
    assert "targeted" not in _note(result, "fgsm", "foolbox")  # untargeted FGSM
    cap = adapter_class("foolbox").capabilities["fgsm"]
    assert "raises on targeted" in cap.note_for("linf", targeted=True)


def test_eps_is_shown_as_the_scenario_wrote_it(result: unified_adv.RunResult) -> None:
    summary = json.loads((result.out_dir / "summary.json").read_text())
    fgsm = [a for a in summary["attacks"] if a["attack_id"] == "fgsm"]
    assert {(a["eps_text"], round(a["eps"], 6)) for a in fgsm} == {
        ("8/255", round(8 / 255, 6)),
        ("0.1", 0.1),
    }
    for item in summary["crosscheck"]["pairs"] + summary["crosscheck"]["worst_case"]:
        assert item["eps_text"] in ("8/255", "0.1")
    html = (result.out_dir / "index.html").read_text()
    assert '<td>foolbox</td><td class="n">8/255</td>' in html  # the per-attack table
    assert '<td><a href="#attack-fgsm">fgsm</a></td><td class="n">8/255</td>' in html  # summary
    assert "ε = 0.03137" not in html and "ε 0.03137" not in html
    assert '<td class="n">0.03137</td><td>' not in html  # no eps cell before a backend column
    # A minimal attack has no eps: its examples are not headed "at ε = –".
    assert "Minimal-perturbation examples" in html and "ε = –" not in html


def test_backends_all_says_which_backend_it_dropped_and_why(tmp_path: Path) -> None:
    text = """
name: r255
model: {builtin: digits-cnn, input_range: [0, 255], mean: [0], std: [255]}
data: {builtin: digits, limit: 30}
attacks: [{name: fgsm, eps: 8, backends: all}]
report: {triptychs: 0}
"""
    result = unified_adv.run(unified_adv.scenario_from_text(text), tmp_path, progress=False)
    assert {a["backend"] for a in result.summary["attacks"]} == {"art", "foolbox"}
    (dropped,) = result.summary["dropped_backends"]
    assert dropped["backend"] == "torchattacks" and "input_range [0, 1]" in dropped["reason"]
    html = (tmp_path / "index.html").read_text()
    assert "Not run on <b>torchattacks</b>" in html


def test_cli_version(cli) -> None:
    res = cli("--version")
    assert res.code == 0 and res.out.strip() == f"unified-adv {unified_adv.__version__}"
    import importlib.metadata

    assert unified_adv.__version__ == importlib.metadata.version("unified-adv")


def test_run_help_keeps_the_dask_extra(cli) -> None:
    res = cli("run", "--help")
    assert res.code == 0 and "unified-adv[dask]" in res.out


def test_list_shows_random_starts_where_the_attack_has_them(cli) -> None:
    res = cli("list")
    assert res.code == 0
    starts = {}
    for line in res.out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 9 and cells[2] in ("art", "foolbox", "torchattacks"):
            starts[(cells[1], cells[2])] = cells[6]
    assert starts[("pgd", "art")] == "any"
    assert starts[("pgd", "foolbox")] == starts[("pgd", "torchattacks")] == "0..1"
    assert starts[("fgsm", "art")] == "n/a"  # FGSM has no random start
