"""Kügler et al.'s CNN for the synthetic line images (:mod:`unified_adv.sources.lines`):
its architecture, its training (on every line image, until all are right) and the builtin
model (``model: {builtin: line-cnn}``), shipped as weights or trained once and cached."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.files import atomic_write, cache_dir
from unified_adv.sources.builtin import load_state, shipped
from unified_adv.sources.lines import LineSet, generate_lines

LINE_CNN_VERSION = 1


class LineCNN(nn.Sequential):
    """The paper's net: two (3×3 conv, 32 channels, ReLU, 2×2 max-pool) blocks, dropout
    0.25, a 128-unit dense layer and 2 outputs (pre-sigmoid scores; predict = argmax).

    Convolutions are unpadded (Keras' default "valid"), which the paper's Keras-era
    description implies; D = 16 gives 32·2·2 features, D = 64 gives 32·14·14.
    """

    def __init__(self, size: int) -> None:
        s1 = (size - 2) // 2
        s2 = (s1 - 2) // 2
        if s2 < 1:
            raise ValueError(f"LineCNN needs images of at least 10x10, got {size}")
        super().__init__(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(32 * s2 * s2, 128),
            nn.ReLU(),
            nn.Linear(128, 2),
        )
        self.size = size


def training_accuracy(net: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy in eval mode (dropout off) on the given images."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                net(torch.from_numpy(images[s : s + 4096])).argmax(1)
                for s in range(0, len(images), 4096)
            ]
        )
    net.train(was_training)
    return float((pred.numpy() == labels).mean())


def train_line_cnn(
    lineset: LineSet,
    seed: int,
    max_epochs: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train on every image until the training accuracy (eval mode) is 1.0, as the paper
    did: Adam (0.9, 0.999), binary cross-entropy on the 2 sigmoid outputs vs one-hot.

    Measured on 2 cores (one thread): D = 16 at 2° 12 epochs in 1.5 s, at 0.5° 18 epochs
    in 0.8 s; D = 32 at 2° 6 epochs in 3.6 s, at 0.5° 6 epochs in 11 s.

    Seeded, run under a forked torch RNG (the caller's RNG state is untouched) and on one
    thread: the weights are then bitwise the same whatever the core count, and batches of
    64 small images gain nothing from more threads (on a busy 2-core machine two threads
    were 10x slower).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(lineset, seed, max_epochs, batch_size, lr)
    finally:
        torch.set_num_threads(threads)


def _train(
    lineset: LineSet, seed: int, max_epochs: int, batch_size: int, lr: float
) -> tuple[LineCNN, dict[str, Any]]:
    t0 = time.perf_counter()
    x = torch.from_numpy(lineset.images)
    y = torch.from_numpy(lineset.labels)
    onehot = nn.functional.one_hot(y, 2).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LineCNN(lineset.size)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
        loss_fn = nn.BCEWithLogitsLoss()
        acc = training_accuracy(net, lineset.images, lineset.labels)
        epochs, loss_value = 0, float("nan")
        while acc < 1.0 and epochs < max_epochs:
            net.train()
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad()
                loss = loss_fn(net(x[idx]), onehot[idx])
                loss.backward()
                opt.step()
                loss_value = float(loss.detach())
            epochs += 1
            acc = training_accuracy(net, lineset.images, lineset.labels)
    net.eval()
    details = {
        "epochs": epochs,
        "training_accuracy": acc,
        "last_batch_loss": loss_value,
        "seconds": time.perf_counter() - t0,
        "images": len(lineset),
        "size": lineset.size,
        "angle_step": lineset.angle_step,
        "seed": seed,
    }
    return net, details


def line_cnn_name(size: int, angle_step: float, seed: int) -> str:
    """The line CNN's name among the shipped weights (:mod:`unified_adv.sources.builtin`)."""
    return f"line-cnn-d{size}-step{angle_step:g}-seed{seed}"


def builtin_line_cnn(
    size: int, angle_step: float, seed: int = 0
) -> tuple[nn.Module, dict[str, Any]]:
    """A LineCNN trained on every line image of (size, angle_step).

    The one ``scenarios/kugler.yaml`` names as its model ships as weights in the package
    (SHA-256 checked on load); the others (the one-pixel study trains 5 seeds per
    configuration, as the paper) are trained once and cached atomically under
    :func:`unified_adv.files.cache_dir`."""
    net = LineCNN(size)
    name = line_cnn_name(size, angle_step, seed)
    if shipped(name):
        state, entry = load_state(name)
        net.load_state_dict(state)
        details = {**entry["details"], "weights": entry["path"], "sha256": entry["sha256"]}
        net.eval()
        return net, details
    path = cache_dir() / f"line-cnn-v{LINE_CNN_VERSION}-d{size}-step{angle_step:g}-seed{seed}.pt"
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["state_dict"])
        details = dict(blob["details"])
    else:
        print(f"Training the line CNN (once; cached in {path}) ...", file=sys.stderr)
        trained, details = train_line_cnn(generate_lines(size, angle_step), seed)
        net.load_state_dict(trained.state_dict())
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"state_dict": trained.state_dict(), "details": details}
        atomic_write(path, lambda tmp: torch.save(blob, tmp))
    net.eval()
    details["cache"] = str(path)
    return net, details
