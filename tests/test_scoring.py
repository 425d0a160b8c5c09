"""How a row is scored: robust accuracy from the success column, distances over fooled samples.

Real libraries on the builtin digits CNN, in the setting where the old scoring went wrong:
Foolbox's C&W returns all-zero images for the samples it fails on (which the model mostly
misclassifies), and torchattacks' Square returns the unchanged input for its failures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import unified_adv
from unified_adv.adapters import backends_with

SCENARIO = """
name: scoring
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 150, only_correct: true}
attacks:
  - {name: cw_l2, steps: 10, backends: [foolbox, torchattacks]}
  - {name: square, norm: linf, eps: 0.1, queries: 50, backends: [torchattacks]}
  - {name: fgsm, eps: [0.1, 1], backends: [torchattacks]}
report: {triptychs: 0}
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    scenario = unified_adv.scenario_from_text(SCENARIO)
    return unified_adv.run(scenario, tmp_path_factory.mktemp("scoring"), progress=False)


def _rows(result: unified_adv.RunResult, entry: dict) -> pd.DataFrame:
    s = result.samples
    rows = s[(s.attack_id == entry["attack_id"]) & (s.backend == entry["backend"])]
    return rows[rows.eps == entry["eps"]] if entry.get("eps") is not None else rows


def test_robust_accuracy_is_attacked_minus_fooled_over_evaluated(
    result: unified_adv.RunResult,
) -> None:
    n_eval = result.summary["data"]["n_evaluated"]
    for entry in result.summary["attacks"]:
        rows = _rows(result, entry)
        fooled = int(rows.groupby("sample").success.any().sum())
        attacked = rows["sample"].nunique()
        assert entry["robust_accuracy"] == pytest.approx((attacked - fooled) / n_eval)


def test_foolbox_cw_failures_are_robust_whatever_array_came_back(
    result: unified_adv.RunResult,
) -> None:
    (entry,) = [a for a in result.summary["attacks"] if a["backend"] == "foolbox"]
    rows = _rows(result, entry)
    failed = rows[~rows.success]
    # The trap is real: most failures come back as zero images the model gets wrong ...
    assert (failed.adv_pred != failed.label).mean() > 0.5
    # ... yet each failure is scored on its clean input: robust.
    n_eval = result.summary["data"]["n_evaluated"]
    assert entry["robust_accuracy"] == pytest.approx(len(failed) / n_eval)
    assert entry["robust_accuracy"] > (rows.adv_pred == rows.label).sum() / n_eval
    # The worst case across backends inherits it: robust unless some backend fooled it.
    (worst,) = result.summary["crosscheck"]["worst_case"]
    cw = result.samples[result.samples.attack == "cw_l2"]
    fooled_any = cw.groupby("sample").success.any()
    assert worst["robust_accuracy_worst_case"] == pytest.approx((~fooled_any).sum() / n_eval)


@pytest.mark.parametrize("backend", ["foolbox", "torchattacks"])
def test_medians_are_over_fooled_samples_only(result: unified_adv.RunResult, backend: str) -> None:
    for entry in result.summary["attacks"]:
        if entry["backend"] != backend or entry["attack"] not in ("cw_l2", "square"):
            continue
        rows = _rows(result, entry)
        fooled = rows[rows.success]
        assert 0 < len(fooled) < len(rows)  # both kinds present, so the choice matters
        assert entry["median_l2_fooled"] == pytest.approx(fooled.l2.median())
        assert entry["median_linf_fooled"] == pytest.approx(fooled.linf.median())
        assert entry["median_l2_fooled"] > 0  # Square at low success used to show 0
        # A failure's array (zeros, or the unchanged input) is no distance the attack needed.
        assert entry["median_l2_fooled"] != pytest.approx(rows.l2.median())
    for pair in result.summary["crosscheck"]["pairs"]:
        a, b = pair["backends"]
        for i, name in enumerate((a, b)):
            rows = _rows(result, {"attack_id": pair["attack_id"], "backend": name})
            assert pair["median_distances"]["l2"][i] == pytest.approx(
                rows[rows.success].l2.median()
            )


