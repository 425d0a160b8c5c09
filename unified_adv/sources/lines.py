"""Kügler et al.'s synthetic line data set and their CNN ("Exploring adversarial examples
patterns of one-pixel attacks", 2018).

The CNN they train on it is the builtin :mod:`unified_adv.sources.builtin.line_cnn`.

Every unique binary D×D image of a line centred on the image centre, of integer length
L in [min_length, D − 2] and angle α on the grid k·step over [0°, 180°); y = 1 for α in
[0°, 40°], else 0. The net is trained on *all* of them, so one-pixel flips are the only
thing left to probe (:mod:`unified_adv.analyses.pixelflip`).

**Rasterisation.** The line is the segment centre ± (L/2)·(cos α, −sin α) in (column,
row) pixel coordinates (α counter-clockwise, rows pointing down), the centre at
((D−1)/2, (D−1)/2) so that every image is symmetric under a 180° turn, as the paper
notes; a pixel is on when its centre lies within ``LINE_HALF_WIDTH`` = 0.55 px of the
segment (a capsule 1.1 px wide; comparisons carry a 1e-9 slack so that no count hangs
on the rounding of cos/sin). The paper does not say how it drew its lines. We counted
the unique images at D = 16 and 32 for 0.5°, 1° and 2° under eleven rules — Bresenham
and PIL lines from rounded end points (5–30 % of the paper's counts: rounding the end
points merges almost every angle), L or 2L points sampled along the segment and
rounded, a horizontal line rotated with scipy (order 0/1/3: 1.2–2.3× too many, since
every integer length then gives its own image), dense sampling (the supercover) and
pixel-centre distance ≤ w for w in 0.35…0.71 with round or flat ends and either centre.
The distance rule with w = 0.55 and centre (D−1)/2 came closest (sum over the six
cells of |log(ours/paper)| = 0.87; w = 0.5: 1.33, dense sampling: 1.08):

====  ======  ========  ========  ======
D     step    ours      paper     ratio
====  ======  ========  ========  ======
16    0.5°    278       394       0.71
16    1°      238       280       0.85
16    2°      162       170       0.95
32    0.5°    2538      2524      1.01
32    1°      1586      1394      1.14
32    2°      854       716       1.19
====  ======  ========  ========  ======

At 48, 64 and 80 ours are 3–12 % above the paper's (e.g. 64: 8400 / 4600 / 2370 vs 8116 /
4228 / 2158; :func:`count_table` recomputes all of them). The counts are what they
are because lengths grow by 0.5 px at each end: L and L + 1 often light the same pixels,
so about two lengths share an image at fine angles, and at coarse steps every angle
gives its own. Short lines at D = 16 merge neighbouring 0.5° angles more than the
paper's raster did, and at D = 32 our 1.1 px line separates 2° steps slightly more often.

**Ambiguous images.** An image produced by angles on both sides of a decision boundary
(e.g. 0° and 179.5°) is kept once and counted in ``n_ambiguous``. Its label is the
majority label over its distinct producing angles; a tie goes to the label the rule
gives its representative angle (the circular mean, modulo 180°, of those angles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LINE_HALF_WIDTH = 0.55
LABEL_MAX_ANGLE = 40.0

PAPER_TABLE1: dict[tuple[int, float], int] = {
    (16, 0.5): 394,
    (16, 1.0): 280,
    (16, 2.0): 170,
    (32, 0.5): 2524,
    (32, 1.0): 1394,
    (32, 2.0): 716,
    (48, 0.5): 5244,
    (48, 1.0): 2790,
    (48, 2.0): 1436,
    (64, 0.5): 8116,
    (64, 1.0): 4228,
    (64, 2.0): 2158,
    (80, 0.5): 10998,
    (80, 1.0): 5676,
    (80, 2.0): 2880,
}


@dataclass
class LineSet:
    images: np.ndarray  # (N, 1, D, D) float32 in {0, 1}
    labels: np.ndarray  # (N,) int64
    params: list[list[tuple[int, float]]]  # every (L, alpha) that draws image n
    angle: np.ndarray  # (N,) float64, representative angle in [0, 180)
    boundary_distance: np.ndarray  # (N,) float64, degrees to 0°≡180° or 40°
    ambiguous: np.ndarray  # (N,) bool, producing angles carry both labels
    n_ambiguous: int
    size: int
    angle_step: float

    def __len__(self) -> int:
        return len(self.labels)


def angle_grid(angle_step: float) -> np.ndarray:
    """k·step for every k with k·step < 180°."""
    if not angle_step > 0:
        raise ValueError(f"angle_step must be > 0, got {angle_step}")
    n = math.ceil(180.0 / angle_step - 1e-9)
    return np.arange(n, dtype=np.float64) * angle_step


def label_of(alpha: np.ndarray | float) -> np.ndarray:
    """y = 1 for alpha in [0°, 40°] (inclusive), else 0."""
    a = np.asarray(alpha, dtype=np.float64)
    return ((a >= 0.0) & (a <= LABEL_MAX_ANGLE + 1e-9)).astype(np.int64)


def boundary_distance(alpha: np.ndarray) -> np.ndarray:
    """Degrees from alpha (in [0, 180)) to the nearest decision boundary, 0°≡180° or 40°."""
    a = np.mod(np.asarray(alpha, dtype=np.float64), 180.0)
    return np.minimum(np.minimum(a, 180.0 - a), np.abs(a - LABEL_MAX_ANGLE))


def circular_mean_180(alphas: np.ndarray) -> float:
    """Mean orientation modulo 180° (so that 179.5° and 0.5° average to 0°)."""
    doubled = np.deg2rad(2.0 * np.asarray(alphas, dtype=np.float64))
    mean = 0.5 * math.degrees(math.atan2(np.sin(doubled).sum(), np.cos(doubled).sum()))
    mean = round(mean % 180.0, 9)
    return 0.0 if mean >= 180.0 else mean


def rasterise(size: int, length: float, alphas: np.ndarray) -> np.ndarray:
    """Boolean (A, D, D): one line of ``length`` per angle (see the module docstring)."""
    c = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    px, py = (cols - c).ravel(), (rows - c).ravel()
    t = np.deg2rad(np.asarray(alphas, dtype=np.float64))[:, None]
    dx, dy = np.cos(t), -np.sin(t)
    along = px * dx + py * dy
    perp2 = (px * px + py * py) - along * along
    over = np.maximum(np.abs(along) - length / 2.0, 0.0)
    mask = np.maximum(perp2, 0.0) + over * over <= LINE_HALF_WIDTH**2 + 1e-9
    return mask.reshape(len(t), size, size)


def _lengths(size: int, min_length: int, max_length: int | None) -> range:
    top = size - 2 if max_length is None else max_length
    if min_length < 1 or top < min_length:
        raise ValueError(f"no lengths in [{min_length}, {top}] for size {size}")
    return range(min_length, top + 1)


def _unique_lines(
    size: int, angle_step: float, min_length: int, max_length: int | None
) -> dict[bytes, list[tuple[int, float]]]:
    """Packed image -> its producing (L, alpha), in generation order."""
    alphas = angle_grid(angle_step)
    seen: dict[bytes, list[tuple[int, float]]] = {}
    for length in _lengths(size, min_length, max_length):
        packed = np.packbits(rasterise(size, length, alphas).reshape(len(alphas), -1), axis=1)
        for row, alpha in zip(packed, alphas, strict=True):
            seen.setdefault(row.tobytes(), []).append((length, float(alpha)))
    return seen


def generate_lines(
    size: int, angle_step: float, min_length: int = 12, max_length: int | None = None
) -> LineSet:
    """Every unique line image, sorted by representative angle, then shortest length."""
    seen = _unique_lines(size, angle_step, min_length, max_length)
    entries = []
    for key, params in seen.items():
        alphas = np.unique(np.array([a for _, a in params]))
        labels = label_of(alphas)
        mean = circular_mean_180(alphas)
        ones = int(labels.sum())
        tie = 2 * ones == len(labels)
        label = int(label_of(mean)) if tie else int(2 * ones > len(labels))
        entries.append(
            (mean, min(p[0] for p in params), key, params, label, 0 < ones < len(labels))
        )
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    n = len(entries)
    bits = np.frombuffer(b"".join(e[2] for e in entries), dtype=np.uint8).reshape(n, -1)
    images = np.unpackbits(bits, axis=1, count=size * size).astype(np.float32)
    angle = np.array([e[0] for e in entries], dtype=np.float64)
    ambiguous = np.array([e[5] for e in entries], dtype=bool)
    return LineSet(
        images=images.reshape(n, 1, size, size),
        labels=np.array([e[4] for e in entries], dtype=np.int64),
        params=[sorted(e[3]) for e in entries],
        angle=angle,
        boundary_distance=boundary_distance(angle),
        ambiguous=ambiguous,
        n_ambiguous=int(ambiguous.sum()),
        size=size,
        angle_step=float(angle_step),
    )


def count_table(
    sizes: tuple[int, ...] = (16, 32), steps: tuple[float, ...] = (0.5, 1.0, 2.0)
) -> list[tuple[int, float, int, int | None, float | None]]:
    """Rows (size, step, our unique-image count, the paper's, ours / paper's)."""
    rows: list[tuple[int, float, int, int | None, float | None]] = []
    for size in sizes:
        for step in steps:
            ours = len(_unique_lines(size, step, 12, None))
            paper = PAPER_TABLE1.get((size, float(step)))
            rows.append((size, float(step), ours, paper, ours / paper if paper else None))
    return rows
