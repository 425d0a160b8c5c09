"""Input-transformation defences, placed in :class:`ModelWrapper`'s ``pre`` slot.

Lim ("How to create adversarial examples and mitigate adversarial effects") puts two
mitigations in front of an unchanged CNN: Xie et al.'s (ICLR 2018) randomization layer
(random resize, then random zero padding) and a convolutional denoising autoencoder.
Both are torch modules here, so every backend attacks the defended function and
gradients flow through them. ART's numpy preprocessors (spatial smoothing, JPEG,
feature squeezing, Gaussian noise) are offered through :class:`ArtPreprocessorLayer`
instead of being re-written: forward is ART's own code, backward ART's own BPDA
gradient (``estimate_gradient``).

Randomised defences draw from their own seeded generators (never torch's or numpy's
global stream), so a run is reproducible under :func:`reseed`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Re-exported: defined in defences/randomness.py, below both these layers and the adapters.
from unified_adv.defences.randomness import DefenceChain as DefenceChain
from unified_adv.defences.randomness import is_randomized as is_randomized
from unified_adv.defences.randomness import reseed as reseed
from unified_adv.sources.models import cache_dir

AUTOENCODER_VERSION = 1

# --------------------------------------------------------------------------- helpers


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _range(input_range: Sequence[float]) -> tuple[float, float]:
    if len(input_range) != 2 or not float(input_range[0]) < float(input_range[1]):
        raise ValueError(f"input_range: expected (low, high) with low < high, got {input_range!r}")
    return float(input_range[0]), float(input_range[1])


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{what}: expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------- randomization


def default_randomization(input_size: int | Sequence[int]) -> dict[str, int]:
    """Xie et al.'s jitter (299 -> a size in [299, 331), padded to 331: up to 10 %) at side D,
    without the final resize a fixed-size classifier would need: shrink to a size in
    [round(D * 299 / 331), D] (at least D - 1), then pad back to D at a random offset.

    Growing to 331 and resizing back to D would blur every image on top of the jitter: on the
    8x8 digits that alone halves clean accuracy (0.983 -> 0.49 for 8 -> [8, 9] -> 10 -> 8,
    against 0.77 for this default).
    """
    sizes = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(sizes) != 2:
        raise ValueError(f"input_size: expected D or (H, W), got {input_size!r}")
    side = max(_positive_int("input_size", s) for s in sizes)
    low = max(1, min(side - 1, round(side * 299 / 331)))
    return {"min_size": low, "max_size": side, "pad_to": side}


def _nearest_index(out_size: torch.Tensor, in_size: int, length: int) -> torch.Tensor:
    """Source index of each output position for nearest resizing in_size -> out_size.

    Per sample (``out_size`` has one entry per sample): the same rule as
    ``F.interpolate(mode="nearest")`` (floor(i * in/out) in float32, clamped), so one
    gather replaces one interpolate call per sample. Shape (N, length); positions at or
    beyond ``out_size`` are clamped and masked out by the caller.
    """
    i = torch.arange(length, dtype=torch.float32).unsqueeze(0)
    scale = torch.tensor(float(in_size), dtype=torch.float32) / out_size.to(torch.float32)
    idx = torch.floor(i * scale.unsqueeze(1)).to(torch.int64)
    same = (out_size == in_size).unsqueeze(1)
    idx = torch.where(same, i.to(torch.int64).expand_as(idx), idx)
    return idx.clamp(0, in_size - 1)


class RandomizationLayer(nn.Module):
    """Xie et al. (2018) randomization at inference time, as Lim uses it.

    Per sample: resize the image to a random square s x s, s uniform in
    [min_size, max_size] (nearest neighbour, as Xie), then place it at a random offset on
    a ``pad_to`` x ``pad_to`` canvas filled with ``fill`` (the low end of the input
    range). One deviation from Xie, whose Inception accepts 331 x 331: a fixed-size
    classifier cannot, so when ``pad_to`` differs from the input size the canvas is
    resized back to the input size (bilinear, align_corners=False).

    The draws come from the module's own ``torch.Generator``; :meth:`reseed` resets it
    (same seed -> bit-identical outputs). Differentiable w.r.t. the input: resize and
    placement are one gather (its backward a scatter-add), then a bilinear interpolate.
    Applied in train and eval mode alike: it has no parameters.
    """

    randomized = True

    def __init__(
        self,
        *,
        input_size: tuple[int, int],
        min_size: int,
        max_size: int,
        pad_to: int,
        fill: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(input_size) != 2:
            raise ValueError(f"input_size: expected (H, W), got {input_size!r}")
        h = _positive_int("input_size[0]", input_size[0])
        w = _positive_int("input_size[1]", input_size[1])
        lo = _positive_int("min_size", min_size)
        hi = _positive_int("max_size", max_size)
        pad = _positive_int("pad_to", pad_to)
        if not lo <= hi <= pad:
            raise ValueError(
                f"expected 1 <= min_size <= max_size <= pad_to, got min_size={lo}, "
                f"max_size={hi}, pad_to={pad}"
            )
        self.input_size = (h, w)
        self.min_size, self.max_size, self.pad_to = lo, hi, pad
        self.fill = float(fill)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, min_size={self.min_size}, "
            f"max_size={self.max_size}, pad_to={self.pad_to}, fill={self.fill:g}, seed={self.seed}"
        )

    def reseed(self, seed: int) -> None:
        """Restart the module's random stream: the next outputs repeat those after ``seed``."""
        self.seed = int(seed)
        self._gen.manual_seed(self.seed)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next ``n`` draws: sizes, top offsets and left offsets (int64, CPU).

        Consumes the stream exactly as :meth:`forward` does (forward calls it), so
        tests and reports can reconstruct what a forward pass did.
        """
        sizes = torch.randint(self.min_size, self.max_size + 1, (n,), generator=self._gen)
        u = torch.rand(n, 2, generator=self._gen, dtype=torch.float64)
        room = (self.pad_to - sizes + 1).to(torch.float64).unsqueeze(1)
        offsets = torch.minimum(torch.floor(u * room), room - 1).to(torch.int64)
        return sizes, offsets[:, 0], offsets[:, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "RandomizationLayer")
        n, c, h, w = x.shape
        if (h, w) != self.input_size:
            raise ValueError(
                f"RandomizationLayer: expected inputs of size {self.input_size}, got {(h, w)}"
            )
        sizes, tops, lefts = self.draw(n)
        pad = self.pad_to
        # Canvas position -> position in the s x s resized image -> source pixel.
        k = torch.arange(pad).unsqueeze(0)
        rows, cols = k - tops.unsqueeze(1), k - lefts.unsqueeze(1)
        row_in = (rows >= 0) & (rows < sizes.unsqueeze(1))
        col_in = (cols >= 0) & (cols < sizes.unsqueeze(1))
        src_r = _nearest_index(sizes, h, pad).gather(1, rows.clamp(0, pad - 1))
        src_c = _nearest_index(sizes, w, pad).gather(1, cols.clamp(0, pad - 1))
        flat = (src_r.unsqueeze(2) * w + src_c.unsqueeze(1)).to(x.device)  # (N, pad, pad)
        index = flat.view(n, 1, pad * pad).expand(n, c, pad * pad)
        canvas = x.reshape(n, c, h * w).gather(2, index).view(n, c, pad, pad)
        mask = (row_in.unsqueeze(2) & col_in.unsqueeze(1)).to(x.device).unsqueeze(1)
        canvas = torch.where(mask, canvas, canvas.new_tensor(self.fill))
        if (pad, pad) != (h, w):
            canvas = F.interpolate(canvas, size=(h, w), mode="bilinear", align_corners=False)
        return canvas


# --------------------------------------------------------------------------- autoencoder


class ConvAutoencoder(nn.Module):
    """Lim's denoising autoencoder: stride-2 encoder, nearest upsampling, sigmoid output.

    The latent is the output of the second BatchNorm; use it in eval mode (running
    statistics) — :class:`ModelWrapper` puts its ``pre`` module in eval mode.
    """

    def __init__(
        self, *, channels: int, width: int, input_range: Sequence[float] = (0.0, 1.0)
    ) -> None:
        super().__init__()
        self.channels = _positive_int("channels", channels)
        self.width = _positive_int("width", width)
        self.input_range = _range(input_range)
        wd = self.width
        self.encoder = nn.Sequential(
            nn.Conv2d(self.channels, wd, 3, stride=1, padding=1),
            nn.BatchNorm2d(wd),
            nn.ReLU(),
            nn.Conv2d(wd, wd, 3, stride=2, padding=1),
            nn.BatchNorm2d(wd),
        )
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wd, wd, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(wd, self.channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "ConvAutoencoder")
        if x.shape[1] != self.channels:
            raise ValueError(
                f"ConvAutoencoder: expected {self.channels} channels, got {x.shape[1]}"
            )
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(
                "ConvAutoencoder: expected even height and width (stride 2, then upsampling x2), "
                f"got {tuple(x.shape[2:])}"
            )
        lo, hi = self.input_range
        return lo + (hi - lo) * torch.sigmoid(self.decoder(self.encoder(x)))


def _noisy(
    x: torch.Tensor, std: torch.Tensor, gen: torch.Generator, lo: float, hi: float
) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen) * std.view(-1, 1, 1, 1)
    return (x + noise).clamp(lo, hi)


def train_autoencoder(
    x_train: np.ndarray,
    *,
    width: int,
    noise: float,
    epochs: int,
    seed: int,
    input_range: Sequence[float] = (0.0, 1.0),
) -> ConvAutoencoder:
    """Train to reconstruct the clean image from a noise-augmented one (MSE, Adam).

    Noise std is drawn per sample uniformly in [0, 2 * noise] (in units of the input
    range's width), so the denoiser sees clean and noisy inputs alike. Seeded
    (weights via ``torch.manual_seed``, batches and noise via a private generator):
    deterministic on CPU. Returned in eval mode.
    """
    lo, hi = _range(input_range)
    if not isinstance(x_train, np.ndarray) or x_train.ndim != 4 or len(x_train) == 0:
        raise ValueError(
            "x_train: expected a non-empty array of images (N, C, H, W), got "
            f"{getattr(x_train, 'shape', type(x_train).__name__)}"
        )
    if x_train.shape[2] % 2 or x_train.shape[3] % 2:
        raise ValueError(
            "x_train: expected even height and width (stride 2, then upsampling x2), "
            f"got {x_train.shape[2:]}"
        )
    if not noise >= 0:
        raise ValueError(f"noise: expected a standard deviation >= 0, got {noise!r}")
    epochs = _positive_int("epochs", epochs)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ae = ConvAutoencoder(channels=x_train.shape[1], width=width, input_range=(lo, hi))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    max_std = 2.0 * float(noise) * (hi - lo)
    # One thread: the batches are tiny (threads only add contention, 5-10x slower on a
    # busy 2-core machine), and the weights do not depend on the machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ae.train()
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(xt), 64):
                clean = xt[order[start : start + 64]]
                std = torch.rand(len(clean), generator=gen) * max_std
                opt.zero_grad()
                loss = F.mse_loss(ae(_noisy(clean, std, gen, lo, hi)), clean)
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    ae.eval()
    return ae


def _digits_ae_path(width: int, noise: float, epochs: int) -> Path:
    return cache_dir() / f"digits-ae-w{width}-n{noise:g}-e{epochs}-v{AUTOENCODER_VERSION}.pt"


def digits_autoencoder_name(width: int, noise: float, epochs: int) -> str:
    """The autoencoder's name among the shipped weights (:mod:`unified_adv.sources.builtin`)."""
    return f"digits-ae-w{width}-n{noise:g}-e{epochs}"


def train_digits_autoencoder(
    width: int = 16, noise: float = 0.1, epochs: int = 30
) -> tuple[ConvAutoencoder, dict[str, float]]:
    """Train Lim's autoencoder on the digits training split (seed 0); with its held-out
    reconstruction MSE for clean inputs and for inputs with Gaussian noise of std ``noise``
    (next to that noise's own MSE, the do-nothing baseline)."""
    from unified_adv.sources.data import digits_split

    x_train, _, x_test, _, _, _ = digits_split()
    ae = train_autoencoder(x_train, width=width, noise=noise, epochs=epochs, seed=0)
    xh = torch.from_numpy(x_test)
    noisy = _noisy(xh, torch.full((len(xh),), float(noise)), torch.Generator().manual_seed(1), 0, 1)
    with torch.no_grad():
        metrics = {
            "held_out_mse_clean": float(F.mse_loss(ae(xh), xh)),
            "held_out_mse_noisy": float(F.mse_loss(ae(noisy), xh)),
            "held_out_mse_noise_only": float(F.mse_loss(noisy, xh)),
        }
    return ae, metrics


def _cached_digits_autoencoder(
    width: int, noise: float, epochs: int
) -> tuple[dict[str, Any], str, bool]:
    """Settings the package ships no weights for: trained once, cached under cache_dir()."""
    path = _digits_ae_path(width, noise, epochs)
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True), str(path), False
    print(f"Training the digits autoencoder (once; cached in {path}) ...", file=sys.stderr)
    ae, metrics = train_digits_autoencoder(width, noise, epochs)
    blob = {"state_dict": ae.state_dict(), **metrics}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return blob, str(path), True


