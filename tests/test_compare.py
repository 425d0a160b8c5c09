"""``unified-adv compare`` and ``check`` on two real runs, and a run logged to MLflow.

Two tiny runs on the same 60 digits (FGSM and 5-step PGD, ART and torchattacks): the builtin
digits CNN (A) and MLP (B). Measured: worst-case robust accuracy at FGSM ε=0.1 is 53.3 % (CNN)
against 26.7 % (MLP), 18 samples robust → fooled and 2 back, McNemar p = 0.0004; everything is
deterministic (no random start), so the direction of every gate below is fixed.
The CNN's scenario logs the run to a local MLflow file store (``tracking: {mlflow: ...}``).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_report import HOSTILE, _network, _visit, browser  # noqa: F401  (browser: a fixture)
from typer.testing import CliRunner

import unified_adv
from unified_adv.cli import app
from unified_adv.compare import EXIT_GATE
from unified_adv.compare.diff import newcombe_interval
from unified_adv.compare.runs import load_run
from unified_adv.errors import InputError
from unified_adv.evaluate.results import robust_by_sample

ATTACKS = """
  - {name: fgsm, eps: [0.1, 0.2], backends: [art, torchattacks]}
  - {name: pgd, eps: 0.1, steps: 5, step_size: 1/40, random_starts: 0, backends: [art, torchattacks]}
"""
#: Only in the MLP's run: an L2 PGD (torchattacks), to be reported as "only in B".
ONLY_B = "  - {name: pgd, id: pgd-l2, norm: l2, eps: 1.0, steps: 5, step_size: 1/8, random_starts: 0, backends: [torchattacks]}\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("compare")
    store = (root / "mlruns").as_uri()
    out: dict[str, Any] = {"root": root, "store": store}
    for model, extra, tracking in (
        ("cnn", "", f"tracking: {{mlflow: {{uri: '{store}', experiment: digits}}}}\n"),
        ("mlp", ONLY_B, ""),
    ):
        (root / f"{model}.yaml").write_text(
            f"name: digits-{model}\nseed: 0\nmodel: {{builtin: digits-{model}}}\n"
            f"data: {{builtin: digits, limit: 60}}\nattacks:{ATTACKS}{extra}"
            f"report: {{triptychs: 0}}\n{tracking}",
            encoding="utf-8",
        )
        scenario = unified_adv.load_scenario(root / f"{model}.yaml")
        out[model] = unified_adv.run(scenario, root / model).out_dir
    return out


def _cli(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _worst(summary: dict[str, Any], attack_id: str, eps: float) -> float:
    (w,) = [
        w
        for w in summary["crosscheck"]["worst_case"]
        if w["attack_id"] == attack_id and w["eps"] == eps
    ]
    return float(w["robust_accuracy_worst_case"])


def test_two_models_compare_into_a_report_and_json(runs: dict[str, Any]) -> None:
    out = runs["root"] / "cmp"
    result = _cli("compare", runs["cnn"], runs["mlp"], "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert doc["same_data"] and not doc["same_model"]
    assert doc["only_in_a"] == []
    assert doc["only_in_b"] and all(k.startswith("pgd-l2 ") for k in doc["only_in_b"])
    a, b = load_run(runs["cnn"]), load_run(runs["mlp"])
    worst = {(r["attack_id"], r["eps"]): r for r in doc["rows"] if r["worst_case"]}
    assert set(worst) == {("fgsm", 0.1), ("fgsm", 0.2), ("pgd", 0.1)}
    for (attack_id, eps), row in worst.items():
        assert row["paired"]
        assert row["a"]["robust_accuracy"] == pytest.approx(_worst(a.summary, attack_id, eps))
        assert row["b"]["robust_accuracy"] == pytest.approx(_worst(b.summary, attack_id, eps))
        lo, hi = row["difference_ci"]
        assert lo <= row["difference"] <= hi
    # The flips, recounted from the two per-sample tables (torchattacks' FGSM at ε=0.1).
    row = next(
        r for r in doc["rows"] if r["key"].startswith("fgsm (fgsm/linf) @ 0.1 · torchattacks")
    )
    mine = [
        robust_by_sample(
            t[(t.attack_id == "fgsm") & (t.eps == 0.1) & (t.backend == "torchattacks")]
        )
        for t in (a.samples, b.samples)
    ]
    both = pd.concat(mine, axis=1).fillna(False).astype(bool)
    assert row["flips"]["robust_to_fooled"] == int((both[0] & ~both[1]).sum()) > 0
    assert row["flips"]["fooled_to_robust"] == int((~both[0] & both[1]).sum())
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "McNemar" in html and "Only in B" in html and "pgd-l2" in html


def test_fail_on_regression_exits_in_exactly_one_direction(runs: dict[str, Any]) -> None:
    root = runs["root"]
    worse = _cli(
        "compare", runs["cnn"], runs["mlp"], "--out", root / "ab", "--fail-on-regression", 0
    )
    better = _cli(
        "compare", runs["mlp"], runs["cnn"], "--out", root / "ba", "--fail-on-regression", 0
    )
    same = _cli(
        "compare", runs["cnn"], runs["cnn"], "--out", root / "aa", "--fail-on-regression", 0
    )
    assert worse.exit_code == EXIT_GATE, worse.output
    assert better.exit_code == 0, better.output
    assert same.exit_code == 0, same.output
    assert "regression: fgsm (fgsm/linf) @ 0.1 · worst case" in worse.output
    # A gate above the largest drop passes (the largest measured drop is 26.7 points).
    wide = _cli(
        "compare", runs["cnn"], runs["mlp"], "--out", root / "ab", "--fail-on-regression", 90
    )
    assert wide.exit_code == 0, wide.output


def test_unpaired_when_the_data_differ(runs: dict[str, Any]) -> None:
    other = runs["root"] / "mlp-other-data"
    shutil.copytree(runs["mlp"], other)
    summary = json.loads((other / "summary.json").read_text(encoding="utf-8"))
    summary["data"]["fingerprint"] = "0" * 64
    (other / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    result = _cli("compare", runs["cnn"], other, "--out", runs["root"] / "unpaired")
    assert result.exit_code == 0, result.output
    doc = json.loads((runs["root"] / "unpaired" / "comparison.json").read_text(encoding="utf-8"))
    assert not doc["same_data"] and "unpaired" in doc["method"]
    for row in doc["rows"]:
        assert not row["paired"] and "flips" not in row
        assert row["a"]["ci"][0] <= row["a"]["robust_accuracy"] <= row["a"]["ci"][1]
        assert row["b"]["ci"][0] <= row["b"]["robust_accuracy"] <= row["b"]["ci"][1]


def test_newcombe_interval_matches_the_published_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17:873, Table II: 56/70 − 48/80, method 10."""
    lo, hi = newcombe_interval(48, 56, 80, n_b=70)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    # Positively correlated pairs give a narrower interval than independent samples.
    paired = newcombe_interval(7, 12, 20, k_both=6)
    unpaired = newcombe_interval(7, 12, 20, n_b=20)
    assert paired[1] - paired[0] < unpaired[1] - unpaired[0]


