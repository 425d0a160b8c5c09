"""Defences: Xie's randomization layer, Lim's autoencoder, ART preprocessors, chains."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from unified_adv.adapters.art_defences import (
    ART_PREPROCESSORS,
    ArtPreprocessorLayer,
    art_preprocessor,
)
from unified_adv.defences.layers import (
    ConvAutoencoder,
    RandomizationLayer,
    default_randomization,
    train_autoencoder,
)
from unified_adv.defences.randomness import DefenceChain, is_randomized, reseed
from unified_adv.files import cache_dir
from unified_adv.sources.builtin import autoencoder as builtin_autoencoder
from unified_adv.sources.builtin.autoencoder import builtin_digits_autoencoder
from unified_adv.sources.builtin.digits import builtin_digits_cnn, digits_split
from unified_adv.sources.models import ModelWrapper

# --------------------------------------------------------------------------- randomization


def _images(n: int, c: int, h: int, w: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(n * 1000 + h * 10 + w)
    return lo + (hi - lo) * torch.rand(n, c, h, w, generator=g)


def _reference(layer: RandomizationLayer, x: torch.Tensor) -> torch.Tensor:
    """The spec, one sample at a time: nearest resize, pad with fill, bilinear back."""
    layer.reseed(layer.seed)
    sizes, tops, lefts = layer.draw(len(x))
    layer.reseed(layer.seed)
    p, out = layer.pad_to, []
    for i in range(len(x)):
        s, t, le = int(sizes[i]), int(tops[i]), int(lefts[i])
        r = F.interpolate(x[i : i + 1], size=(s, s), mode="nearest")
        r = F.pad(r, (le, p - le - s, t, p - t - s), value=layer.fill)
        if (p, p) != tuple(x.shape[2:]):
            r = F.interpolate(r, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
        out.append(r)
    return torch.cat(out)


CONFIGS = [
    # (input (H, W), min_size, max_size, pad_to, fill, input range)
    ((8, 8), 7, 8, 8, 0.0, (0.0, 1.0)),  # default_randomization(8)
    ((8, 8), 8, 9, 10, 0.0, (0.0, 1.0)),  # grow and pad past the input: resized back
    ((8, 8), 3, 12, 12, 0.0, (0.0, 1.0)),  # shrink and grow; pad_to > input
    ((6, 6), 2, 6, 6, -1.0, (-1.0, 1.0)),  # pad_to == input: no resize back; fill -1
    ((7, 5), 1, 9, 9, 0.0, (0.0, 255.0)),  # non-square input, [0, 255]
    ((16, 16), 14, 16, 16, -0.5, (-0.5, 0.5)),  # default_randomization(16), fill -0.5
]


@pytest.mark.parametrize("size, lo, hi, pad, fill, rng", CONFIGS)
def test_randomization_shape_range_and_spec(
    size: tuple[int, int],
    lo: int,
    hi: int,
    pad: int,
    fill: float,
    rng: tuple[float, float],
) -> None:
    layer = RandomizationLayer(
        input_size=size, min_size=lo, max_size=hi, pad_to=pad, fill=fill, seed=7
    )
    x = _images(24, 3, *size, lo=rng[0], hi=rng[1])
    before = torch.get_rng_state()
    out = layer(x)
    assert torch.equal(torch.get_rng_state(), before)  # its own generator, never the global one
    assert out.shape == x.shape and out.dtype == x.dtype
    tol = 1e-5 * (rng[1] - rng[0])
    assert float(out.min()) >= min(fill, float(x.min())) - tol
    assert float(out.max()) <= float(x.max()) + tol
    # Bit-identical to the per-sample reference built from F.interpolate and F.pad.
    assert torch.equal(out, _reference(layer, x))


def test_randomization_reproducible_and_random() -> None:
    layer = RandomizationLayer(input_size=(8, 8), **default_randomization(8), seed=3)
    x = _images(1, 1, 8, 8).repeat(64, 1, 1, 1)  # one image, 64 times
    first, second = layer(x), layer(x)
    layer.reseed(3)
    assert torch.equal(layer(x), first)  # same seed: bit-identical
    assert torch.equal(layer(x), second)  # ... and the stream goes on the same way
    assert not torch.equal(first, second)  # each query draws afresh
    layer.reseed(4)
    assert not torch.equal(layer(x), first)  # another seed, other draws
    # Per-sample draws: the same image comes out in several different ways.
    assert len({out.numpy().tobytes() for out in first}) > 4
    layer.reseed(3)
    sizes, tops, lefts = layer.draw(64)
    assert set(sizes.tolist()) == {7, 8}
    assert int(tops.min()) >= 0 and int((tops + sizes).max()) <= 8
    assert len(set(zip(sizes.tolist(), tops.tolist(), lefts.tolist(), strict=True))) > 4


def test_randomization_hand_checked_cases() -> None:
    x = _images(5, 2, 4, 4)
    # min = max = pad_to = input size: resize to itself, offset 0, no resize back.
    ident = RandomizationLayer(input_size=(4, 4), min_size=4, max_size=4, pad_to=4)
    assert torch.equal(ident(x), x)

    # 2x2 input shrunk to 1x1 (nearest keeps the top-left pixel), padded to 2x2 with fill:
    # exactly one pixel holds x[..., 0, 0], at the drawn offset; the rest is the fill.
    x2 = _images(32, 1, 2, 2, lo=0.5, hi=1.0)
    one = RandomizationLayer(input_size=(2, 2), min_size=1, max_size=1, pad_to=2, fill=-1.0)
    out = one(x2)
    one.reseed(0)
    _, tops, lefts = one.draw(32)
    for i in range(32):
        expected = torch.full((2, 2), -1.0)
        expected[tops[i], lefts[i]] = x2[i, 0, 0, 0]
        assert torch.equal(out[i, 0], expected)
    assert len(set(zip(tops.tolist(), lefts.tolist(), strict=True))) == 4

    # min = max = D = 2, pad_to = 3: the image sits at one of four offsets on a 3x3 zero
    # canvas, which bilinear resizing (align_corners=False) maps back to 2x2 as M C M^T,
    # M = [[3/4, 1/4, 0], [0, 1/4, 3/4]] (sample points 0.25 and 1.75).
    pad = RandomizationLayer(input_size=(2, 2), min_size=2, max_size=2, pad_to=3)
    m = np.array([[0.75, 0.25, 0.0], [0.0, 0.25, 0.75]])
    out = pad(x2).numpy()
    pad.reseed(0)
    _, tops, lefts = pad.draw(32)
    for i in range(32):
        canvas = np.zeros((3, 3))
        t, le = int(tops[i]), int(lefts[i])
        canvas[t : t + 2, le : le + 2] = x2[i, 0].numpy()
        np.testing.assert_allclose(out[i, 0], m @ canvas @ m.T, atol=1e-6)
    assert len(set(zip(tops.tolist(), lefts.tolist(), strict=True))) == 4


def test_randomization_gradient() -> None:
    layer = RandomizationLayer(input_size=(8, 8), **default_randomization(8), seed=1)
    x = _images(6, 1, 8, 8).requires_grad_(True)
    layer(x).pow(2).sum().backward()
    assert x.grad is not None
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    # The gradient is the true one: the same draws for every call gradcheck makes.
    xd = _images(2, 1, 4, 4).double().requires_grad_(True)
    small = RandomizationLayer(input_size=(4, 4), min_size=2, max_size=5, pad_to=6, seed=2)

    def fixed(inp: torch.Tensor) -> torch.Tensor:
        small.reseed(2)
        return small(inp)

    assert torch.autograd.gradcheck(fixed, (xd,))


def test_default_randomization() -> None:
    # Xie et al.'s up-to-10 % jitter (299 vs 331), as shrink-then-pad back to the side;
    # at least one pixel of jitter for small inputs.
    assert default_randomization(299) == {"min_size": 270, "max_size": 299, "pad_to": 299}
    assert default_randomization(8) == {"min_size": 7, "max_size": 8, "pad_to": 8}
    assert default_randomization(32) == {"min_size": 29, "max_size": 32, "pad_to": 32}
    assert default_randomization((28, 20)) == {"min_size": 25, "max_size": 28, "pad_to": 28}
    with pytest.raises(ValueError, match="positive integer"):
        default_randomization(0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_size": 0, "max_size": 4, "pad_to": 4}, "min_size: expected a positive integer"),
        ({"min_size": 5, "max_size": 4, "pad_to": 6}, "min_size <= max_size <= pad_to"),
        ({"min_size": 4, "max_size": 7, "pad_to": 6}, "min_size <= max_size <= pad_to"),
        ({"min_size": 4.0, "max_size": 4, "pad_to": 6}, "min_size: expected a positive integer"),
        ({"min_size": 4, "max_size": 4, "pad_to": 6, "input_size": (8,)}, "input_size"),
        ({"min_size": 4, "max_size": 4, "pad_to": 6, "input_size": (8, 0)}, "input_size"),
    ],
)
def test_randomization_invalid(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"input_size": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        RandomizationLayer(**args)  # type: ignore[arg-type]


def test_randomization_rejects_other_sizes() -> None:
    layer = RandomizationLayer(input_size=(8, 8), min_size=8, max_size=9, pad_to=10)
    with pytest.raises(ValueError, match=r"expected inputs of size \(8, 8\), got \(6, 8\)"):
        layer(torch.zeros(2, 1, 6, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer(torch.zeros(1, 8, 8))


# --------------------------------------------------------------------------- autoencoder


@pytest.fixture(scope="module")
def digits_models() -> tuple[torch.nn.Module, ConvAutoencoder, dict[str, object]]:
    net, _ = builtin_digits_cnn()
    ae, details = builtin_digits_autoencoder()
    return net, ae, details


def _accuracy(model: ModelWrapper, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.logits(x).argmax(1) == y).mean())


def test_autoencoder_helps_on_noisy_digits(
    digits_models: tuple[torch.nn.Module, ConvAutoencoder, dict[str, object]],
) -> None:
    net, ae, details = digits_models
    _, _, x, y, _, _ = digits_split()
    plain, defended = ModelWrapper(net), ModelWrapper(net, pre=ae)
    assert not ae.training  # BatchNorm uses its running statistics
    rng = np.random.default_rng(0)
    noisy = np.concatenate(
        [np.clip(x + rng.normal(0.0, 0.5, x.shape), 0.0, 1.0).astype(np.float32) for _ in range(4)]
    )
    yy = np.tile(y, 4)
    clean_plain, clean_ae = _accuracy(plain, x, y), _accuracy(defended, x, y)
    right_plain = plain.logits(noisy).argmax(1) == yy
    right_ae = defended.logits(noisy).argmax(1) == yy
    noisy_plain, noisy_ae = float(right_plain.mean()), float(right_ae.mean())
    # Measured (540 held-out digits, four draws of noise with std 0.5): undefended
    # 0.584 -> autoencoder 0.635 (+5.0 points; other noise seeds +4.9, +7.7; std 0.4:
    # +3.8 to +4.8, std 0.6: +5.1 to +6.8); clean 0.983 -> 0.980. Lim (CIFAR-10, std
    # 0.1): 17.4% -> 39.6%.
    assert noisy_plain < clean_plain - 0.3  # the noise does hurt
    assert noisy_ae > noisy_plain + 0.03, (noisy_plain, noisy_ae)
    # Paired (McNemar) check: the samples only the autoencoder gets right outnumber
    # those only the plain model gets right by far more than chance (measured z = 6.1).
    only_ae = int((right_ae & ~right_plain).sum())
    only_plain = int((right_plain & ~right_ae).sum())
    assert (only_ae - only_plain) / np.sqrt(only_ae + only_plain) > 3.0, (only_ae, only_plain)
    assert clean_ae > clean_plain - 0.02, (clean_plain, clean_ae)
    # The reconstruction is closer to the clean image than the noisy input was.
    assert details["held_out_mse_noisy"] < details["held_out_mse_noise_only"]  # type: ignore[operator]


def test_autoencoder_ships_and_other_settings_are_cached(
    digits_models: tuple[torch.nn.Module, ConvAutoencoder, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, ae, details = digits_models
    # The default settings (what scenarios name) ship in the package: no training, ever.
    assert Path(str(details["weights"])).name == "digits-ae-w16-n0.1-e30.safetensors"
    assert details["trained"] is False and "cache" not in details
    # Other settings train once (2 epochs here: cheap) and are cached.
    small, first = builtin_digits_autoencoder(epochs=2)
    path = Path(str(first["cache"]))
    assert first["trained"] is True and path.is_file() and path.name == "digits-ae-w16-n0.1-e2-v1.pt"
    assert path.parent == cache_dir()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(builtin_autoencoder, "train_autoencoder", no_training)
    again, details2 = builtin_digits_autoencoder(epochs=2)
    assert details2["trained"] is False and not again.training
    for key, value in small.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert details2["held_out_mse_clean"] == first["held_out_mse_clean"]
    assert not list(path.parent.glob("*.tmp*"))  # written atomically: no leftovers


def test_train_autoencoder_deterministic_and_checked() -> None:
    x = digits_split()[0][:128]
    a = train_autoencoder(x, width=4, noise=0.1, epochs=2, seed=5)
    b = train_autoencoder(x, width=4, noise=0.1, epochs=2, seed=5)
    c = train_autoencoder(x, width=4, noise=0.1, epochs=2, seed=6)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    assert not a.training
    with pytest.raises(ValueError, match=r"even height and width .* got \(7, 8\)"):
        train_autoencoder(np.zeros((4, 1, 7, 8), np.float32), width=4, noise=0.1, epochs=1, seed=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        train_autoencoder(np.zeros((4, 8, 8), np.float32), width=4, noise=0.1, epochs=1, seed=0)
    with pytest.raises(ValueError, match="even height and width"):
        a(torch.zeros(1, 1, 8, 9))


def test_autoencoder_output_in_input_range() -> None:
    torch.manual_seed(0)
    ae = ConvAutoencoder(channels=3, width=4, input_range=(-1.0, 2.0)).eval()
    with torch.no_grad():
        out = ae(_images(4, 3, 6, 6, lo=-5.0, hi=5.0))
    assert out.shape == (4, 3, 6, 6)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 2.0
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        ae(torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match="input_range"):
        ConvAutoencoder(channels=1, width=4, input_range=(1.0, 0.0))


# --------------------------------------------------------------------------- ART preprocessors


def _digits(n: int = 12) -> np.ndarray:
    return np.ascontiguousarray(digits_split()[2][:n])


@pytest.mark.parametrize("name", ART_PREPROCESSORS)
def test_art_layer_is_art(name: str) -> None:
    layer = art_preprocessor(name, {}, input_range=(0.0, 1.0), channels=1, seed=9)
    x = _digits()
    # Every keyword of the ART class is set explicitly and recorded.
    cls = type(layer.preproc)
    expected = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(layer.art_call["kwargs"]) == expected
    assert layer.art_call["class"] == f"art.defences.preprocessor.{cls.__name__}"
    assert layer.randomized is (name == "gaussian_augmentation") is is_randomized(layer)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = layer(xt)
    if layer.randomized:  # the documented seeding: (seed, call number)
        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([9, 0]).generate_state(4))
        direct, _ = layer.preproc(x.copy())
        np.random.set_state(state)
    else:
        direct, _ = layer.preproc(x.copy())
    assert out.dtype == torch.float32 and out.shape == xt.shape
    assert np.array_equal(out.detach().numpy(), direct.astype(np.float32))
    assert not np.array_equal(out.detach().numpy(), x)  # it does transform the digits

    upstream = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    out.backward(torch.from_numpy(upstream))
    assert xt.grad is not None
    assert np.array_equal(xt.grad.numpy(), layer.preproc.estimate_gradient(x, upstream))


def test_art_gaussian_reproducible_without_touching_numpy() -> None:
    layer = art_preprocessor(
        "gaussian_augmentation", {"sigma": 0.2}, input_range=(0.0, 1.0), channels=1, seed=3
    )
    x = torch.from_numpy(_digits())
    np.random.seed(123)
    state = np.random.get_state()
    first, second = layer(x), layer(x)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state, after, strict=True))
    assert not torch.equal(first, second)  # fresh noise for every query
    layer.reseed(3)
    assert torch.equal(layer(x), first) and torch.equal(layer(x), second)
    layer.reseed(4)
    assert not torch.equal(layer(x), first)
    noise = (first - x).numpy()
    assert 0.1 < float(noise[(x.numpy() > 0.3) & (x.numpy() < 0.7)].std()) < 0.3
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0  # clipped to the range


def test_art_jpeg_on_one_channel_digits() -> None:
    layer = art_preprocessor(
        "jpeg_compression", {"quality": 30}, input_range=(0.0, 1.0), channels=1
    )
    x = _digits(40)
    out = layer(torch.from_numpy(x)).numpy()
    assert out.shape == (40, 1, 8, 8)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert 0.0 < float(np.abs(out - x).mean()) < 0.1  # lossy, but still the digit
    assert layer.art_call["kwargs"]["quality"] == 30
    # 3-channel images take ART's RGB path and work as well.
    rgb = art_preprocessor("jpeg_compression", {}, input_range=(0.0, 255.0), channels=3)
    assert rgb(_images(2, 3, 16, 16, hi=255.0)).shape == (2, 3, 16, 16)


@pytest.mark.parametrize(
    "name, params, rng, message",
    [
        ("median", {}, (0.0, 1.0), "unknown ART preprocessor 'median'; expected one of"),
        ("spatial_smoothing", {"window": 3}, (0.0, 1.0), "unknown parameter.*window_size"),
        ("spatial_smoothing", {"window_size": 0}, (0.0, 1.0), "window_size: expected a pos"),
        ("jpeg_compression", {}, (-1.0, 1.0), r"expected input_range \(0, 1\) or \(0, 255\)"),
        ("jpeg_compression", {"quality": 101}, (0.0, 1.0), "quality: expected an integer"),
        ("feature_squeezing", {"bit_depth": 65}, (0.0, 1.0), "bit_depth: expected"),
        ("gaussian_augmentation", {"sigma": -1}, (0.0, 1.0), "sigma: expected a positive"),
    ],
)
def test_art_factory_invalid(
    name: str, params: dict[str, object], rng: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        art_preprocessor(name, params, input_range=rng, channels=1)


def test_art_layer_checks_channels() -> None:
    layer = art_preprocessor("feature_squeezing", {}, input_range=(0.0, 1.0), channels=3)
    assert isinstance(layer, ArtPreprocessorLayer)
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        layer(torch.zeros(1, 1, 8, 8))


# --------------------------------------------------------------------------- chains


def _small_ae() -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(channels=1, width=4).eval()


def test_chain_order_and_randomness() -> None:
    ae = _small_ae()
    rand = RandomizationLayer(input_size=(8, 8), **default_randomization(8))
    chain = DefenceChain(ae, rand)
    x = torch.from_numpy(_digits())
    with torch.no_grad():
        reseed(chain, 11)
        out = chain(x)
        rand.reseed(rand.seed)
        assert torch.equal(out, rand(ae(x)))  # autoencoder first, then randomization
        reseed(chain, 11)
        swapped = DefenceChain(rand, ae)(x)
        assert not torch.equal(out, swapped)  # order matters
        rand.reseed(rand.seed)
        assert torch.equal(swapped, ae(rand(x)))

    assert is_randomized(chain) and chain.randomized
    assert not is_randomized(DefenceChain(ae))
    squeeze = art_preprocessor("feature_squeezing", {}, input_range=(0.0, 1.0), channels=1)
    gauss = art_preprocessor("gaussian_augmentation", {}, input_range=(0.0, 1.0), channels=1)
    assert not is_randomized(DefenceChain(ae, squeeze))
    assert is_randomized(DefenceChain(squeeze, gauss))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert is_randomized(ModelWrapper(net, pre=chain))
    assert not is_randomized(ModelWrapper(net, pre=ae))


def test_reseed_derives_distinct_sub_seeds() -> None:
    cfg = default_randomization(8)
    a = RandomizationLayer(input_size=(8, 8), **cfg)
    b = RandomizationLayer(input_size=(8, 8), **cfg)
    gauss = art_preprocessor("gaussian_augmentation", {}, input_range=(0.0, 1.0), channels=1)
    chain = DefenceChain(a, gauss, b)
    wrapper = ModelWrapper(torch.nn.Flatten(), pre=chain)
    x = torch.from_numpy(_digits())

    used = reseed(wrapper, 0)
    assert list(used) == ["pre.0", "pre.1", "pre.2"]
    assert len(set(used.values())) == 3
    assert (a.seed, gauss.seed, b.seed) == tuple(used.values())
    first, second = wrapper(x), wrapper(x)
    assert chain.reseed(0) != used  # names relative to the chain ...
    assert list(chain.reseed(0).values()) == list(used.values())  # ... same sub-seeds
    assert torch.equal(wrapper(x), first) and torch.equal(wrapper(x), second)
    reseed(wrapper, 1)
    assert not torch.equal(wrapper(x), first)
    # Two identical layers fed the same image draw differently after one reseed.
    reseed(chain, 0)
    one = x[:1].repeat(16, 1, 1, 1)
    assert not torch.equal(a(one), b(one))