def builtin_digits_autoencoder(
    *, width: int = 16, noise: float = 0.1, epochs: int = 30
) -> tuple[ConvAutoencoder, dict[str, Any]]:
    """Lim's autoencoder for the builtin digits, trained on the training split.

    The default settings ship as weights in the package (SHA-256 checked on load); other
    settings are trained once and cached. Details: where the weights came from
    (``weights`` + ``sha256``, or ``cache``), whether this call trained it, the settings,
    and the held-out reconstruction MSEs of :func:`train_digits_autoencoder`.
    """
    from unified_adv.sources import builtin

    width = _positive_int("width", width)
    epochs = _positive_int("epochs", epochs)
    name = digits_autoencoder_name(width, noise, epochs)
    source: dict[str, Any]
    if builtin.shipped(name):
        state, entry = builtin.load_state(name)
        blob = {"state_dict": state, **entry["scores"]}
        source, trained = {"weights": entry["path"], "sha256": entry["sha256"]}, False
    else:
        blob, path, trained = _cached_digits_autoencoder(width, noise, epochs)
        source = {"cache": path}
    ae = ConvAutoencoder(channels=1, width=width)
    ae.load_state_dict(blob["state_dict"])
    ae.eval()
    details: dict[str, Any] = {
        **source,
        "trained": trained,
        "architecture": "ConvAutoencoder",
        "width": width,
        "noise": float(noise),
        "epochs": epochs,
        "seed": 0,
        "trained_on": "digits training split",
    }
    for key in ("held_out_mse_clean", "held_out_mse_noisy", "held_out_mse_noise_only"):
        details[key] = float(blob[key])
    return ae, details


