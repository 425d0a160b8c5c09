"""Exhaustive one-pixel flips: known answers, and the engines against the reference."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from unified_adv.analyses.pixelflip import (
    FlipResult,
    bruteforce_flips,
    candidate_validity,
    corners,
    exhaustive_flips,
    fast_flips,
    generic_flips,
    plan_fast,
    resolve_mode,
)
from unified_adv.sources.builtin.line_cnn import LineCNN, builtin_line_cnn
from unified_adv.sources.lines import generate_lines
from unified_adv.sources.models import ModelWrapper


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These are many small forward passes: on a shared 2-core machine two torch threads
    were up to 10x slower than one whenever another process held a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _binary(n: int, size: int, seed: int, p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 1, size, size)) < p).astype(np.float32)


def _linear(
    size: int, weights: dict[tuple[int, int], float], bias: tuple[float, float]
) -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor(bias))
        for (i, j), w in weights.items():
            net[1].weight[1, i * size + j] = w
    return net.eval()


def _all_engines(model: nn.Module, x: np.ndarray, **kw: Any) -> tuple[np.ndarray, dict, dict]:
    """Reference mask; assert generic and fast give the same on every candidate."""
    ref = bruteforce_flips(model, x, **kw)
    gstats: dict[str, Any] = {}
    fstats: dict[str, Any] = {}
    gen = generic_flips(model, x, stats=gstats, **kw)
    fast = fast_flips(model, x, stats=fstats, **kw)
    assert gen.shape == fast.shape == ref.shape
    assert np.array_equal(gen, ref), np.argwhere(gen != ref)[:5]
    assert np.array_equal(fast, ref), np.argwhere(fast != ref)[:5]
    return ref, gstats, fstats


# --------------------------------------------------------------------------- known answers


def test_flips_at_the_deciding_pixel_and_only_there_are_adversarial() -> None:
    # class 1 iff pixel (1, 2) is on: z1 = x[1, 2], z0 = 0.5
    model = _linear(4, {(1, 2): 1.0}, (0.5, 0.0))
    x = _binary(12, 4, seed=0, p=0.5)
    ref, _, _ = _all_engines(model, x)
    expected = np.zeros_like(ref)
    expected[:, 0, 1, 2] = True
    assert np.array_equal(ref, expected)
    result = exhaustive_flips(model, x)
    assert result.engine == "fast"
    assert np.array_equal(result.adversarial, expected)
    assert result.share() == pytest.approx(1 / 16)
    assert result.success_rate() == 1.0
    assert np.array_equal(result.clean_pred, x[:, 0, 1, 2].astype(np.int64))
    heat = np.zeros((4, 4))
    heat[1, 2] = 1.0
    np.testing.assert_array_equal(result.heatmap(), heat)
    assert all(f.tolist() == [[1, 2]] for f in result.successful_flips())


def test_exact_ties_are_settled_by_the_reference() -> None:
    # z1 = x[1, 2] - x[2, 1], z0 = 0: argmax picks class 0 on a tie, so most candidates
    # sit exactly on a margin of 0 and must be re-evaluated the reference's way.
    model = _linear(4, {(1, 2): 1.0, (2, 1): -1.0}, (0.0, 0.0))
    x = _binary(16, 4, seed=1, p=0.5)
    ref, gstats, fstats = _all_engines(model, x)
    z = x[:, 0, 1, 2] - x[:, 0, 2, 1]
    expected = np.zeros_like(ref)
    for n in range(len(x)):
        for i in range(4):
            for j in range(4):
                y = x[n, 0].copy()
                y[i, j] = 1 - y[i, j]
                expected[n, 0, i, j] = (y[1, 2] - y[2, 1] > 0) != (z[n] > 0)
    assert np.array_equal(ref, expected)
    assert expected.sum() > 0
    assert fstats["rechecked"] > 0 and gstats["rechecked"] > 0
    assert fstats["clean_rechecked"] > 0


class _BatchOfOneNudge(nn.Module):
    """Adds 1e-6 to class 1 when run on a batch of one: a stand-in for float noise that
    depends on the batch, made deterministic. The reference takes clean classes from
    batches of one and candidates from batches of D², so on a tied image it calls
    every flip that keeps the tie adversarial; engines match it only by rechecking."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _linear(4, {(1, 2): 1.0, (2, 1): -1.0}, (0.0, 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.layers(x)
        return z + torch.tensor([0.0, 1e-6]) if len(x) == 1 else z


