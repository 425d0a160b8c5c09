"""Defences in the run: expectation over transformation in each backend, the defended model
variants, non-adaptive vs adaptive scoring, Lim's table and the collapse finding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class, backend_names
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.defences.layers import RandomizationLayer
from unified_adv.defences.randomness import reseed
from unified_adv.evaluate.defence_table import (
    ADAPTIVE_SLACK,
    COLLAPSE_DROP,
    NOISE_CASE,
    WORST_CASE,
    adaptive_weaker_findings,
    collapse_finding,
)
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

GRADIENT_BACKENDS = ("art", "foolbox", "torchattacks")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:40], y[:40]


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return builtin_digits_cnn()[0]


def _fgsm(eps: float, eot: int) -> AttackRequest:
    params = ATTACKS["fgsm"].resolve(eps, {"eot_samples": eot})
    return AttackRequest(attack="fgsm", norm="linf", eps=eps, params=params, targeted=False)


@pytest.mark.parametrize("backend", GRADIENT_BACKENDS)
def test_eot_on_a_deterministic_model_is_the_plain_attack(backend: str, net, digits) -> None:
    """Averaging identical gradients changes nothing: a check that each library's EOT path
    is the same attack, not another one."""
    x, y = digits
    adapter = adapter_class(backend)(model=ModelWrapper(net))
    plain = adapter.generate(_fgsm(0.1, 1), x, y, None, seed=3)
    eot = adapter.generate(_fgsm(0.1, 4), x, y, None, seed=3)
    assert np.array_equal(plain.x_adv, eot.x_adv)
    assert eot.library_call["semantics"]["eot_samples"] == 4
    assert plain.library_call["semantics"]["eot_samples"] == 1


@pytest.mark.parametrize("backend", GRADIENT_BACKENDS)
def test_eot_on_a_randomised_model_is_seeded_and_recorded(backend: str, net, digits) -> None:
    x, y = digits
    layer = RandomizationLayer(input_size=(8, 8), min_size=8, max_size=9, pad_to=10, seed=0)
    wrapper = ModelWrapper(net, pre=layer)
    adapter = adapter_class(backend)(model=wrapper)
    runs = []
    for _ in range(2):
        reseed(wrapper, 11)
        runs.append(adapter.generate(_fgsm(0.1, 5), x, y, None, seed=3))
    assert np.array_equal(runs[0].x_adv, runs[1].x_adv)
    sem = runs[0].library_call["semantics"]
    assert sem["eot_samples"] == 5
    assert sem["eot_average"].startswith("logits" if backend == "foolbox" else "loss gradients")
    # One draw of the randomness is not the expectation: the EOT gradient differs.
    reseed(wrapper, 11)
    single = adapter.generate(_fgsm(0.1, 1), x, y, None, seed=3)
    assert not np.array_equal(single.x_adv, runs[0].x_adv)


def test_eot_is_refused_where_the_library_has_none(net, digits) -> None:
    x, y = digits
    params = ATTACKS["pgd"].resolve(1.0, {"eot_samples": 3})
    req = AttackRequest(attack="pgd", norm="l2", eps=1.0, params=params, targeted=False)
    adapter = adapter_class("torchattacks")(model=ModelWrapper(net))
    with pytest.raises(ValueError, match="no expectation over transformation for pgd l2"):
        adapter.generate(req, x, y, None, seed=0)
    assert "torchattacks" in backend_names()


def test_scenario_refuses_eot_on_a_backend_without_it(cli, write_scenario) -> None:
    path = write_scenario(
        """
        name: eot
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 20}
        attacks:
          - {name: pgd, norm: l2, eps: 1.0, eot_samples: 4, backends: [torchattacks]}
        """
    )
    result = cli("validate", path)
    assert result.code == 2
    assert (
        f"{path}: attacks[0].backends: backend 'torchattacks' has no expectation over "
        "transformation for pgd l2 (eot_samples > 1)"
    ) in result.err


DEFENDED = """
name: defended
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 80, only_correct: false}
attacks:
  - {name: gaussian_noise, std: 0.3}
  - {name: fgsm, eps: 0.15}
defences:
  - {id: rand, name: randomization, eot_samples: 4}
  - {id: squeeze, name: feature_squeezing, bit_depth: 1}
  - {id: both, name: chain, of: [squeeze, rand], attacks: [fgsm], eot_samples: 4}
