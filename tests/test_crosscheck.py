"""The cross-check engine: verdicts known in advance, explanations, statistics, findings."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

import unified_adv
from unified_adv.adapters.torchattacks import TorchattacksAdapter
from unified_adv.evaluate.crosscheck import mcnemar_exact, paired_difference_ci, wilson
from unified_adv.evaluate.findings import result_findings

BASE = """
name: xc
seed: 1
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 150}
"""


def _run(tmp_path: Path, attacks: str, extra: str = "") -> unified_adv.RunResult:
    scenario = unified_adv.scenario_from_text(BASE + "attacks:\n" + attacks + extra)
    return unified_adv.run(scenario, tmp_path / "out")


def _verdicts(result: unified_adv.RunResult) -> dict[tuple[str, str], str]:
    return {
        (p["attack_id"], "-".join(p["backends"])): p["verdict"]
        for p in result.summary["crosscheck"]["pairs"]
    }


#: The libraries whose PGD and BIM return the point after the last step (adv-lib's and
#: secml-torch's return another point: test_classic_newlibs.py pairs them with these).
LAST = "backends: [art, foolbox, torchattacks]"


def test_deterministic_attacks_are_identical_or_equivalent(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "  - {name: fgsm, eps: [0.1, 0.2]}\n"
        f"  - {{name: pgd, eps: 0.1, steps: 10, step_size: 0.02, random_starts: 0, {LAST}}}\n"
        f"  - {{name: bim, eps: 0.1, steps: 10, {LAST}}}\n",
    )
    verdicts = result.summary["crosscheck"]["pairs"]
    assert len(verdicts) == 3 * 4  # 3 pairs x (2 fgsm eps + pgd + bim)
    for pair in verdicts:
        assert pair["verdict"] in ("identical", "equivalent"), pair
        assert pair["only_first"] == pair["only_second"] == 0
        assert pair["explanation"] == []
    # summary.json carries the verdicts, for a CI pipeline to fail on 'divergent'.
    on_disk = json.loads((result.out_dir / "summary.json").read_text())
    assert {p["verdict"] for p in on_disk["crosscheck"]["pairs"]} <= {"identical", "equivalent"}


def test_random_starts_are_statistically_consistent_not_divergent(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        f"  - {{name: pgd, eps: 0.1, steps: 10, step_size: 0.02, random_starts: 1, {LAST}}}\n",
    )
    pairs = result.summary["crosscheck"]["pairs"]
    assert len(pairs) == 3
    for pair in pairs:
        assert pair["verdict"] != "divergent", pair
        assert pair["mcnemar_p"] >= 0.05
        lo, hi = pair["rate_difference_ci"]
        assert lo <= pair["rate_difference"] <= hi and lo <= 0 <= hi
        if "art" in pair["backends"]:
            # ART draws its start from numpy, the others from torch: different samples,
            # the same success rate.
            assert pair["max_pixel_diff"] > 0.01
            assert pair["verdict"] == "statistically consistent", pair
        else:
            # Foolbox and torchattacks draw the same uniform start from the same torch seed.
            assert pair["verdict"] in ("identical", "equivalent"), pair


def test_a_mistranslated_step_size_is_divergent_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test double of one adapter hands torchattacks three times the step size."""
    original = TorchattacksAdapter._generate

    def sloppy(self, request, x, y, target):
        wrong = dataclasses.replace(
            request, params={**request.params, "step_size": 3 * request.params["step_size"]}
        )
        return original(self, wrong, x, y, target)

    monkeypatch.setattr(TorchattacksAdapter, "_generate", sloppy)
    result = _run(
        tmp_path,
        f"  - {{name: pgd, eps: 0.1, steps: 5, step_size: 0.01, random_starts: 0, {LAST}}}\n",
    )
    verdicts = _verdicts(result)
    assert verdicts[("pgd", "art-foolbox")] == "identical"
    for pair in result.summary["crosscheck"]["pairs"]:
        if "torchattacks" in pair["backends"]:
            assert pair["verdict"] == "divergent"
            text = "\n".join(pair["explanation"])
            assert "step_size differs" in text and "0.03" in text and "0.01" in text
            assert pair["disagreements"], "the samples that disagree are listed"
    codes = [f["code"] for f in result.summary["findings"]]
    assert codes.count("divergent_backends") == 2
    html = result.report.read_text()
    assert "step_size differs" in html and "Worst disagreements" in html


def test_worst_case_across_backends(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        f"  - {{name: pgd, eps: 0.1, steps: 10, step_size: 0.02, random_starts: 1, {LAST}}}\n",
    )
    (worst,) = result.summary["crosscheck"]["worst_case"]
    s = result.samples
    fooled_any = s.groupby("sample").success.any()
    assert worst["success_rate_any_backend"] == pytest.approx(fooled_any.mean())
    per_backend = {e["backend"]: e["robust_accuracy"] for e in result.summary["attacks"]}
    assert worst["robust_accuracy_worst_case"] <= min(per_backend.values()) + 1e-12
    robust = (~fooled_any).sum() / 150  # only_correct: robust = fooled by none
    assert worst["robust_accuracy_worst_case"] == pytest.approx(robust)


