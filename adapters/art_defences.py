"""ART's numpy preprocessors as defence layers (spatial smoothing, JPEG, feature squeezing,
Gaussian noise), offered instead of re-written: forward is ART's own code, backward ART's
own BPDA gradient (``estimate_gradient``).

Lives with the adapters so the core (:mod:`unified_adv.defences.layers`) never imports
ART; ART itself is imported only when a preprocessor is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.defences.layers import check_images, check_range, positive_int


class ArtFunction(torch.autograd.Function):
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
        self.channels = positive_int("channels", channels)
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
        check_images(x, type(self).__name__)
        if x.shape[1] != self.channels:
            raise ValueError(
                f"{self.art_call['class']}: expected {self.channels} channels, got {x.shape[1]}"
            )
        out: torch.Tensor = ArtFunction.apply(x, self)
        return out


ART_PREPROCESSORS = (
    "spatial_smoothing",
    "jpeg_compression",
    "feature_squeezing",
    "gaussian_augmentation",
)
#: Each preprocessor's parameters and their defaults (every one passed to ART explicitly).
ART_PARAMS: dict[str, dict[str, Any]] = {
    "spatial_smoothing": {"window_size": 3},
    "jpeg_compression": {"quality": 50},
    "feature_squeezing": {"bit_depth": 4},
    "gaussian_augmentation": {"sigma": 0.1},
}

#: Every call applies at prediction only, never while fitting.
_PREDICT_ONLY = {"apply_fit": False, "apply_predict": True}


def _spatial_smoothing(p: dict[str, Any], lo: float, hi: float) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "window_size": positive_int("window_size", p["window_size"]),
        "channels_first": True,
        "clip_values": (lo, hi),
        **_PREDICT_ONLY,
    }
    return "SpatialSmoothing", kwargs


def _jpeg_compression(p: dict[str, Any], lo: float, hi: float) -> tuple[str, dict[str, Any]]:
    # ART scales by 255 only when the top is 1.0 and refuses a non-zero bottom.
    if lo != 0.0 or hi not in (1.0, 255.0):
        raise ValueError(
            f"jpeg_compression: expected input_range (0, 1) or (0, 255), got {(lo, hi)}"
        )
    quality = positive_int("quality", p["quality"])
    if quality > 100:
        raise ValueError(f"quality: expected an integer in 1..100, got {quality}")
    kwargs = {
        "clip_values": (lo, hi),
        "quality": quality,
        "channels_first": True,
        **_PREDICT_ONLY,
        "verbose": False,
    }
    return "JpegCompression", kwargs


def _feature_squeezing(p: dict[str, Any], lo: float, hi: float) -> tuple[str, dict[str, Any]]:
    bits = positive_int("bit_depth", p["bit_depth"])
    if bits > 64:
        raise ValueError(f"bit_depth: expected an integer in 1..64, got {bits}")
    return "FeatureSqueezing", {"clip_values": (lo, hi), "bit_depth": bits, **_PREDICT_ONLY}


def _gaussian_augmentation(p: dict[str, Any], lo: float, hi: float) -> tuple[str, dict[str, Any]]:
    sigma = p["sigma"]
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma: expected a positive number, got {sigma!r}")
    kwargs = {
        "sigma": float(sigma),
        "augmentation": False,
        "ratio": 1.0,
        "clip_values": (lo, hi),
        **_PREDICT_ONLY,
    }
    return "GaussianAugmentation", kwargs


#: name -> (checked parameters, input range) -> (ART class name, every keyword it gets).
_KWARGS: dict[str, Callable[[dict[str, Any], float, float], tuple[str, dict[str, Any]]]] = {
    "spatial_smoothing": _spatial_smoothing,
    "jpeg_compression": _jpeg_compression,
    "feature_squeezing": _feature_squeezing,
    "gaussian_augmentation": _gaussian_augmentation,
}


def _parameters(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults of ``name`` updated with ``params``; unknown names refused."""
    if name not in ART_PARAMS:
        raise ValueError(
            f"unknown ART preprocessor {name!r}; expected one of {', '.join(ART_PREPROCESSORS)}"
        )
    given = dict(params or {})
    unknown = sorted(set(given) - set(ART_PARAMS[name]))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(ART_PARAMS[name])}"
        )
    return {**ART_PARAMS[name], **given}


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

    p = _parameters(name, params)
    lo, hi = check_range(input_range)
    cls_name, kwargs = _KWARGS[name](p, lo, hi)
    cls = getattr(pp, cls_name)
    call = {"class": f"art.defences.preprocessor.{cls.__name__}", "kwargs": dict(kwargs)}
    return ArtPreprocessorLayer(
        cls(**kwargs),
        art_call=call,
        channels=channels,
        randomized=name == "gaussian_augmentation",
        seed=seed,
    )
