"""Input-transformation defences, placed in :class:`ModelWrapper`'s ``pre`` slot.

Lim ("How to create adversarial examples and mitigate adversarial effects") puts two
mitigations in front of an unchanged CNN: Xie et al.'s (ICLR 2018) randomization layer
(random resize, then random zero padding) and a convolutional denoising autoencoder.
Both are torch modules here, so every backend attacks the defended function and
gradients flow through them. ART's numpy preprocessors (spatial smoothing, JPEG,
feature squeezing, Gaussian noise) live with the adapters
(:mod:`unified_adv.adapters.art_defences`): the core never imports ART. The builtin
digits autoencoder (weights, training settings) is :mod:`unified_adv.sources.builtin.autoencoder`.

Randomised defences draw from their own seeded generators (never torch's or numpy's
global stream), so a run is reproducible under :func:`reseed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- helpers


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_range(input_range: Sequence[float]) -> tuple[float, float]:
    if len(input_range) != 2 or not float(input_range[0]) < float(input_range[1]):
        raise ValueError(f"input_range: expected (low, high) with low < high, got {input_range!r}")
    return float(input_range[0]), float(input_range[1])


def check_images(x: torch.Tensor, what: str) -> None:
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
    side = max(positive_int("input_size", s) for s in sizes)
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
        h = positive_int("input_size[0]", input_size[0])
        w = positive_int("input_size[1]", input_size[1])
        lo = positive_int("min_size", min_size)
        hi = positive_int("max_size", max_size)
        pad = positive_int("pad_to", pad_to)
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
        check_images(x, "RandomizationLayer")
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
        self.channels = positive_int("channels", channels)
        self.width = positive_int("width", width)
        self.input_range = check_range(input_range)
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
        check_images(x, "ConvAutoencoder")
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


def add_noise(
    x: torch.Tensor, std: torch.Tensor, gen: torch.Generator, lo: float, hi: float
) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen) * std.view(-1, 1, 1, 1)
    return (x + noise).clamp(lo, hi)


def _check_training_images(x_train: np.ndarray) -> None:
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


def _fit(
    ae: ConvAutoencoder, xt: torch.Tensor, epochs: int, max_std: float, gen: torch.Generator
) -> None:
    """Adam (lr 3e-3) on the MSE between the clean batch and its reconstruction from a noisy
    copy (per-sample std uniform in [0, max_std]), batches of 64 drawn from ``gen``."""
    lo, hi = ae.input_range
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    ae.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            clean = xt[order[start : start + 64]]
            std = torch.rand(len(clean), generator=gen) * max_std
            opt.zero_grad()
            loss = F.mse_loss(ae(add_noise(clean, std, gen, lo, hi)), clean)
            loss.backward()
            opt.step()


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
    lo, hi = check_range(input_range)
    _check_training_images(x_train)
    if not noise >= 0:
        raise ValueError(f"noise: expected a standard deviation >= 0, got {noise!r}")
    epochs = positive_int("epochs", epochs)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ae = ConvAutoencoder(channels=x_train.shape[1], width=width, input_range=(lo, hi))
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    max_std = 2.0 * float(noise) * (hi - lo)
    # One thread: the batches are tiny (threads only add contention, 5-10x slower on a
    # busy 2-core machine), and the weights do not depend on the machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit(ae, xt, epochs, max_std, gen)
    finally:
        torch.set_num_threads(threads)
    ae.eval()
    return ae
