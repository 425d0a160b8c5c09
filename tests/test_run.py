"""End to end: scenario -> units -> tables, summary and report; determinism and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import unified_adv
from unified_adv.evaluate.results import SAMPLE_COLUMNS

SCENARIO = """
name: e2e
seed: 3
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 120}
attacks:
  - {name: fgsm, eps: [0.1, 0.2]}
  - {name: pgd, eps: 0.1, steps: 10, step_size: 1/50, random_starts: 1, backends: [art, foolbox, torchattacks]}
  - {name: pgd, id: pgd-to-3, eps: 0.2, steps: 10, target: {class: 3}, backends: [art, torchattacks]}
report: {triptychs: 2}
execution: {shard_size: 50}
"""

TIMING = ["time_s"]


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "e2e.yaml"
    path.write_text(SCENARIO.lstrip(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first(scenario_path: Path, tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    return unified_adv.run(
        unified_adv.load_scenario(scenario_path), tmp_path_factory.mktemp("out1")
    )


def test_outputs_exist_and_agree(first: unified_adv.RunResult) -> None:
    out = first.out_dir
    for name in ("index.html", "summary.json", "samples.parquet", "samples.csv"):
        assert (out / name).is_file(), name
    parquet = pd.read_parquet(out / "samples.parquet")
    csv = pd.read_csv(out / "samples.csv")
    assert list(parquet.columns) == SAMPLE_COLUMNS
    pd.testing.assert_frame_equal(parquet, csv, check_dtype=False)
    assert not list(out.glob("**/*.tmp*")), "temporary files left behind"


def test_summary_numbers_follow_from_the_sample_table(first: unified_adv.RunResult) -> None:
    summary = json.loads((first.out_dir / "summary.json").read_text())
    samples = first.samples
    n_eval = summary["data"]["n_evaluated"]
    assert n_eval == 120
    assert summary["data"]["n_correct"] == round(summary["data"]["clean_accuracy"] * n_eval)
    # 2 fgsm eps x 3 backends + pgd x 3 + targeted pgd x 2
    assert len(summary["attacks"]) == 11
    for entry in summary["attacks"]:
        rows = samples[
            (samples.attack_id == entry["attack_id"])
            & (samples.eps == entry["eps"])
            & (samples.backend == entry["backend"])
        ]
        assert entry["status"] == "ok"
        assert entry["n_samples"] == len(rows) > 0
        assert entry["success_rate"] == pytest.approx(rows.success.mean())
        # Every row: robust accuracy = (attacked - fooled) / evaluated, fooled taken from the
        # success column; only_correct, so the correct samples an attack leaves alone (its
        # own target class) count as robust too: (correct - fooled) / evaluated.
        assert (rows.clean_pred == rows.label).all()
        fooled = int(rows.groupby("sample").success.any().sum())
        n_correct = summary["data"]["n_correct"]
        assert entry["robust_accuracy"] == pytest.approx((n_correct - fooled) / n_eval)
        # Medians over the fooled samples only.
        assert entry["median_l2_fooled"] == pytest.approx(rows[rows.success].l2.median())
        assert entry["median_linf_fooled"] == pytest.approx(rows[rows.success].linf.median())
        if entry["target"] == "untargeted":
            assert (rows.success == (rows.adv_pred != rows.label)).all()
        else:
            assert (rows.label != 3).all() and (rows.target == 3).all()
            assert (rows.success == (rows.adv_pred == 3)).all()
        assert entry["library_call"]["library"]
        assert set(entry["params"]) == (
            {"steps", "step_size", "random_starts", "eot_samples"}
            if entry["attack"] == "pgd"
            else {"eot_samples"}
        )
    # Distances are measured, and bounded by eps for L-inf attacks.
    assert (samples.linf <= samples.eps + 1e-6).all()
    assert (samples.l2 >= samples.linf - 1e-9).all()


def test_step_size_fraction_and_defaults_are_resolved_explicitly(
    first: unified_adv.RunResult,
) -> None:
    by_id = {(e["attack_id"], e["backend"]): e for e in first.summary["attacks"]}
    pgd = by_id[("pgd", "art")]
    assert pgd["params"] == {"steps": 10, "step_size": 1 / 50, "random_starts": 1, "eot_samples": 1}
    assert pgd["library_call"]["kwargs"]["eps_step"] == 1 / 50
    targeted = by_id[("pgd-to-3", "torchattacks")]
    assert targeted["params"]["step_size"] == pytest.approx(2.5 * 0.2 / 10)
    assert targeted["library_call"]["mode"] == "targeted_by_label"


def test_same_scenario_twice_gives_identical_tables(
    first: unified_adv.RunResult, scenario_path: Path, tmp_path: Path
) -> None:
    second = unified_adv.run(unified_adv.load_scenario(scenario_path), tmp_path / "out2")
    a = first.samples.drop(columns=TIMING)
    b = second.samples.drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    # Including the random-start PGD, whose RNGs are seeded per unit.
    assert (first.samples.attack_id == "pgd").any()
    for name in sorted((first.out_dir / "units").glob("*.npz")):
        x1 = np.load(name)["x_adv"]
        x2 = np.load(second.out_dir / "units" / name.name)["x_adv"]
        assert np.array_equal(x1, x2), name.name


def test_resume_reuses_finished_units(
    first: unified_adv.RunResult, scenario_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    scenario = unified_adv.load_scenario(scenario_path)
    unified_adv.run(scenario, out)
    # Lose some units, as a killed run would, then resume.
    lost = sorted((out / "units").glob("*.json"))[::3]
    for p in lost:
        p.unlink()
    again = unified_adv.run(scenario, out, resume=True)
    reused = [u for u in again.summary["units"] if u["reused"]]
    assert len(reused) == len(again.summary["units"]) - len(lost)
    pd.testing.assert_frame_equal(
        again.samples.drop(columns=TIMING), first.samples.drop(columns=TIMING)
    )


def test_resume_ignores_units_made_for_another_scenario(
    scenario_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "changed"
    scenario = unified_adv.load_scenario(scenario_path)
    unified_adv.run(scenario, out)
    changed = unified_adv.scenario_from_text(
        scenario.text.replace("seed: 3", "seed: 4"),
        file="changed.yaml",
        base_dir=scenario_path.parent,
    )
    again = unified_adv.run(changed, out, resume=True)
    assert not any(u["reused"] for u in again.summary["units"])


def test_a_failing_unit_is_recorded_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch, write_scenario, cli, tmp_path: Path
) -> None:
    from unified_adv.adapters import adapter_class

    cls = adapter_class("foolbox")

    def boom(self, request, x, y, target):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(cls, "_generate", boom)
    path = write_scenario(
        """
        name: partial
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 40}
        attacks: [{name: fgsm, eps: 0.1}]
        """
    )
    result = cli("run", path, "--out", tmp_path / "partial")
    assert result.code == 1
    summary = json.loads((tmp_path / "partial" / "summary.json").read_text())
    status = {e["backend"]: e["status"] for e in summary["attacks"]}
    assert status == {"art": "ok", "foolbox": "error", "torchattacks": "ok"}
    failed = [e for e in summary["attacks"] if e["status"] == "error"][0]
    assert "backend exploded" in failed["error"] and failed["robust_accuracy"] is None
    html = (tmp_path / "partial" / "index.html").read_text()
    assert "Failed units" in html and "backend exploded" in html


def test_cli_run_prints_where_the_outputs_are(cli, write_scenario, tmp_path: Path) -> None:
    from conftest import SMALL

    path = write_scenario(SMALL)
    result = cli("run", path, "--out", tmp_path / "o")
    assert result.code == 0, result.err
    assert f"Report:   {tmp_path / 'o' / 'index.html'}" in result.out
    assert "summary.json" in result.out and "samples.parquet" in result.out


def test_attack_limit_scopes_the_first_samples(tmp_path: Path) -> None:
    text = """
name: limited
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 120}
attacks:
  - {name: fgsm, eps: 0.2, limit: 50, backends: [torchattacks]}
"""
    result = unified_adv.run(unified_adv.scenario_from_text(text), tmp_path / "o")
    (entry,) = result.summary["attacks"]
    rows = result.samples
    assert entry["n_evaluated"] == 50
    from unified_adv.sources.builtin.digits import digits_split

    first50 = digits_split()[5][:50]
    assert set(rows["sample"]) <= set(first50)
    n_wrong_clean = 50 - entry["n_samples"]  # only_correct: the rest were misclassified
    assert n_wrong_clean >= 0
    still_right = int((~rows.success).sum())
    assert entry["robust_accuracy"] == pytest.approx(still_right / 50)