# --------------------------------------------------------------------------- ART preprocessors


class _ArtFunction(torch.autograd.Function):
    """Forward: the ART preprocessor on numpy; backward: its ``estimate_gradient``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: ArtPreprocessorLayer) -> torch.Tensor:
        x_np = x.detach().cpu().numpy()
        ctx.layer, ctx.x_np = layer, x_np
        out = layer.apply_numpy(x_np)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        g_np = grad.detach().cpu().numpy()
        g = np.asarray(ctx.layer.preproc.estimate_gradient(ctx.x_np, g_np), dtype=np.float32)
        return torch.from_numpy(g).to(device=grad.device, dtype=grad.dtype), None


class ArtPreprocessorLayer(nn.Module):
    """An ART numpy preprocessor as a torch module (forward ART's, backward ART's BPDA).

    ``art_call`` records the class path and every keyword passed to ART (provenance).
    A randomised preprocessor (ART's Gaussian noise draws from numpy's global RNG) is
    run with numpy's global state seeded from (seed, call counter) and restored
    afterwards: reproducible under :meth:`reseed`, global stream left untouched.
    """

    def __init__(
        self,
        preproc: Any,
        *,
        art_call: dict[str, Any],
        channels: int,
        randomized: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.preproc = preproc
        self.art_call = art_call
        self.channels = _positive_int("channels", channels)
        self.randomized = bool(randomized)
        self.seed = int(seed)
        self._calls = 0

    def extra_repr(self) -> str:
        return f"{self.art_call['class']}({self.art_call['kwargs']})"

    def reseed(self, seed: int) -> None:
        """Restart the draws: the next calls repeat those after ``reseed(seed)``."""
        self.seed = int(seed)
        self._calls = 0

    def apply_numpy(self, x_np: np.ndarray) -> np.ndarray:
        """Call ART on a numpy batch (seeded for a randomised preprocessor); float32 out."""
        if not self.randomized:
            out, _ = self.preproc(x_np)
        else:
            state = np.random.get_state()
            np.random.seed(np.random.SeedSequence([self.seed, self._calls]).generate_state(4))
            self._calls += 1
            try:
                out, _ = self.preproc(x_np)
            finally:
                np.random.set_state(state)
        # FeatureSqueezing returns float64 under numpy 2's promotion rules.
        return np.ascontiguousarray(out, dtype=x_np.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, type(self).__name__)
        if x.shape[1] != self.channels:
            raise ValueError(
                f"{self.art_call['class']}: expected {self.channels} channels, got {x.shape[1]}"
            )
        out: torch.Tensor = _ArtFunction.apply(x, self)
        return out


ART_PREPROCESSORS = (
    "spatial_smoothing",
    "jpeg_compression",
    "feature_squeezing",
    "gaussian_augmentation",
)
_ART_PARAMS: dict[str, dict[str, Any]] = {
    "spatial_smoothing": {"window_size": 3},
    "jpeg_compression": {"quality": 50},
    "feature_squeezing": {"bit_depth": 4},
    "gaussian_augmentation": {"sigma": 0.1},
}


def art_preprocessor(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    input_range: Sequence[float],
    channels: int,
    seed: int = 0,
) -> ArtPreprocessorLayer:
    """Build one of ART's preprocessors with every keyword set explicitly (none left to ART).

    Channels first, clipped to ``input_range``, applied at prediction only.
    """
    from art.defences import preprocessor as pp

    if name not in _ART_PARAMS:
        raise ValueError(
            f"unknown ART preprocessor {name!r}; expected one of {', '.join(ART_PREPROCESSORS)}"
        )
    given = dict(params or {})
    unknown = sorted(set(given) - set(_ART_PARAMS[name]))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(_ART_PARAMS[name])}"
        )
    p = {**_ART_PARAMS[name], **given}
    lo, hi = _range(input_range)
    clip = (lo, hi)
    cls: Any
    if name == "spatial_smoothing":
        cls = pp.SpatialSmoothing
        kwargs: dict[str, Any] = {
            "window_size": _positive_int("window_size", p["window_size"]),
            "channels_first": True,
            "clip_values": clip,
            "apply_fit": False,
            "apply_predict": True,
        }
    elif name == "jpeg_compression":
        # ART scales by 255 only when the top is 1.0 and refuses a non-zero bottom.
        if lo != 0.0 or hi not in (1.0, 255.0):
            raise ValueError(
                f"jpeg_compression: expected input_range (0, 1) or (0, 255), got {(lo, hi)}"
            )
        quality = _positive_int("quality", p["quality"])
        if quality > 100:
            raise ValueError(f"quality: expected an integer in 1..100, got {quality}")
        cls = pp.JpegCompression
        kwargs = {
            "clip_values": clip,
            "quality": quality,
            "channels_first": True,
            "apply_fit": False,
            "apply_predict": True,
            "verbose": False,
        }
    elif name == "feature_squeezing":
        bits = _positive_int("bit_depth", p["bit_depth"])
        if bits > 64:
            raise ValueError(f"bit_depth: expected an integer in 1..64, got {bits}")
        cls = pp.FeatureSqueezing
        kwargs = {"clip_values": clip, "bit_depth": bits, "apply_fit": False, "apply_predict": True}
    else:
        sigma = p["sigma"]
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma: expected a positive number, got {sigma!r}")
        cls = pp.GaussianAugmentation
        kwargs = {
            "sigma": float(sigma),
            "augmentation": False,
            "ratio": 1.0,
            "clip_values": clip,
            "apply_fit": False,
            "apply_predict": True,
        }
    call = {"class": f"art.defences.preprocessor.{cls.__name__}", "kwargs": dict(kwargs)}
    return ArtPreprocessorLayer(
        cls(**kwargs),
        art_call=call,
        channels=channels,
        randomized=name == "gaussian_augmentation",
        seed=seed,
    )