def test_batch_dependent_noise_is_settled_by_the_reference() -> None:
    model = _BatchOfOneNudge().eval()
    x = _binary(16, 4, seed=1, p=0.5)
    ref, gstats, fstats = _all_engines(model, x)
    z = x[:, 0, 1, 2] - x[:, 0, 2, 1]
    tied = z == 0
    assert 0 < tied.sum() < len(x)
    expected = np.zeros_like(ref)
    for n in range(len(x)):
        for i in range(4):
            for j in range(4):
                y = x[n, 0].copy()
                y[i, j] = 1 - y[i, j]
                after = y[1, 2] - y[2, 1] > 0  # a batch of D² candidates: no nudge
                expected[n, 0, i, j] = after != (z[n] >= 0)  # alone: a tie goes to 1
    assert np.array_equal(ref, expected)
    assert ref[tied].sum() == 15 * tied.sum()
    assert fstats["rechecked"] > 0 and gstats["rechecked"] > 0


# --------------------------------------------------------------------------- random nets


def _calibrated(net: nn.Sequential, x: np.ndarray, tie: bool = True) -> nn.Sequential:
    """Shift the last bias so the clean decision splits the images: flips then cross.

    With ``tie`` one image sits on a margin of ~0 (a float-noise tie, which exercises
    the recheck); without, the split falls halfway between two images' margins."""
    net.eval()
    with torch.no_grad():
        z = net(torch.from_numpy(x))
        gap = (z[:, 1] - z[:, 0]).sort().values
        mid = len(gap) // 2
        last = net[-1]
        assert isinstance(last, nn.Linear)
        last.bias[1] -= gap[mid] if tie else (gap[mid - 1] + gap[mid]) / 2
    return net


def _net(*layers: nn.Module, size: int, channels: int = 1) -> nn.Sequential:
    net = nn.Sequential(*layers)
    net(torch.zeros(1, channels, size, size))  # materialise LazyLinear
    return net