def test_determinism_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attacks = "  - {name: pgd, eps: 0.1, steps: 5, random_starts: 1}\n"
    extra = "crosscheck: {repeat: true}\n"
    result = _run(tmp_path / "a", attacks, extra)
    assert not [f for f in result.summary["findings"] if f["code"] == "not_reproducible"]

    original = TorchattacksAdapter._generate

    def unseeded(self, request, x, y, target):
        out = original(self, request, x, y, target)
        keep = np.random.default_rng().random(x.shape) < 0.5  # an RNG nobody seeded
        return dataclasses.replace(out, x_adv=np.where(keep, out.x_adv.numpy(), x))

    monkeypatch.setattr(TorchattacksAdapter, "_generate", unseeded)
    result = _run(tmp_path / "b", attacks, extra)
    flagged = {f["backend"] for f in result.summary["findings"] if f["code"] == "not_reproducible"}
    assert flagged == {"torchattacks"}


def test_model_findings_probabilities_and_zero_gradients(tmp_path: Path) -> None:
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "from unified_adv.sources.builtin.digits import builtin_digits_cnn\n"
        "def softmaxed():\n"
        "    net, _ = builtin_digits_cnn()\n"
        "    return torch.nn.Sequential(net, torch.nn.Softmax(dim=1))\n"
        "def saturated():\n"
        "    net, _ = builtin_digits_cnn()\n"
        "    class Hot(torch.nn.Module):\n"
        "        def __init__(self):\n"
        "            super().__init__(); self.net = net\n"
        "        def forward(self, x):\n"
        "            return 1000 * self.net(x)\n"
        "    return Hot()\n"
    )
    codes = {}
    for name in ("softmaxed", "saturated"):
        text = (
            f"name: {name}\nmodel: {{factory: 'nets:{name}'}}\ndata: {{builtin: digits, limit: 60}}\n"
            "attacks: [{name: fgsm, eps: 0.1, backends: [torchattacks]}]\n"
        )
        scenario = unified_adv.scenario_from_text(text, base_dir=tmp_path)
        result = unified_adv.run(scenario, tmp_path / name)
        codes[name] = {f["code"]: f for f in result.summary["findings"]}
    assert "probabilities" in codes["softmaxed"]
    assert "zero_gradients" in codes["saturated"]
    assert codes["saturated"]["zero_gradients"]["level"] == "warning"


def _entry(attack: str, backend: str, eps: float, rate: float, norm: str = "linf") -> dict:
    return {
        "attack_id": attack,
        "attack": attack,
        "backend": backend,
        "eps": eps,
        "norm": norm,
        "target": "untargeted",
        "status": "ok",
        "success_rate": rate,
    }


def test_result_findings_eps_monotonicity_and_black_box() -> None:
    attacks = [
        _entry("pgd", "art", 0.1, 0.6),
        _entry("pgd", "art", 0.2, 0.4),  # falls as eps grows
        _entry("square", "art", 0.2, 0.9),  # black-box beats every white-box at eps 0.2
        _entry("fgsm", "art", 0.2, 0.5),
    ]
    prep = SimpleNamespace(scenario=SimpleNamespace(crosscheck=SimpleNamespace(alpha=0.05)))
    found = result_findings(prep, attacks, {"pairs": []}, [])  # type: ignore[arg-type]
    codes = sorted(f.code for f in found)
    assert codes == ["black_box_beats_white_box", "non_monotonic_eps"]
    fine = result_findings(prep, attacks[:1] + [_entry("pgd", "art", 0.2, 0.7)], {"pairs": []}, [])  # type: ignore[arg-type]
    assert fine == []


def test_statistics() -> None:
    # McNemar's exact test is a two-sided binomial test on the discordant pairs.
    assert mcnemar_exact(0, 0) == 1.0
    expected = min(1.0, 2 * stats.binom.cdf(2, 14, 0.5))
    assert mcnemar_exact(2, 12) == pytest.approx(expected)
    assert mcnemar_exact(12, 2) == pytest.approx(expected)
    # Wilson's interval: known value for 0 of 10 and symmetry.
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    # Newcombe's paired interval: contains the estimate, symmetric when b == c, narrows with n.
    lo, hi = paired_difference_ci(40, 5, 5, 50)
    assert lo < 0 < hi and math.isclose(-lo, hi, rel_tol=1e-9)
    lo_big, hi_big = paired_difference_ci(400, 50, 50, 500)
    assert hi_big - lo_big < hi - lo
    lo, hi = paired_difference_ci(30, 20, 2, 48)
    assert 0 < lo < 0.18 < hi  # 18 points apart: significant
