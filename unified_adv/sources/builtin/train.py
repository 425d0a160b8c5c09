"""Regenerate the shipped builtin weights: ``python -m unified_adv.sources.builtin.train`` (``make weights``).

Retrains every builtin model with its recorded settings (seeded, one torch thread), writes
``weights/NAME.safetensors`` and rewrites ``weights/manifest.json`` with each file's SHA-256,
its held-out scores and how it was made. On a machine of the same CPU kind the files come
out bit for bit the same; on another CPU the float reductions may round differently, so the
weights differ in their last bits and the held-out accuracy by a few images at most
(``tests/test_builtin.py`` checks that bound on the digits MLP).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from unified_adv.sources.builtin import MANIFEST, WEIGHTS_DIR, sha256
from unified_adv.sources.builtin.autoencoder import (
    digits_autoencoder_name,
    train_digits_autoencoder,
)
from unified_adv.sources.builtin.digits import (
    DIGITS_ARCHS,
    DIGITS_CHECKPOINTS,
    digits_weights_name,
    train_digits_net,
)
from unified_adv.sources.builtin.line_cnn import line_cnn_name, train_line_cnn
from unified_adv.sources.lines import generate_lines

#: The line CNN that scenarios/kugler.yaml names as its model: (size, angle step, seed).
LINE_CNNS = ((16, 2.0, 0),)

Trained = tuple[str, dict[str, torch.Tensor], dict[str, Any]]


def digits_nets(names: list[str] | None = None) -> Iterator[Trained]:
    """Every digits net, and its state at every checkpoint epoch, with held-out accuracy."""
    for name, arch in DIGITS_ARCHS.items():
        if names and name not in names:
            continue
        net, acc, saved = train_digits_net(name, seed=0)
        settings = {"seed": 0, "epochs": arch.epochs, "lr": arch.lr, "batch": 64, "threads": 1}
        yield name, net.state_dict(), {"held_out_accuracy": acc, "training": settings}
        for epoch in DIGITS_CHECKPOINTS:
            if epoch != arch.epochs:
                state, e_acc = saved[epoch]
                info = {"held_out_accuracy": e_acc, "training": {**settings, "epochs": epoch}}
                yield digits_weights_name(name, epoch), state, info


def autoencoders() -> Iterator[Trained]:
    """Lim's digits autoencoder at its default settings (what scenarios name)."""
    width, noise, epochs = 16, 0.1, 30
    ae, scores = train_digits_autoencoder(width, noise, epochs)
    settings = {"seed": 0, "width": width, "noise": noise, "epochs": epochs, "threads": 1}
    yield digits_autoencoder_name(width, noise, epochs), ae.state_dict(), {
        "scores": scores,
        "training": settings,
    }


def line_cnns() -> Iterator[Trained]:
    for size, step, seed in LINE_CNNS:
        net, details = train_line_cnn(generate_lines(size, step), seed)
        details = {k: v for k, v in details.items() if k != "seconds"}  # not a property
        yield line_cnn_name(size, step, seed), net.state_dict(), {"details": details}


def regenerate(out: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Retrain, write the files under ``out`` and the manifest; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"models": {}}
    models = dict(old["models"])
    groups = [digits_nets(only), autoencoders(), line_cnns()]
    for group in groups:
        for name, state, info in group:
            if only and not any(name.startswith(o) for o in only):
                continue
            data = save({k: v.detach().contiguous() for k, v in sorted(state.items())})
            (out / f"{name}.safetensors").write_bytes(data)
            models[name] = {"file": f"{name}.safetensors", "sha256": sha256(data), **info}
            print(f"{name}: {_gist(info)}", file=sys.stderr)
    manifest = {
        "about": "Weights of the builtin models; regenerate with `make weights`.",
        "made_with": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": _cpu(),
        },
        "models": dict(sorted(models.items())),
    }
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _gist(info: dict[str, Any]) -> str:
    if "held_out_accuracy" in info:
        return f"held-out accuracy {info['held_out_accuracy']:.4f}"
    if "scores" in info:
        return f"held-out MSE {info['scores']['held_out_mse_clean']:.5f}"
    return f"training accuracy {info['details']['training_accuracy']:.3f}"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m unified_adv.sources.builtin.train", description=__doc__)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder (default: the package's)")
    p.add_argument("--only", nargs="*", help="names (or name prefixes) to retrain")
    args = p.parse_args(argv)
    regenerate(args.out, args.only)


if __name__ == "__main__":
    main()
