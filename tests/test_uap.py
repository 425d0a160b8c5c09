"""Universal adversarial perturbations against random controls (Hirano & Takemoto)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from unified_adv.analyses.uap import (
    EMPTY_RTOL,
    UapStudy,
    data_norm,
    fooling_rate,
    perturbation_norm,
    random_control,
    success_rate,
    uap_study,
)
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

N_FIT = 300
N_EVAL = 300


# --------------------------------------------------------------------------- controls


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 1, 8, 8), (3, 16, 16), (5,)])
@pytest.mark.parametrize("radius", [1e-3, 0.04, 1.0, 7.5])
def test_random_control_has_exactly_the_norm(
    norm: str, shape: tuple[int, ...], radius: float
) -> None:
    v = random_control(shape, norm, radius, np.random.default_rng(3))
    assert v.shape == shape and v.dtype == np.float32
    assert perturbation_norm(v, norm) == pytest.approx(radius, rel=1e-6)
    if norm == "linf":
        assert np.abs(v).max() <= radius * (1 + 1e-7)
        # Uniform, rescaled: not the sign vector (every value at +-radius).
        assert (np.abs(v) < 0.99 * radius).any()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_control_is_seeded(norm: str) -> None:
    def draw(seed: int) -> np.ndarray:
        return random_control((1, 8, 8), norm, 0.5, np.random.default_rng(seed))

    assert np.array_equal(draw(0), draw(0))
    assert not np.allclose(draw(0), draw(1))
    # Successive draws from one generator differ too.
    rng = np.random.default_rng(0)
    assert not np.allclose(
        random_control((1, 8, 8), norm, 0.5, rng), random_control((1, 8, 8), norm, 0.5, rng)
    )


def test_random_control_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="radius"):
        random_control((1, 8, 8), "l2", 0.0, rng)
    with pytest.raises(ValueError, match="norm"):
        random_control((1, 8, 8), "l1", 1.0, rng)
    with pytest.raises(ValueError, match="shape"):
        random_control((0, 8), "l2", 1.0, rng)


def test_data_norm_by_hand() -> None:
    x = np.array([[[[3.0, 4.0]]], [[[0.0, -2.0]]]], dtype=np.float32)  # (2, 1, 1, 2)
    assert data_norm(x, "l2") == pytest.approx((5.0 + 2.0) / 2)
    assert data_norm(x, "linf") == pytest.approx((4.0 + 2.0) / 2)
    with pytest.raises(ValueError, match="non-empty"):
        data_norm(x[:0], "l2")


# --------------------------------------------------------------------------- rates


def _linear_model() -> ModelWrapper:
    """Logits (x0 + 0.5, x1): class 1 exactly where x1 > x0 + 0.5."""
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
        lin.bias.copy_(torch.tensor([0.5, 0.0]))
    return ModelWrapper(nn.Sequential(nn.Flatten(), lin))


# A: class 0; with delta its x1 reaches 1.2 > 1.1, but clipped to 1.0 it stays class 0.
# B: class 0, flips to 1.   C: class 1, stays 1.   D: class 0, stays 0.
_X = np.array([[0.6, 0.9], [0.1, 0.5], [0.0, 0.7], [0.3, 0.2]], dtype=np.float32).reshape(
    4, 1, 1, 2
)
_DELTA = np.array([0.0, 0.3], dtype=np.float32)


def test_fooling_rate_on_a_linear_model() -> None:
    model = _linear_model()
    assert model.logits(_X).argmax(1).tolist() == [0, 0, 1, 0]
    # Clipped to [0, 1]: only B changes class.
    assert fooling_rate(model, _X, _DELTA.reshape(1, 1, 2), 0.0, 1.0) == pytest.approx(0.25)
    # Wider bounds: A flips as well; a (1, C, H, W) perturbation is accepted too.
    assert fooling_rate(model, _X, _DELTA.reshape(1, 1, 1, 2), 0.0, 2.0) == pytest.approx(0.5)
    assert fooling_rate(model, _X, np.zeros(2, np.float32), 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="does not fit"):
        fooling_rate(model, _X, np.zeros(3, np.float32), 0.0, 1.0)


def test_success_rate_on_a_linear_model() -> None:
    model = _linear_model()
    y = np.array([0, 0, 1, 0])
    # Images of other classes than 1 (A, B, D): only B becomes class 1.
    assert success_rate(model, _X, _DELTA, 1, 0.0, 1.0, y=y) == pytest.approx(1 / 3)
    # Without labels every image counts: B and C are class 1 after the perturbation.
    assert success_rate(model, _X, _DELTA, 1, 0.0, 1.0) == pytest.approx(0.5)
    # Target 0: the one other-class image (C) stays class 1.
    assert success_rate(model, _X, _DELTA, 0, 0.0, 1.0, y=y) == 0.0
    with pytest.raises(ValueError, match="other than the target"):
        success_rate(model, _X, _DELTA, 0, 0.0, 1.0, y=np.zeros(4, np.int64))


# --------------------------------------------------------------------------- digits CNN


Digits = tuple[ModelWrapper, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def digits() -> Iterator[Digits]:
    # One torch thread: ART's UAP loop runs thousands of one-image passes through a tiny
    # CNN, where a second thread only adds synchronisation, and on a busy 2-core machine
    # that made one 3 s study take a minute.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    net, _ = builtin_digits_cnn()
    x_train, y_train, x_test, y_test, _, _ = digits_split()
    yield ModelWrapper(net), x_train[:N_FIT], y_train[:N_FIT], x_test[:N_EVAL], y_test[:N_EVAL]
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def linf_study(digits: Digits) -> UapStudy:
    # Measured with the shipped digits CNN (300 fit / 300 eval, fgsm attacker, max_iter 10,
    # delta 0.2, 5 controls), seeds 0-4, L-inf zeta 0.3:
    #   untargeted R_f 0.490 / 0.720 / 0.803 / 0.863 / 0.763, controls 0.033-0.067 (margin
    #   0.447-0.830), largest predicted share 0.51-0.88;
    #   targeted (target 3, the class untargeted UAPs favour) R_s 0.856-0.945, controls
    #   <= 0.015.
    # The fooling rate at this zeta spreads widely over seeds (0.37), so the thresholds
    # below sit under the worst seed by about half that spread. (With the weights of
    # earlier, per-machine training: seeds 0 / 1 gave 0.80 / 0.74 at zeta 0.3; zeta 0.1:
    # 0.04, 0.2: 0.08 / 0.23, 0.4: 0.90.)
    model, xf, yf, xe, ye = digits
    return uap_study(model, xf, yf, xe, ye, norms=("linf",), zetas=(0.3,), targets=(3,), seed=0)


def test_untargeted_linf_uap_beats_its_random_control(linf_study: UapStudy) -> None:
    row = linf_study.row("linf", 0.3)
    assert row.kind == "untargeted" and row.target is None
    assert row.radius == pytest.approx(0.3 * linf_study.data_norms["linf"])
    assert row.uap_norm <= row.radius + 1e-6
    assert row.rate >= 0.3  # worst seed 0.49
    assert row.control_rate <= 0.2
    assert row.rate >= row.control_rate + 0.25  # worst seed's margin 0.447
    # ART's fooling rate is against the true labels, ours against the clean predictions;
    # on the training images the model classifies almost all correctly, so they agree.
    assert row.fit_rate == pytest.approx(row.art_fooling_rate, abs=0.05)
    # Hirano's dominant class: about half the images or more go to one class (measured
    # 0.51-0.88 over seeds 0-4; clean predictions: at most 0.2 per class).
    assert max(row.predicted_share) >= 0.4
    assert sum(row.predicted_share) == pytest.approx(1.0)
    assert max(linf_study.clean_predicted_share) < 0.2


def test_targeted_linf_uap_beats_its_random_control(linf_study: UapStudy) -> None:
    row = linf_study.row("linf", 0.3, target=3)
    assert row.kind == "targeted"
    assert row.uap_norm <= row.radius + 1e-6
    assert row.rate >= 0.5
    assert row.rate >= row.control_rate + 0.4
    assert row.dominant_class == 3


def test_untargeted_l2_uap_beats_its_random_control(
    digits: Digits,
) -> None:
    # Measured with the shipped digits CNN, L2 zeta 0.4 (radius 1.56), seeds 0-4: R_f
    # 0.637 / 0.530 / 0.613 / 0.797 / 0.610, controls 0.045-0.082 (margin 0.448-0.747), about
    # 3 s. (Earlier per-machine weights, seeds 0 / 1: zeta 0.1 0.03 / 0.04, 0.2 0.11 / 0.09,
    # 0.3 0.23 / 0.35, 0.4 0.76 / 0.70.)
    model, xf, yf, xe, ye = digits
    study = uap_study(model, xf, yf, xe, ye, norms=("l2",), zetas=(0.4,), seed=0)
    (row,) = study.rows
    assert row.uap_norm <= row.radius * (1 + 1e-5)
    assert row.uap_zeta == pytest.approx(row.uap_norm / study.data_norms["l2"])
    assert row.rate >= 0.4
    assert row.rate >= row.control_rate + 0.3
    assert study.perturbations[0].shape == xf.shape[1:]
    assert perturbation_norm(study.controls[0], "l2") == pytest.approx(row.radius, rel=1e-6)


def test_study_is_reproducible_and_json_able(
    digits: Digits,
    linf_study: UapStudy,
) -> None:
    model, xf, yf, xe, ye = digits
    again = uap_study(model, xf, yf, xe, ye, norms=("linf",), zetas=(0.3,), targets=(3,), seed=0)

    def strip(s: UapStudy) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in s.to_dict()["rows"]]

    assert strip(again) == strip(linf_study)
    for a, b in zip(again.perturbations, linf_study.perturbations, strict=True):
        assert np.array_equal(a, b)
    text = json.dumps(linf_study.to_dict(include_perturbations=True))
    assert json.loads(text)["rows"][0]["norm"] == "linf"


def test_study_rejects_bad_input(
    digits: Digits,
) -> None:
    model, xf, yf, xe, ye = digits
    with pytest.raises(ValueError, match="zeta"):
        uap_study(model, xf, yf, xe, ye, zetas=(0.0,))
    with pytest.raises(ValueError, match="zeta"):
        uap_study(model, xf, yf, xe, ye, zetas=(-0.1,))
    with pytest.raises(ValueError, match="not a class of the model"):
        uap_study(model, xf, yf, xe, ye, targets=(10,))
    with pytest.raises(ValueError, match="not a class of the model"):
        uap_study(model, xf, yf, xe, ye, targets=(-1,))
    with pytest.raises(ValueError, match="x_fit must be a non-empty"):
        uap_study(model, xf[:0], yf[:0], xe, ye)
    with pytest.raises(ValueError, match="x_eval must be a non-empty"):
        uap_study(model, xf, yf, xe[:0], ye[:0])
    with pytest.raises(ValueError, match="y_eval"):
        uap_study(model, xf, yf, xe, ye[:-1])
    with pytest.raises(ValueError, match="norm"):
        uap_study(model, xf, yf, xe, ye, norms=("l1",))
    with pytest.raises(ValueError, match="attacker 'fgsm'"):
        uap_study(model, xf, yf, xe, ye, targets=(3,), attacker="deepfool")


def test_targeted_rows_carry_both_r_s_conventions(linf_study: UapStudy, digits: Digits) -> None:
    """Ours (images of other classes) and the review's (all images, the target class
    included), each recomputed from the stored perturbation; ``rate`` is ours by default."""
    model, _, _, xe, ye = digits
    k = next(i for i, r in enumerate(linf_study.rows) if r.target == 3)
    row, noise = linf_study.rows[k], linf_study.perturbations[k]
    assert row.success_over == "other_classes" and row.rate == row.rate_other_classes
    assert row.rate_other_classes == success_rate(model, xe, noise, 3, 0.0, 1.0, y=ye)
    assert row.rate_all_images == success_rate(model, xe, noise, 3, 0.0, 1.0)
    # The target class's own images are mostly classified as the target already.
    assert row.rate_all_images > row.rate_other_classes
    untargeted = linf_study.row("linf", 0.3)
    assert untargeted.rate_all_images is None and untargeted.success_over is None


def test_the_review_convention_is_selectable_and_empty_uaps_have_no_rate(
    digits: Digits,
) -> None:
    """L2 at zeta 0.04: ART's targeted UAP comes back as exactly zero on the digits (measured
    with 300 and 500 fit images); it must be reported as empty, not as a rate."""
    model, xf, yf, xe, ye = digits
    study = uap_study(
        model,
        xf,
        yf,
        xe,
        ye,
        norms=("l2",),
        zetas=(0.04,),
        targets=(3,),
        seed=0,
        success_over="all_images",
    )
    row = study.row("l2", 0.04, 3)
    assert row.success_over == "all_images"
    assert row.uap_norm <= EMPTY_RTOL * row.radius and row.empty
    assert row.rate is None and row.fit_rate is None and row.rate_all_images is None
    assert study.settings["success_over"] == "all_images"
    with pytest.raises(ValueError, match="success_over"):
        uap_study(model, xf, yf, xe, ye, norms=("l2",), targets=(3,), success_over="mine")