report: {triptychs: 1}
"""


@pytest.fixture(scope="module")
def defended_run(tmp_path_factory: pytest.TempPathFactory) -> unified_adv.RunResult:
    folder = tmp_path_factory.mktemp("defended")
    path = folder / "scenario.yaml"
    path.write_text(DEFENDED.lstrip(), encoding="utf-8")
    return unified_adv.run(unified_adv.load_scenario(path), folder / "out")


def test_defended_units_and_rows(defended_run: unified_adv.RunResult) -> None:
    s = defended_run.samples
    names = [u["name"] for u in defended_run.summary["units"]]
    # Gaussian noise ignores the model: never run adaptively.
    assert not any("gaussian_noise" in n and "-vs-" in n for n in names)
    assert sum("-fgsm-" in n and n.endswith("-vs-rand") for n in names) == 3
    assert sum("-fgsm-" in n and n.endswith("-vs-both") for n in names) == 3
    assert set(s["evaluation"]) == {"undefended", "non-adaptive", "adaptive"}
    n = 80
    for defence in ("rand", "squeeze", "both"):
        rows = s[(s.defence == defence) & (s.evaluation == "non-adaptive")]
        assert len(rows) == n * 3 * 2  # both attacks, 3 backends each
    # The randomised defence is attacked with EOT (4 draws) on every backend.
    entries = defended_run.summary["defences"]["entries"]
    eots = {
        e["backend"]: e["eot_samples"]
        for e in entries
        if e["defence"] == "rand" and e["evaluation"] == "adaptive"
    }
    assert eots == {"art": 4, "foolbox": 4, "torchattacks": 4}
    assert all(
        e["eot_samples"] == 1
        for e in entries
        if e["defence"] == "squeeze" and e["evaluation"] == "adaptive"
    )


def test_non_adaptive_accuracy_is_the_defended_model_on_the_undefended_examples(
    defended_run: unified_adv.RunResult,
) -> None:
    """Recompute one cell of Lim's table from the stored units and the defended model."""
    out = defended_run.out_dir
    scenario = unified_adv.load_scenario(out.parent / "scenario.yaml")
    from unified_adv.run.prepare import prepare

    prep = prepare(scenario)
    variant = prep.variants["squeeze"]
    stored = np.load(out / "units" / "01-fgsm-eps0-foolbox-shard000.npz")
    logits = variant.score(stored["x_adv"])
    labels = prep.data.y[stored["positions"]]
    # Robust: the defended model is right on the clean input and the attack did not fool it.
    clean_right = variant.score(prep.data.x[stored["positions"]]).argmax(1) == labels
    accuracy = float(((logits.argmax(1) == labels) & clean_right).mean())
    entry = next(
        e
        for e in defended_run.summary["defences"]["entries"]
        if e["defence"] == "squeeze"
        and e["evaluation"] == "non-adaptive"
        and e["backend"] == "foolbox"
        and e["attack_id"] == "fgsm"
    )
    assert entry["accuracy"] == pytest.approx(accuracy)
    row = next(r for r in defended_run.summary["defences"]["table"] if r["attack_id"] == "fgsm")
    cells = [
        e["accuracy"]
        for e in defended_run.summary["defences"]["entries"]
        if e["defence"] == "squeeze"
        and e["evaluation"] == "non-adaptive"
        and e["attack_id"] == "fgsm"
    ]
    # The worst case across backends is the per-sample union, never above any backend.
    s = defended_run.samples
    mine = s[(s.defence == "squeeze") & (s.evaluation == "non-adaptive") & (s.attack_id == "fgsm")]
    robust = ~mine.success & (mine.clean_pred == mine.label) & ~mine.tie
    union = robust.groupby(mine["sample"]).all().mean()
    assert row["defences"]["squeeze"]["non_adaptive"]["accuracy"] == pytest.approx(union)
    assert union <= min(cells)


def test_clean_accuracy_of_each_variant(defended_run: unified_adv.RunResult) -> None:
    variants = {v["id"]: v for v in defended_run.summary["defences"]["variants"]}
    assert variants["rand"]["randomized"] and not variants["squeeze"]["randomized"]
    assert variants["both"]["randomized"]
    assert [p["id"] for p in variants["both"]["parts"]] == ["squeeze", "rand"]
    for v in variants.values():
        assert 0.5 < v["clean_accuracy"] <= 1.0


def test_collapse_finding_threshold() -> None:
    non = {"accuracy": 0.60, "backend": "art"}
    assert collapse_finding("d", "fgsm", 0.1, non, {"accuracy": 0.50, "backend": "art"}) is None
    hit = collapse_finding(
        "rand", "fgsm", 0.1, non, {"accuracy": 0.49, "backend": "foolbox", "eot_samples": 10}
    )
    assert hit is not None and hit["code"] == "defence-collapses"
    assert hit["message"] == (
        "rand against fgsm (eps 0.1): 60.0 % accuracy when the attack ignores the defence, "
        "49.0 % when it attacks the defended model (foolbox, EOT over 10 draws). "
        "The non-adaptive number overstates the defence."
    )
    assert collapse_finding("d", "fgsm", None, None, {"accuracy": 0.0, "backend": "art"}) is None