def test_unusable_input_is_one_line(runs: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a finished unified-adv run") as e:
        load_run(tmp_path)
    assert len(str(e.value).splitlines()) == 1
    old = tmp_path / "old"
    shutil.copytree(runs["cnn"], old)
    summary = json.loads((old / "summary.json").read_text(encoding="utf-8"))
    (old / "summary.json").write_text(
        json.dumps({**summary, "schema_version": 99}), encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"schema_version: is 99; this unified-adv reads"):
        load_run(old)


def test_check_gates_a_run_and_writes_junit(runs: dict[str, Any], tmp_path: Path) -> None:
    measured = _worst(load_run(runs["cnn"]).summary, "pgd", 0.1)  # 0.467
    above, below = f"pgd@1/10>={measured + 0.05:.3f}", f"pgd@0.1>=lo:{measured / 2:.3f}"
    junit = tmp_path / "junit.xml"
    failed = _cli("check", runs["cnn"], "--require", above, "--require", below, "--junit", junit)
    assert failed.exit_code == EXIT_GATE, failed.output
    assert [line for line in failed.output.splitlines() if line.startswith(above)] != []
    root = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases[f"{above} [pgd]"].find("failure") is not None
    assert cases[f"{below} [pgd]"].find("failure") is None
    pairs = [c for c in cases.values() if c.get("classname") == "unified-adv.crosscheck"]
    assert len(pairs) == 3  # one pair (art vs torchattacks) per attack × ε
    assert root.get("failures") == "1"
    ok = _cli("check", runs["cnn"], "--require", below, "--no-divergent")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "requirement", ["pgd@0.1=>0.4", "pgd>=0.4", "pgd@0.1>=1.5", "pgd@x>=0.4", "pgd@1/0>=0.4"]
)
def test_a_malformed_requirement_is_one_line(runs: dict[str, Any], requirement: str) -> None:
    result = _cli("check", runs["cnn"], "--require", requirement)
    assert isinstance(result.exception, InputError)
    assert len(str(result.exception).splitlines()) == 1
    assert str(result.exception).startswith(f"--require: {requirement!r}")