NETS: dict[str, Callable[[], nn.Sequential]] = {
    "valid": lambda: _net(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.LazyLinear(16),
        nn.ReLU(),
        nn.Linear(16, 2),
        size=16,
    ),
    "padding1": lambda: _net(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.LazyLinear(16),
        nn.ReLU(),
        nn.Linear(16, 2),
        size=16,
    ),
    "mixed": lambda: _net(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(6, 6, 3, padding="same"),
        nn.ReLU(),
        nn.Dropout2d(0.1),
        nn.Conv2d(6, 4, (3, 5), padding=(2, 1)),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.ReLU(),
        nn.LazyLinear(12),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(12, 2),
        size=16,
    ),
    "three_classes": lambda: _net(
        nn.Conv2d(1, 4, 3, padding=2),
        nn.MaxPool2d(2, stride=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(3),
        size=16,
    ),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_fast_and_generic_equal_bruteforce_on_random_conv_nets(name: str) -> None:
    torch.manual_seed(0)
    lines = generate_lines(16, 2.0)
    x = np.concatenate([lines.images[::16], _binary(12, 16, seed=2, p=0.2)])
    net = _calibrated(NETS[name](), x)
    ref, _, _ = _all_engines(net, x)
    assert ref.shape == (len(x), 1, 16, 16)
    assert ref.sum() >= 20  # the comparison is about real adversarial flips
    assert not ref.all()


def test_line_cnn_at_an_odd_pooling_size_where_some_pixels_reach_nothing() -> None:
    # D = 20: 18 -> 9 -> 7 -> 3, the last conv row is dropped by the floor-mode pool,
    # so flips in the last input row cannot change anything.
    torch.manual_seed(1)
    lines = generate_lines(20, 4.0)
    x = lines.images[::8]
    net = _calibrated(LineCNN(20), x, tie=False)
    ref, _, _ = _all_engines(net, x)
    assert ref.sum() >= 20
    assert not ref[:, :, 19, :].any() and not ref[:, :, :, 19].any()


def test_trained_line_cnn_fast_equals_bruteforce_on_every_candidate() -> None:
    lines = generate_lines(16, 2.0)
    net, details = builtin_line_cnn(16, 2.0, seed=0)
    assert details["training_accuracy"] == 1.0
    ref, _, _ = _all_engines(net, lines.images)
    result = exhaustive_flips(net, lines.images)
    assert result.engine == "fast" and np.array_equal(result.adversarial, ref)
    assert np.array_equal(result.clean_pred, lines.labels)
    assert 0 < result.n_adversarial < result.n_candidates == len(lines) * 256
    angles, share, counts = result.share_by_angle(lines.angle)
    assert counts.sum() == len(lines)
    adv_per_image = ref.reshape(len(lines), -1).sum(1)
    for a, s, c in zip(angles, share, counts, strict=True):
        sel = np.isclose(lines.angle, a)
        assert s == pytest.approx(adv_per_image[sel].sum() / (c * 256))


def test_shards_give_the_same_verdicts() -> None:
    torch.manual_seed(3)
    x = generate_lines(16, 4.0).images[:20]
    net = _calibrated(NETS["valid"](), x)
    ref = bruteforce_flips(net, x)
    for engine in (generic_flips, fast_flips):
        parts = [engine(net, x, start=a, stop=b) for a, b in ((0, 7), (7, 8), (8, 20))]
        assert np.array_equal(np.concatenate(parts), ref)
    assert fast_flips(net, x, start=5, stop=5).shape == (0, 1, 16, 16)
    assert np.array_equal(fast_flips(net, x, image_batch=3, max_batch=50), ref)
    assert np.array_equal(generic_flips(net, x, batch_size=37), ref)
    with pytest.raises(ValueError, match="image range"):
        generic_flips(net, x, start=3, stop=30)


def test_grey_and_rgb_corners_with_normalisation() -> None:
    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    grey = rng.random((8, 1, 10, 10)).astype(np.float32)
    grey[:, :, ::3, ::4] = 1.0  # pixels already at a corner: that corner is no candidate
    net = _net(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.LazyLinear(2), size=10,
    )  # fmt: skip
    wrapped = ModelWrapper(_calibrated(net, (grey - 0.5) / 0.25), mean=[0.5], std=[0.25])
    assert resolve_mode(grey, (0.0, 1.0)) == "corners"
    ref, _, _ = _all_engines(wrapped, grey)
    assert ref.shape == (8, 2, 10, 10)
    valid = candidate_validity(grey, "corners", (0.0, 1.0))
    assert not valid[:, 1, ::3, ::4].any() and valid[:, 0].all()
    assert not (ref & ~valid).any() and ref.sum() >= 10

    rgb = rng.random((5, 3, 8, 8)).astype(np.float32)
    rgb[:, :, 2, 5] = 0.0  # black: corner 0 is no candidate there
    net3 = _net(
        nn.Conv2d(3, 5, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(2),
        size=8, channels=3,
    )  # fmt: skip
    ref3, _, _ = _all_engines(_calibrated(net3, rgb), rgb)
    assert ref3.shape == (5, 8, 8, 8) and ref3.sum() >= 10
    np.testing.assert_array_equal(
        corners(3, (0.0, 1.0))[[0, 1, 4, 7]], [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 1, 1]]
    )
    assert not candidate_validity(rgb, "corners", (0.0, 1.0))[:, 0, 2, 5].any()


def test_binary_images_in_another_input_range_are_flipped_within_it() -> None:
    torch.manual_seed(7)
    x = generate_lines(16, 4.0).images[::6] * 2.0 - 1.0  # binary in [-1, 1]
    net = _calibrated(NETS["valid"](), x)
    wrapped = ModelWrapper(net, input_range=(-1.0, 1.0))
    assert resolve_mode(x, wrapped.input_range) == "flip"
    ref, _, _ = _all_engines(wrapped, x)
    assert ref.shape == (len(x), 1, 16, 16) and ref.sum() >= 10
    flipped = x[:1].copy()
    flipped[0, 0, 3, 4] *= -1.0  # lo + hi - x
    with torch.no_grad():
        moved = wrapped(torch.from_numpy(flipped)).argmax(1) != wrapped(
            torch.from_numpy(x[:1])
        ).argmax(1)
    assert bool(moved[0]) == bool(ref[0, 0, 3, 4])


# --------------------------------------------------------------------------- refusals


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x * 2.0)  # not just .layers: the walk must notice


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ((nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(72, 2)), "Tanh"),
        ((nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(18, 2)), "AvgPool2d"),
        ((nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(18, 2)), "stride"),
        ((nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 2)), "BatchNorm2d"),
        ((nn.MaxPool2d(2, padding=1), nn.Flatten(), nn.Linear(25, 2)), "padding"),
        ((nn.Flatten(), nn.Linear(64, 4), nn.Sigmoid(), nn.Linear(4, 2)), "Sigmoid"),
    ],
)
def test_unsupported_layers_are_named(layers: tuple[nn.Module, ...], message: str) -> None:
    torch.manual_seed(5)
    net = nn.Sequential(*layers).eval()
    x = _binary(3, 8, seed=5)
    with pytest.raises(ValueError, match=message):
        plan_fast(net, x.shape[1:])
    with pytest.raises(ValueError, match=message):
        fast_flips(net, x)
    result = exhaustive_flips(net, x)
    assert result.engine == "generic"
    assert np.array_equal(result.adversarial, bruteforce_flips(net, x))