def test_collapse_is_flagged_exactly_where_the_table_shows_it(
    defended_run: unified_adv.RunResult,
) -> None:
    """The finding fires exactly where adaptive accuracy is more than COLLAPSE_DROP below
    the non-adaptive one, and nowhere else."""
    table = defended_run.summary["defences"]["table"]
    expected = set()
    for row in table:
        for vid, cell in row["defences"].items():
            non, ada = cell["non_adaptive"], cell["adaptive"]
            if non and ada and ada["accuracy"] < non["accuracy"] - COLLAPSE_DROP:
                expected.add((row["attack_id"], vid))
    flagged = {
        (f["attack_id"], f["message"].split(" against ")[0])
        for f in defended_run.summary["findings"]
        if f["code"] == "defence-collapses"
    }
    assert flagged == expected


def test_resume_reuses_the_defended_units(
    defended_run: unified_adv.RunResult, tmp_path: Path
) -> None:
    scenario = unified_adv.load_scenario(defended_run.out_dir.parent / "scenario.yaml")
    again = unified_adv.run(scenario, defended_run.out_dir, resume=True)
    assert all(u["reused"] for u in again.summary["units"])
    cols = ["attack_id", "backend", "defence", "evaluation", "sample", "adv_pred", "success"]
    assert again.samples[cols].equals(defended_run.samples[cols])


def test_report_has_the_defence_section(defended_run: unified_adv.RunResult) -> None:
    html = defended_run.report.read_text(encoding="utf-8")
    assert '<section id="defences">' in html
    assert "(c) + rand" in html and "(e) + both" in html
    assert html.count("data:image/png;base64,") >= 3


def test_defence_input_errors(cli, write_scenario) -> None:
    path = write_scenario(
        """
        name: bad
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 20}
        attacks: [{name: fgsm, eps: 0.1}]
        defences:
          - {name: randomisation}
          - {id: r, name: randomization, quality: 50, min_size: 9, max_size: 8}
        """
    )
    result = cli("validate", path)
    assert result.code == 2
    err = result.err
    assert (
        f"{path}: defences[0].name: unknown defence 'randomisation'. Did you mean 'randomization'?"
    ) in err
    assert f"{path}: defences[1].quality: randomization takes no 'quality'" in err
    assert f"{path}: defences[1].max_size: must be >= min_size (9), got 8" in err
    assert "Traceback" not in err


def test_defence_references_are_checked(cli, write_scenario) -> None:
    """Cross-references are checked once every entry is valid on its own."""
    path = write_scenario(
        """
        name: bad
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 20}
        attacks: [{name: fgsm, eps: 0.1}]
        defences:
          - {id: r, name: randomization}
          - {name: chain, of: [r, nope]}
          - {name: jpeg_compression, attacks: [pgd]}
          - {id: r, name: spatial_smoothing}
        """
    )
    result = cli("validate", path)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{path}: defences[1].of[1]: unknown defence id 'nope'. Available: chain, "
        "jpeg_compression, r",
        f"{path}: defences[2].attacks[0]: unknown attack id 'pgd'. Available: fgsm",
        f"{path}: defences[3].id: 'r' is used twice; give each its own id",
    ]


def test_randomized_layer_draws_differ_per_forward() -> None:
    """What the EOT tests above rely on: two forward passes see different draws."""
    layer = RandomizationLayer(input_size=(8, 8), min_size=8, max_size=9, pad_to=10, seed=0)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(layer(x), layer(x))


def test_one_worst_case_definition_in_summary_and_lim_table(
    defended_run: unified_adv.RunResult,
) -> None:
    """The Summary's worst case and the Lim table's (b) column are the same number: the
    per-sample union for an attack, the mean over backends for random noise."""
    summary = defended_run.summary
    table = {r["attack_id"]: r for r in summary["defences"]["table"]}
    worst = {w["attack_id"]: w for w in summary["crosscheck"]["worst_case"]}
    assert worst["fgsm"]["statistic"] == WORST_CASE == table["fgsm"]["attacked"]["statistic"]
    assert worst["fgsm"]["robust_accuracy_worst_case"] == pytest.approx(
        table["fgsm"]["attacked"]["accuracy"]
    )
    noise = worst["gaussian_noise"]
    per_backend = [
        e["accuracy"]
        for e in summary["defences"]["entries"]
        if e["attack_id"] == "gaussian_noise" and e["evaluation"] == "undefended"
    ]
    assert len(per_backend) == 3 and noise["statistic"] == NOISE_CASE
    assert noise["robust_accuracy_worst_case"] == pytest.approx(np.mean(per_backend))
    assert table["gaussian_noise"]["attacked"]["accuracy"] == pytest.approx(np.mean(per_backend))
    # The adaptive cell: per sample the worse of adaptive and non-adaptive examples.
    for row in summary["defences"]["table"]:
        for cell in row["defences"].values():
            if cell["adaptive"] is not None:
                assert cell["adaptive"]["accuracy"] <= cell["non_adaptive"]["accuracy"] + 1e-12
                assert cell["adaptive"]["accuracy"] <= cell["adaptive"]["adaptive_alone"] + 1e-12


