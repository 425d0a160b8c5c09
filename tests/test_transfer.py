"""Builtin digits architectures and the black-box transfer matrix (PGD on a surrogate)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.analyses.transfer import TransferResult, transfer_matrix
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.sources.builtin.digits import (
    DIGITS_ARCHS,
    builtin_digits,
    builtin_digits_cnn,
    digits_split,
    train_digits_net,
)
from unified_adv.sources.load import load_model
from unified_adv.sources.models import ModelWrapper

ARCHS = {"digits-cnn": "DigitsCNN", "digits-mlp": "DigitsMLP", "digits-cnn-wide": "WideDigitsCNN"}
N = 120  # held-out samples attacked: enough for stable rates, seconds of PGD
EPS = 0.15
PARAMS = {"steps": 10}
SEED = 7


@pytest.fixture(scope="module")
def models() -> dict[str, ModelWrapper]:
    return {name: ModelWrapper(builtin_digits(name)[0]) for name in ARCHS}


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y, _, _ = digits_split()
    return x[:N].copy(), y[:N].copy()


def _run(
    models: dict[str, ModelWrapper], x: np.ndarray, y: np.ndarray, backend: str
) -> TransferResult:
    return transfer_matrix(
        models, x, y, backend=backend, norm="linf", eps=EPS, params=PARAMS, seed=SEED
    )


@pytest.fixture(scope="module")
def result(
    models: dict[str, ModelWrapper], held_out: tuple[np.ndarray, np.ndarray]
) -> TransferResult:
    return _run(models, *held_out, "torchattacks")


# ------------------------------------------------------------------ builtin architectures


def test_every_digits_builtin_is_registered() -> None:
    assert set(DIGITS_ARCHS) == set(ARCHS)
    assert set(ARCHS) | {"line-cnn"} == set(unified_adv.scenario.schema.BUILTIN_MODELS)


@pytest.mark.parametrize("name", ARCHS)
def test_builtin_architecture_is_accurate_on_held_out_digits(name: str) -> None:
    net, details = builtin_digits(name)
    _, _, x_test, y_test, _, _ = digits_split()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    assert acc >= 0.95
    assert details["held_out_accuracy"] == pytest.approx(acc)
    assert details["architecture"] == ARCHS[name] == type(net).__name__
    assert Path(details["weights"]).name == f"{name}.safetensors"
    again, _ = builtin_digits(name)  # from the package: the same weights
    for (k, v), (_, w) in zip(net.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_architectures_differ_and_the_old_entry_point_is_the_cnn() -> None:
    nets = {name: builtin_digits(name)[0] for name in ARCHS}
    assert len({type(n) for n in nets.values()}) == 3
    cnn, details = builtin_digits_cnn()
    assert details["architecture"] == "DigitsCNN"
    for (k, v), (_, w) in zip(
        cnn.state_dict().items(), nets["digits-cnn"].state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("name", ARCHS)
def test_training_is_seeded_and_deterministic(name: str) -> None:
    a, _, _ = train_digits_net(name, seed=3, epochs=1, checkpoints=())
    b, _, _ = train_digits_net(name, seed=3, epochs=1, checkpoints=())
    c, _, _ = train_digits_net(name, seed=4, epochs=1, checkpoints=())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_training_threads_are_restored() -> None:
    before = torch.get_num_threads()
    train_digits_net("digits-mlp", epochs=1, checkpoints=())
    assert torch.get_num_threads() == before


def test_unknown_architecture_and_bad_epochs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown builtin digits model 'digits-mpl'.*digits-mlp"):
        builtin_digits("digits-mpl")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_digits_net("digits-mlp", epochs=0)


@pytest.mark.parametrize("name", ARCHS)
def test_builtin_architecture_loads_from_a_scenario(
    name: str, write_scenario: Callable[[str], Path]
) -> None:
    path = write_scenario(
        f"""
        name: arch
        model: {{builtin: {name}, checkpoints: [5]}}
        data: {{builtin: digits, limit: 10}}
        attacks: [{{name: fgsm, eps: 0.1}}]
        """
    )
    scenario = unified_adv.load_scenario(path)
    loaded = load_model(scenario)
    assert loaded.details["architecture"] == ARCHS[name]
    net, _ = builtin_digits(name)
    x = digits_split()[2][:10]
    for (k, v), (_, w) in zip(
        loaded.wrapper.net.state_dict().items(), net.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    # Scoring runs in fixed-shape passes on one thread (models.SCORE_BATCH), this forward
    # pass on 10 rows: the same function, rounded differently (measured up to 2.6e-8).
    np.testing.assert_allclose(loaded.wrapper.logits(x), expected, rtol=1e-5, atol=1e-6)
    early = load_model(scenario, checkpoint=5)
    assert early.details == {**early.details, "architecture": ARCHS[name], "epoch": 5}
    assert early.fingerprint != loaded.fingerprint


# ------------------------------------------------------------------ transfer matrix


@pytest.mark.parametrize("backend", ["torchattacks", "foolbox"])
def test_diagonal_is_the_independently_computed_white_box_success(
    backend: str, models: dict[str, ModelWrapper], held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    res = _run(models, *held_out, backend)
    x, y = held_out[0][res.index], held_out[1][res.index]
    request = AttackRequest(
        attack="pgd",
        norm="linf",
        eps=EPS,
        params=ATTACKS["pgd"].resolve(EPS, PARAMS),
        targeted=False,
    )
    for i, name in enumerate(res.names):
        out = adapter_class(backend)(model=models[name]).generate(request, x, y, None, seed=SEED)
        own = models[name].logits(out.x_adv).argmax(1) != y
        assert res.matrix[i, i] == own.mean()
        np.testing.assert_array_equal(res.success[i, i], own)
        np.testing.assert_array_equal(res.x_adv[name], out.x_adv)
        assert res.library_calls[name]["library"] == adapter_class(backend).distribution
        # every other column scores these same examples on another model
        for j, target in enumerate(res.names):
            theirs = models[target].logits(out.x_adv).argmax(1) != y
            np.testing.assert_array_equal(res.success[i, j], theirs)


def test_transfer_is_weaker_than_white_box(result: TransferResult) -> None:
    m = result.matrix
    assert m.shape == (3, 3) and result.success.shape == (3, 3, result.n_samples)
    assert ((m >= 0) & (m <= 1)).all()
    np.testing.assert_array_equal(m, result.success.mean(axis=-1))
    diag = np.diag(m)
    off = ~np.eye(3, dtype=bool)
    # Measured at eps 0.15, 10 steps, 116 samples: white box 0.84 / 0.94 / 0.78 (cnn, mlp,
    # wide); transfer 0.43-0.66; the smallest gap is 0.13 (wide's own vs mlp's column).
    assert (diag >= 0.7).all(), diag
    for i in range(3):
        assert (m[i][off[i]] <= diag[i] - 0.1).all(), m
    assert diag.mean() - m[off].mean() >= 0.2, m
    # ... but transfer is real: every pair well above zero.
    assert (m[off] >= 0.3).all(), m


def test_transfer_is_reproducible(
    result: TransferResult,
    models: dict[str, ModelWrapper],
    held_out: tuple[np.ndarray, np.ndarray],
) -> None:
    again = _run(models, *held_out, "torchattacks")
    np.testing.assert_array_equal(again.matrix, result.matrix)
    np.testing.assert_array_equal(again.success, result.success)
    np.testing.assert_array_equal(again.index, result.index)
    for name in result.names:
        np.testing.assert_array_equal(again.x_adv[name], result.x_adv[name])


def test_only_samples_every_model_gets_right_are_attacked(
    result: TransferResult,
    models: dict[str, ModelWrapper],
    held_out: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = held_out
    right = {n: m.logits(x).argmax(1) == y for n, m in models.items()}
    expected = np.flatnonzero(np.logical_and.reduce(list(right.values())))
    np.testing.assert_array_equal(result.index, expected)
    assert result.n_samples == len(expected) == N - result.dropped["total"]
    assert result.dropped["misclassified_by"] == {n: int((~r).sum()) for n, r in right.items()}
    # Plant one: a sample every model gets right, with its label flipped, must be dropped.
    planted = int(expected[0])
    y_bad = y.copy()
    y_bad[planted] = (y_bad[planted] + 1) % 10
    res = _run(models, x, y_bad, "torchattacks")
    assert planted not in set(res.index.tolist())
    np.testing.assert_array_equal(res.index, expected[1:])
    assert res.dropped["total"] == result.dropped["total"] + 1
    for n in ARCHS:
        assert res.dropped["misclassified_by"][n] == result.dropped["misclassified_by"][n] + 1


def test_summary_is_json_and_consistent(result: TransferResult) -> None:
    d = json.loads(json.dumps(result.to_dict()))
    m = result.matrix
    assert d["models"] == list(ARCHS) and d["n_samples"] == result.n_samples
    assert d["matrix"] == m.tolist()
    assert d["white_box"] == {n: m[i, i] for i, n in enumerate(ARCHS)}
    for i, n in enumerate(ARCHS):
        others = [m[i, j] for j in range(3) if j != i]
        assert d["transfer_by_surrogate"][n] == pytest.approx(np.mean(others))
        into = [m[j, i] for j in range(3) if j != i]
        assert d["transfer_by_target"][n] == pytest.approx(np.mean(into))
        row = d["rows"][i]
        assert row["surrogate"] == n and row["white_box"] == m[i, i]
        assert row["successes"][n] == int(result.success[i, i].sum())
    assert d["params"] == {
        "steps": 10,
        "step_size": 2.5 * EPS / 10,
        "random_starts": 0,
        "eot_samples": 1,
    }
    assert d["dropped"]["total"] == N - result.n_samples
    assert d["library_calls"]["digits-mlp"]["library"] == "torchattacks"
    assert result.time_s >= sum(result.attack_time_s.values()) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": 1}, "at least two models"),
        ({"backend": "cleverhans"}, "unknown backend 'cleverhans'"),
        ({"norm": "l0"}, "pgd norm must be one of linf, l2"),
        ({"eps": 0.0}, "eps must be a number > 0"),
        ({"params": {"stepz": 3}}, "unknown pgd parameter.*stepz"),
        ({"params": {"steps": -1}}, "pgd steps: must be > 0"),
        ({"y": "int32"}, "y must be int64"),
        ({"range": (-1.0, 1.0)}, "same input range"),
    ],
)
def test_bad_inputs_are_clear_errors(
    change: dict[str, object],
    message: str,
    models: dict[str, ModelWrapper],
    held_out: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = held_out
    kwargs: dict[str, object] = {
        "backend": "torchattacks",
        "norm": "linf",
        "eps": EPS,
        "params": PARAMS,
        "seed": SEED,
    }
    chosen: dict[str, ModelWrapper] = dict(models)
    if "models" in change:
        chosen = dict(list(models.items())[:1])
    if "range" in change:
        chosen["other"] = ModelWrapper(builtin_digits("digits-mlp")[0], input_range=(-1.0, 1.0))
    if "y" in change:
        y = y.astype(np.int32)
    kwargs.update({k: v for k, v in change.items() if k in ("backend", "norm", "eps", "params")})
    with pytest.raises(ValueError, match=message):
        transfer_matrix(chosen, x, y, **kwargs)  # type: ignore[arg-type]
