"""The UAP and transfer analyses inside a scenario run: summary, report, resume, errors."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

import unified_adv

STUDIES = """
name: studies
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 120}
attacks:
  - {name: fgsm, eps: 0.1, backends: [torchattacks]}
analyses:
  - name: uap
    norms: [linf]
    zetas: [0.3]
    targets: [3]
    fit_images: 200
  - name: transfer
    models:
      - {id: cnn, builtin: digits-cnn}
      - {id: mlp, builtin: digits-mlp}
    eps: 0.15
    backends: [torchattacks, foolbox]
report: {triptychs: 0}
"""


@pytest.fixture(scope="module")
def studies_run(tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    folder = tmp_path_factory.mktemp("studies")
    path = folder / "scenario.yaml"
    path.write_text(STUDIES.lstrip(), encoding="utf-8")
    return unified_adv.run(unified_adv.load_scenario(path), folder / "out")


def test_uap_entry(studies_run: unified_adv.RunResult) -> None:
    uap = next(a for a in studies_run.summary["analyses"] if a["name"] == "uap")
    assert uap["fit_images"] == 200 and uap["eval_images"] == 120
    assert uap["fit_from"] == "the first 200 images of the digits training split"
    kinds = {(r["kind"], r["target"]) for r in uap["rows"]}
    assert kinds == {("untargeted", None), ("targeted", 3)}
    for row in uap["rows"]:
        assert row["uap_norm"] <= row["radius"] * (1 + 1e-5) + 1e-6
        # At L-inf zeta 0.3 the UAPs beat their random controls by far on the shipped
        # digits CNN. Measured on this scenario, scenario seeds 0-3: untargeted R_f
        # 0.792-0.825 vs control 0.020-0.053 (margin 0.749-0.805), targeted R_s 0.850-0.956
        # vs 0.000-0.009 (margin 0.845-0.952). The largest seed-to-seed range is 0.107; the
        # 0.3 margin asked is the smallest measured margin less 4 such ranges. (Weights
        # retrained on another CPU once gave R_f 0.333 here: the rate at this zeta depends
        # strongly on the weights, which is why they ship with the package.)
        assert row["rate"] > row["control_rate"] + 0.3


def test_transfer_entry(studies_run: unified_adv.RunResult) -> None:
    tr = next(a for a in studies_run.summary["analyses"] if a["name"] == "transfer")
    assert [m["id"] for m in tr["models"]] == ["cnn", "mlp"]
    assert set(tr["backends"]) == {"torchattacks", "foolbox"}
    a, b = tr["backends"]["torchattacks"], tr["backends"]["foolbox"]
    assert a["matrix"] == b["matrix"]  # deterministic PGD, no random start: same on both
    m = a["matrix"]
    assert m[0][0] > m[0][1] and m[1][1] > m[1][0]  # white box beats transfer
    assert a["n_samples"] + a["dropped"]["total"] == 120


def test_report_sections_and_images(studies_run: unified_adv.RunResult) -> None:
    html = studies_run.report.read_text(encoding="utf-8")
    assert "Universal adversarial perturbations: uap" in html
    assert "Black-box transfer: transfer" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 5
    for blob in images:
        assert base64.b64decode(blob)[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_reuses_the_analysis_units(
    studies_run: unified_adv.RunResult, tmp_path: Path
) -> None:
    scenario = unified_adv.load_scenario(studies_run.out_dir.parent / "scenario.yaml")
    again = unified_adv.run(scenario, studies_run.out_dir, resume=True)
    before = {a["name"]: a for a in studies_run.summary["analyses"]}
    after = {a["name"]: a for a in again.summary["analyses"]}
    assert after["uap"]["rows"] == before["uap"]["rows"]
    assert after["transfer"]["backends"] == before["transfer"]["backends"]


def test_study_input_errors(cli, write_scenario) -> None:
    path = write_scenario(
        """
        name: bad
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 20}
        analyses:
          - {name: uap, zetas: [1.5], norms: [l2, l2], eps: 0.1}
          - {name: transfer, models: [{id: a, builtin: digits-cnn}]}
        """
    )
    result = cli("validate", path)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{path}: analyses[0].eps: uap takes no 'eps' (it takes: norms, zetas, targets, "
        "attacker, max_iter, delta, fit_images, seed, success_over)",
        f"{path}: analyses[0].zetas: give magnitudes as fractions of the data norm, in (0, 1)",
        f"{path}: analyses[0].norms: give distinct norms: l2, linf",
        f"{path}: analyses[1].models: give at least two models (surrogates and targets)",
        f"{path}: analyses[1].eps: required: the transfer PGD is bounded by an eps-ball",
    ]


def test_uap_target_beyond_the_classes(cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(
        """
        name: bad-target
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 20}
        analyses:
          - {name: uap, targets: [12], norms: [linf], zetas: [0.1]}
        """
    )
    result = cli("run", path, "--out", tmp_path / "o")
    assert result.code == 2
    assert result.err.strip() == (
        f"{path}: analyses[0].targets: must be below the model's 10 classes, got 12"
    )