# A trained digits CNN that, like a large network on a small GPU, runs out of memory when it
# takes a gradient through more than 32 samples at once (inference alone always fits).
SMALL_GPU = """
import torch
from unified_adv.sources.builtin.digits import builtin_digits_cnn

class SmallGpu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = builtin_digits_cnn()[0]

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad and x.shape[0] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)

def small_gpu():
    return SmallGpu()
"""

PROBED = """
name: probed
model: {factory: 'nets:small_gpu'}
data: {builtin: digits, limit: 60}
attacks: [{name: fgsm, eps: 0.1, backends: [torchattacks]}]
report: {triptychs: 0}
execution: {shard_size: 50%s}
"""


def test_findings_probe_uses_the_batch_size(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(SMALL_GPU)
    scenario = unified_adv.scenario_from_text(PROBED % ", batch_size: 32", base_dir=tmp_path)
    result = unified_adv.run(scenario, tmp_path / "out", progress=False)
    assert not result.failed
    assert result.summary["data"]["n_attacked"] > 32  # the probe needs more than one batch
    assert "probe_failed" not in {f["code"] for f in result.summary["findings"]}


def test_a_failing_findings_probe_is_a_finding_not_a_crash(tmp_path: Path, cli) -> None:
    (tmp_path / "nets.py").write_text(SMALL_GPU)
    path = tmp_path / "probed.yaml"
    path.write_text(PROBED % "")
    res = cli("run", path, "--out", tmp_path / "out")
    assert res.code == 1, res.err  # the unit ran out of memory too: recorded, not fatal
    assert "Traceback" not in res.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (probe,) = [f for f in summary["findings"] if f["code"] == "probe_failed"]
    assert "OutOfMemoryError" in probe["message"] and "batches of" in probe["message"]
    assert (tmp_path / "out" / "index.html").is_file()


def test_absurd_perturbations_are_a_finding(result: unified_adv.RunResult) -> None:
    """FGSM with eps = 1 on [0, 1] images: its successes flip pixels across the whole range
    (and move further than the image's own norm). At eps 0.1, and for C&W and Square, nothing
    is flagged; nor are Foolbox's all-zero C&W images, which are failures."""
    found = [f for f in result.summary["findings"] if f["code"] == "absurd_perturbation"]
    assert [(f["attack_id"], f["backend"]) for f in found] == [("fgsm", "torchattacks")]
    (finding,) = found
    assert "fgsm at eps 1 (torchattacks)" in finding["message"]
    rows = result.samples[(result.samples.attack == "fgsm") & (result.samples.eps == 1)]
    n_range = int((rows.success & (rows.linf >= 1 - 1e-6)).sum())
    assert n_range > 0 and f"{n_range} have an L∞ as large as the input range" in finding["message"]


def test_cross_check_pairs_report_each_backends_own_success_rate(tmp_path: Path) -> None:
    """torchattacks' DeepFool leaves most samples on the boundary (ties, compared apart): a pair
    still shows each backend's own success rate, the one in its summary row, not the rate over
    the samples tied in neither (which once showed ART at 11 % beside torchattacks' 11 %)."""
    text = (
        "name: pairs\nseed: 0\nmodel: {builtin: digits-cnn}\n"
        "data: {builtin: digits, limit: 30, only_correct: true}\n"
        "attacks: [{name: deepfool, steps: 50, overshoot: 0.02, backends: all}]\n"
        "report: {triptychs: 0}\n"
    )
    result = unified_adv.run(unified_adv.scenario_from_text(text), tmp_path, progress=False)
    own = {e["backend"]: e["success_rate"] for e in result.summary["attacks"]}
    pairs = result.summary["crosscheck"]["pairs"]
    n = len(backends_with("deepfool"))
    assert len(pairs) == n * (n - 1) // 2
    assert sum(e["n_ties"] for e in result.summary["attacks"]) > 0  # the case this is about
    for p in pairs:
        first, second = p["backends"]
        assert p["success_rates"] == pytest.approx([own[first], own[second]])
        lo, hi = p["rate_difference_ci"]
        assert lo <= p["rate_difference"] <= hi
