"""Lim's digits autoencoder: the builtin denoiser in front of the digits nets.

The default settings (what scenarios name) ship as weights (:mod:`unified_adv.sources.builtin`);
other settings are trained once on the digits training split and cached under
:func:`unified_adv.files.cache_dir`. The layer itself is
:class:`unified_adv.defences.layers.ConvAutoencoder`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from unified_adv.defences.layers import (
    ConvAutoencoder,
    add_noise,
    positive_int,
    train_autoencoder,
)
from unified_adv.files import atomic_write, cache_dir
from unified_adv.sources.builtin import load_state, shipped
from unified_adv.sources.builtin.digits import digits_split

AUTOENCODER_VERSION = 1


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
    x_train, _, x_test, _, _, _ = digits_split()
    ae = train_autoencoder(x_train, width=width, noise=noise, epochs=epochs, seed=0)
    xh = torch.from_numpy(x_test)
    noisy = add_noise(xh, torch.full((len(xh),), float(noise)), torch.Generator().manual_seed(1), 0, 1)
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
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
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
    width = positive_int("width", width)
    epochs = positive_int("epochs", epochs)
    name = digits_autoencoder_name(width, noise, epochs)
    source: dict[str, Any]
    if shipped(name):
        state, entry = load_state(name)
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