def test_a_forward_that_is_not_its_layers_is_refused() -> None:
    torch.manual_seed(6)
    net = _Custom().eval()
    x = _binary(4, 8, seed=6)
    with pytest.raises(ValueError, match="does not reproduce"):
        fast_flips(net, x)
    result = exhaustive_flips(net, x)
    assert result.engine == "generic" and "fast_refused" in result.stats
    assert np.array_equal(result.adversarial, bruteforce_flips(net, x))


# --------------------------------------------------------------------------- summaries


def test_summaries_by_angle_heatmap_and_flip_lists() -> None:
    adv = np.zeros((3, 1, 2, 2), dtype=bool)
    adv[0, 0, 0, 0] = adv[0, 0, 1, 1] = True
    adv[2, 0, 0, 0] = True
    result = FlipResult(adv, np.ones_like(adv), np.zeros(3, np.int64), "manual", 0.0)
    angles, share, counts = result.share_by_angle(np.array([10.0, 10.0, 20.0]))
    assert angles.tolist() == [10.0, 20.0] and counts.tolist() == [2, 1]
    np.testing.assert_allclose(share, [2 / 8, 1 / 4])
    assert result.share() == pytest.approx(3 / 12)
    np.testing.assert_allclose(result.heatmap(), [[2 / 3, 0], [0, 1 / 3]])
    assert [f.tolist() for f in result.successful_flips()] == [[[0, 0], [1, 1]], [], [[0, 0]]]
    assert result.image_success().tolist() == [True, False, True]
    with pytest.raises(ValueError, match="one angle per image"):
        result.share_by_angle(np.zeros(2))


@pytest.mark.parametrize("backend", ["torchattacks", "art"])
def test_one_pixel_de_budget_is_what_the_library_runs(backend: str) -> None:
    """de_budget's population and bound match the candidates the library really evaluates
    on the digits CNN (the initial population is always evaluated; at most every step's)."""
    from unified_adv.adapters import AttackRequest, adapter_class
    from unified_adv.analyses.pixelflip import de_budget
    from unified_adv.catalogue.attacks import ATTACKS
    from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
    from unified_adv.sources.models import ModelWrapper

    class Counting(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.seen = inner, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen += len(x)
            return self.inner(x)

    net = Counting(builtin_digits_cnn()[0])
    _, _, x, y, _, _ = digits_split()
    params = ATTACKS["one_pixel"].resolve(None, {"steps": 2})
    request = AttackRequest(attack="one_pixel", norm="l0", eps=None, params=params, targeted=False)
    adapter = adapter_class(backend)(model=ModelWrapper(net))
    adapter.generate(request, x[:1], y[:1], None, seed=0)  # builds ART's estimator
    net.seen = 0
    adapter.generate(request, x[1:2], y[1:2], None, seed=0)
    budget = de_budget(backend, 1, 1, 2, params["popsize"])
    assert budget["population"] == (399 if backend == "art" else 9)
    # A few extra forward passes score the start and the result.
    assert budget["population"] <= net.seen <= budget["evaluations"] + 5
