"""The builtin models' weights, shipped inside the package.

Every model a scenario can name with ``builtin:`` (the digits nets and digits-cnn's training
checkpoints, Lim's digits autoencoder at its default settings, Kügler's line CNN that
``scenarios/kugler.yaml`` names) is a safetensors file under ``weights/``, listed in
``weights/manifest.json`` with its SHA-256 and how it was made. Loading checks the hash: a
file that differs is an error, never a silent retrain. ``python -m unified_adv.sources.builtin.train``
(``make weights``) regenerates the files and the manifest.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


class WeightsError(RuntimeError):
    """A shipped weights file is missing or is not the one the manifest names."""


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """The manifest: ``{"models": {name: {file, sha256, ...}}, ...}``."""
    path = WEIGHTS_DIR / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read the builtin weights' manifest ({exc})") from None


def shipped(name: str) -> bool:
    """Whether the package ships weights under ``name``."""
    return name in manifest()["models"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_state(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict shipped as ``name``, after checking its SHA-256 against the manifest;
    with the manifest's entry (file, sha256, held-out scores, training settings)."""
    from safetensors.torch import load

    entry = manifest()["models"].get(name)
    if entry is None:
        raise KeyError(f"no shipped weights named {name!r}; have {sorted(manifest()['models'])}")
    path = WEIGHTS_DIR / entry["file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the shipped weights ({exc.strerror})") from None
    digest = sha256(raw)
    if digest != entry["sha256"]:
        raise WeightsError(
            f"{path}: SHA-256 {digest[:16]}… is not the manifest's {entry['sha256'][:16]}…: "
            "the shipped weights were changed or damaged; reinstall unified-adv, or run "
            "`make weights` if you meant to retrain them"
        )
    return load(raw), {**entry, "path": str(path)}