def test_adaptive_weaker_finding_threshold() -> None:
    non = {"accuracy": 0.47}
    weak = ({"accuracy": 0.47 + ADAPTIVE_SLACK + 0.01, "backend": "art", "eot_samples": 10}, set())
    fine = ({"accuracy": 0.47 + ADAPTIVE_SLACK, "backend": "foolbox", "eot_samples": 10}, set())
    found = adaptive_weaker_findings("rand", "fgsm", 0.1, [weak, fine], non)
    assert [f["backend"] for f in found] == ["art"]
    assert found[0]["code"] == "adaptive-weaker-than-non-adaptive"
    assert "EOT over 10 draws" in found[0]["message"]
    assert adaptive_weaker_findings("rand", "fgsm", 0.1, [weak], None) == []


def test_adaptive_weaker_is_flagged_exactly_where_the_entries_show_it(
    defended_run: unified_adv.RunResult,
) -> None:
    entries = defended_run.summary["defences"]["entries"]
    table = {r["attack_id"]: r for r in defended_run.summary["defences"]["table"]}
    expected = {
        (e["attack_id"], e["defence"], e["backend"])
        for e in entries
        if e["evaluation"] == "adaptive"
        and e["accuracy"]
        > table[e["attack_id"]]["defences"][e["defence"]]["non_adaptive"]["accuracy"]
        + ADAPTIVE_SLACK
    }
    flagged = {
        (f["attack_id"], f["message"].split(" against ")[0], f["backend"])
        for f in defended_run.summary["findings"]
        if f["code"] == "adaptive-weaker-than-non-adaptive"
    }
    assert flagged == expected


def test_eot_of_summed_losses_is_weaker_on_lim_randomization(net) -> None:
    """The cause of lim.yaml's adaptive-weaker cells (bench/lim_eot.py): the layer's identity
    draw (size 8, probability 1/2) is classified confidently, so its loss gradient is orders
    of magnitude smaller than the shifted draws'; the summed-loss EOT of ART (and
    torchattacks) serves the shifted draws and is weaker than FGSM made without the defence.
    Measured on the 540 held-out digits at eps 0.1: ART EOT 10 draws 62.0 %, 100 draws
    61.9 %, the exact expectation 61.5 %, against 46.9 % non-adaptive (a 15-point gap; the
    5-point margin below is three times the 1.5-point spread of draw counts and seeds)."""
    _, _, x, y, _, _ = digits_split()
    layer = RandomizationLayer(input_size=(8, 8), min_size=7, max_size=8, pad_to=8, seed=1)
    wrapper = ModelWrapper(net, pre=layer)

    def accuracy(xa: np.ndarray) -> float:
        reseed(wrapper, 5)
        return float((wrapper.logits(xa).argmax(1) == y).mean())

    plain = adapter_class("art")(model=ModelWrapper(net)).generate(
        _fgsm(0.1, 1), x, y, None, seed=1
    )
    reseed(wrapper, 9)
    eot = adapter_class("art")(model=wrapper).generate(_fgsm(0.1, 10), x, y, None, seed=1)
    assert accuracy(eot.x_adv) > accuracy(plain.x_adv) + 0.05

    def grad_norm(size: int, top: int, left: int) -> float:
        fixed = (
            torch.full((len(x),), size),
            torch.full((len(x),), top),
            torch.full((len(x),), left),
        )
        layer.draw = lambda n: fixed  # type: ignore[method-assign]
        xx = torch.from_numpy(x).requires_grad_(True)
        loss = nn.functional.cross_entropy(wrapper(xx), torch.from_numpy(y), reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), xx)
        del layer.draw
        return float(np.median(g.abs().reshape(len(x), -1).sum(1).numpy()))

    identity = grad_norm(8, 0, 0)
    shifted = min(grad_norm(7, t, c) for t in (0, 1) for c in (0, 1) if (t, c) != (0, 0))
    assert shifted > 1000 * identity
