"""Coloured synthetic shapes in the official CIFAR-10 python layout (seeded, no download).

    python scripts/make_shapes_cifar.py [OUT] [--per-batch 1000] [--test 1000] [--seed 0]

writes OUT/cifar-10-batches-py/ (default OUT: build/shapes) exactly as the official
cifar-10-python.tar.gz extracts: data_batch_1..5 and test_batch (pickled dicts with 'data',
uint8 rows of 3072 values, R then G then B planes of 32x32, 'labels', 'filenames',
'batch_label') and batches.meta ('label_names', 'num_cases_per_batch', 'num_vis'). Ten
classes of shapes, each drawn at a random place, size and colour on a random background
colour, with pixel noise. ``scenarios/cifar_shapes.yaml`` reads it with ``cifar10:``; a real
CIFAR-10 copy is read the same way.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

CLASSES = [
    "circle", "square", "diamond", "ring", "plus", "cross", "hbar", "vbar", "triangle", "frame",
]


def _mask(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    """The shape's pixels on a 32x32 grid."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    ax, ay = np.abs(dx), np.abs(dy)
    box = (ax < r) & (ay < r)
    t = r / 3
    shapes = {
        "circle": dx**2 + dy**2 < r**2,
        "square": box,
        "diamond": ax + ay < r,
        "ring": (dx**2 + dy**2 < r**2) & (dx**2 + dy**2 > (0.55 * r) ** 2),
        "plus": ((ax < t) & (ay < r)) | ((ay < t) & (ax < r)),
        "cross": box & (np.abs(ax - ay) < t),
        "hbar": (ay < t) & (ax < r),
        "vbar": (ax < t) & (ay < r),
        "triangle": (dy > -r) & (dy < r) & (ax < (dy + r) / 2),
        "frame": box & ~((ax < 0.55 * r) & (ay < 0.55 * r)),
    }
    return shapes[kind]


def draw(label: int, rng: np.random.Generator) -> np.ndarray:
    """One image (3, 32, 32) uint8 of class ``label``."""
    r = rng.uniform(7, 12)
    cx, cy = rng.uniform(r - 2, 33 - r, size=2)
    back = rng.uniform(0, 1, size=3)
    fore = rng.uniform(0, 1, size=3)
    while np.abs(fore - back).sum() < 0.9:  # enough contrast to see the shape
        fore = rng.uniform(0, 1, size=3)
    img = np.broadcast_to(back[:, None, None], (3, 32, 32)).copy()
    img[:, _mask(CLASSES[label], cx, cy, r)] = fore[:, None]
    img += rng.normal(0, 0.04, size=img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _batch(n: int, rng: np.random.Generator, name: str) -> dict[str, object]:
    labels = rng.integers(0, len(CLASSES), size=n)
    data = np.stack([draw(int(c), rng).reshape(-1) for c in labels])
    return {
        "batch_label": name,
        "labels": [int(c) for c in labels],
        "data": data,
        "filenames": [f"{CLASSES[c]}_{i:05d}.png" for i, c in enumerate(labels)],
    }


def write_shapes_cifar(out: Path, per_batch: int = 1000, test: int = 1000, seed: int = 0) -> Path:
    """Write the folder; returns OUT/cifar-10-batches-py."""
    root = Path(out) / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    parts = [(f"data_batch_{i}", per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    for name, n, label in [*parts, ("test_batch", test, "testing batch 1 of 1")]:
        with open(root / name, "wb") as fh:
            pickle.dump(_batch(n, rng, label), fh, protocol=2)
    meta = {"label_names": CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="build/shapes")
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(write_shapes_cifar(Path(a.out), a.per_batch, a.test, a.seed))


if __name__ == "__main__":
    main()
