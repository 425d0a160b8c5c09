"""The builtin digits: scikit-learn's 8x8 digits (a fixed train/held-out split) and the
nets trained on it (``model: {builtin: digits-cnn | digits-mlp | digits-cnn-wide}``), with
their training; the weights ship in the package (:mod:`unified_adv.sources.builtin`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.errors import did_you_mean

# The checkpoint epochs a scenario may name: one place, the schema.
from unified_adv.scenario.schema import DIGITS_CHECKPOINTS
from unified_adv.sources.builtin import load_state, shipped

DIGITS_TEST_SHARE = 0.3
DIGITS_SPLIT_SEED = 0


@cache
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits, scaled to [0, 1]: a fixed stratified 70/30 split.

    Returns x_train, y_train, x_test, y_test, train_index, test_index; the index
    arrays are positions in ``load_digits()``. The builtin model trains on the
    first part only; ``data: {builtin: digits}`` serves the second.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    i_train, i_test = train_test_split(
        idx, test_size=DIGITS_TEST_SHARE, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    i_train, i_test = np.sort(i_train), np.sort(i_test)
    return x[i_train], y[i_train], x[i_test], y[i_test], i_train, i_test


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits: two 3x3 conv layers, one pooling, two dense layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsMLP(nn.Module):
    """A dense net for 8x8 digits (64-128-64-10): no convolutions, so transfer to and from
    the CNNs crosses an inductive-bias gap."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * 8, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


class WideDigitsCNN(nn.Module):
    """A wider CNN for 8x8 digits (32 and 64 channels, pooling after each conv, dense 128):
    same family as :class:`DigitsCNN`, different weights and receptive fields."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitsArch:
    """How one builtin digits net is built and trained (``make weights`` retrains it).

    ``threads``: torch CPU threads while training. One thread makes retraining repeat the
    same weights on a machine of the same CPU kind (reductions split differently per thread
    count) and is fastest for these tiny batches, far more so on a busy machine.
    """

    name: str
    make: Callable[[], nn.Module]
    lr: float = 2e-3
    epochs: int = 40
    threads: int = 1


#: Every builtin digits net, by its scenario name (``model: {builtin: NAME}``).
DIGITS_ARCHS: dict[str, DigitsArch] = {
    a.name: a
    for a in (
        DigitsArch("digits-cnn", DigitsCNN),
        DigitsArch("digits-mlp", DigitsMLP),
        DigitsArch("digits-cnn-wide", WideDigitsCNN),
    )
}


def _digits_arch(name: str) -> DigitsArch:
    arch = DIGITS_ARCHS.get(name)
    if arch is None:
            raise ValueError(did_you_mean("builtin digits model", name, DIGITS_ARCHS))
    return arch


Checkpoints = dict[int, tuple[dict[str, torch.Tensor], float]]


def train_digits_net(
    arch: str = "digits-cnn",
    seed: int = 0,
    epochs: int | None = None,
    checkpoints: tuple[int, ...] = DIGITS_CHECKPOINTS,
) -> tuple[nn.Module, float, Checkpoints]:
    """Train one builtin digits net on the digits training split (Adam, batches of 64).

    ``epochs``: the architecture's own number when None. Returns the net, its held-out
    accuracy, and {epoch: (state dict, held-out accuracy)} for the checkpoint epochs: the
    training-state monitor's demo (Ding & Möller).
    """
    spec = _digits_arch(arch)
    if epochs is None:
        epochs = spec.epochs
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return _train(spec, seed, epochs, checkpoints)
    finally:
        torch.set_num_threads(threads)


def _train(
    spec: DigitsArch, seed: int, epochs: int, checkpoints: tuple[int, ...]
) -> tuple[nn.Module, float, Checkpoints]:
    x_train, y_train, x_test, y_test, _, _ = digits_split()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = spec.make()
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_held = torch.from_numpy(x_test)

    def held_out_accuracy() -> float:
        with torch.no_grad():
            return float((net(x_held).argmax(1).numpy() == y_test).mean())

    saved: Checkpoints = {}
    net.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if epoch in checkpoints:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            saved[epoch] = (state, held_out_accuracy())
    net.eval()
    return net, held_out_accuracy(), saved


def digits_weights_name(name: str, epoch: int | None = None) -> str:
    """A digits net's name among the shipped weights: ``digits-cnn``, ``digits-cnn-epoch5``.
    The last checkpoint is the net itself."""
    spec = _digits_arch(name)
    return spec.name if epoch in (None, spec.epochs) else f"{spec.name}-epoch{epoch}"


def builtin_digits(name: str, epoch: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The builtin digits net ``name`` (or its state after ``epoch`` epochs of training),
    from the weights shipped in the package (SHA-256 checked on load)."""
    spec = _digits_arch(name)
    key = digits_weights_name(spec.name, epoch)
    if not shipped(key):
        have = [e for e in DIGITS_CHECKPOINTS if shipped(digits_weights_name(name, e))]
        raise KeyError(f"no {spec.name} checkpoint at epoch {epoch}; have {have}")
    state, entry = load_state(key)
    net = spec.make()
    net.load_state_dict(state)
    net.eval()
    details = {
        "held_out_accuracy": float(entry["held_out_accuracy"]),
        "weights": entry["path"],
        "sha256": entry["sha256"],
        "architecture": type(net).__name__,
    }
    if epoch is not None:
        details["epoch"] = epoch
    return net, details


def builtin_digits_cnn(epoch: int | None = None) -> tuple[DigitsCNN, dict[str, Any]]:
    """The embedded default model (or its state after ``epoch`` epochs of training)."""
    net, details = builtin_digits("digits-cnn", epoch)
    assert isinstance(net, DigitsCNN)
    return net, details