def test_the_run_is_logged_to_mlflow(runs: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=runs["store"])
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    summary = load_run(runs["cnn"]).summary
    metrics = run.data.metrics
    assert metrics["clean_accuracy"] == pytest.approx(summary["data"]["clean_accuracy"])
    for a in summary["attacks"]:
        key = f"robust_accuracy/{a['attack_id']}/eps_{a['eps']:.6g}/{a['backend']}"
        assert metrics[key] == pytest.approx(a["robust_accuracy"])
    assert metrics["robust_accuracy_worst_case/pgd/eps_0.1"] == pytest.approx(
        _worst(summary, "pgd", 0.1)
    )
    assert run.data.tags["model_fingerprint"] == summary["model"]["fingerprint"]
    assert run.data.tags["data_fingerprint"] == summary["data"]["fingerprint"]
    assert run.data.params["pgd/steps"] == "5"
    logged = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"index.html", "summary.json", "samples.parquet"} <= logged


def test_a_failure_to_log_is_one_warning(runs: dict[str, Any], capsys: Any) -> None:
    from unified_adv.tracking.mlflow import log_run

    folder = runs["cnn"]
    before = sorted(p.name for p in folder.iterdir())
    bad = (folder / "summary.json").as_uri() + "/mlruns"  # under a file: cannot be a store
    assert log_run(folder, load_run(folder).summary, bad, "digits") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: MLflow logging to {bad} failed")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_comparison_report_in_chromium(runs: dict[str, Any], browser: Any) -> None:  # noqa: F811
    """The run report's browser checks; the screenshot is docs/compare.png."""
    out = runs["root"] / "shot"
    assert _cli("compare", runs["cnn"], runs["mlp"], "--out", out).exit_code == 0
    artifacts = Path(__file__).resolve().parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    seen = _visit(browser, out / "index.html", artifacts / "compare.png")
    assert seen.page_errors == [] and seen.dialogs == []
    assert [c for c in seen.console if c[0] in ("error", "warning")] == []
    assert _network(seen.requests, out / "index.html") == []
    assert seen.images == 1 and seen.broken_images == []
    assert "Rows matched in both runs" in seen.text


def test_hostile_strings_in_a_comparison_are_inert(runs: dict[str, Any], browser: Any) -> None:  # noqa: F811
    copies = []
    for side in ("cnn", "mlp"):
        folder = runs["root"] / f"hostile-{side}"
        shutil.copytree(runs[side], folder, dirs_exist_ok=True)
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        summary["scenario"]["name"] = f"{HOSTILE} {side}"
        summary["model"]["description"] = HOSTILE
        for a in summary["attacks"]:
            a["eps_text"] = f"{HOSTILE} {a['eps']}"
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        copies.append(folder)
    out = runs["root"] / "hostile-cmp"
    assert _cli("compare", *copies, "--out", out).exit_code == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;window.PWNED=1;" in html
    seen = _visit(browser, out / "index.html")
    assert seen.pwned is None and seen.dialogs == [] and seen.page_errors == []
    assert seen.title.startswith("<script>window.PWNED=1;")
    assert HOSTILE in seen.text
    assert _network(seen.requests, out / "index.html") == []


def test_the_mlp_scenario_is_the_quickstart_with_another_model() -> None:
    """README's worked example compares like with like: same data, attacks, seed and report."""
    repo = Path(__file__).resolve().parents[1]
    cnn = unified_adv.load_scenario(repo / "scenarios" / "quickstart.yaml")
    mlp = unified_adv.load_scenario(repo / "scenarios" / "quickstart-mlp.yaml")
    assert (cnn.model.builtin, mlp.model.builtin) == ("digits-cnn", "digits-mlp")
    for part in ("data", "attacks", "seed", "report", "crosscheck", "execution"):
        assert getattr(mlp, part) == getattr(cnn, part), part


def test_a_wrong_tracking_field_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits}\n"
        "attacks: [{name: fgsm, eps: 0.1}]\ntracking: {mlflow: {url: 'file:///x'}}\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as e:
        unified_adv.load_scenario(path)
    lines = str(e.value).splitlines()
    assert any(line.startswith(f"{path}: tracking.mlflow.url: unknown field") for line in lines), (
        lines
    )
