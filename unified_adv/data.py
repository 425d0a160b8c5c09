"""Data sources: builtin digits (held-out split), .npz arrays, an image folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .scenario import Scenario

DIGITS_TEST_SHARE = 0.3
DIGITS_SPLIT_SEED = 0


@dataclass
class Dataset:
    x: np.ndarray  # float32 (N, C, H, W), in the model's input range
    y: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,): each sample's position in its source
    class_names: list[str]
    description: str

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for a in (self.x, self.y, self.index):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


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


def _scale_into(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (x * (hi - lo) + lo).astype(np.float32)


def _load_npz(scenario: Scenario, lo: float, hi: float) -> Dataset:
    file = scenario.file
    assert scenario.data.npz is not None
    path = scenario.resolve_path(scenario.data.npz)
    if not path.is_file():
        raise InputError.one(file, "data.npz", f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds
        raise InputError.one(file, "data.npz", f"not a readable .npz file ({exc})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise InputError.one(
            file,
            "data.npz",
            f"needs arrays 'x' and 'y'; missing {', '.join(missing)} (has: {', '.join(arrays) or 'none'})",
        )
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise InputError.one(
            file, "data.npz", f"x must be (N, H, W) or (N, C, H, W), got shape {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise InputError.one(
            file, "data.npz", f"y must be one label per image ({len(x)}), got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError.one(file, "data.npz", f"y must hold integer labels, got {y.dtype}")
    if len(x) == 0:
        raise InputError.one(file, "data.npz", "holds no samples")
    if x.dtype == np.uint8:
        x = _scale_into(x.astype(np.float32) / 255.0, lo, hi)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError.one(file, "data.npz", "x contains NaN or infinite values")
        if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
            raise InputError.one(
                file,
                "data.npz",
                f"x values span [{x.min():.4g}, {x.max():.4g}], outside model.input_range [{lo:g}, {hi:g}]",
            )
    else:
        raise InputError.one(file, "data.npz", f"x must be uint8 or floating point, got {x.dtype}")
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else []
    return Dataset(
        x, y.astype(np.int64), np.arange(len(y), dtype=np.int64), names, f"npz {path.name}"
    )


def _load_image_folder(scenario: Scenario, lo: float, hi: float) -> Dataset:
    file = scenario.file
    spec = scenario.data
    assert spec.image_folder is not None and spec.image_size is not None
    path = scenario.resolve_path(spec.image_folder)
    if not path.is_dir():
        raise InputError.one(file, "data.image_folder", f"folder not found: {path}")
    from torchvision import datasets, transforms

    steps: list[object] = [transforms.Resize(tuple(spec.image_size))]
    if spec.grayscale:
        steps.append(transforms.Grayscale(num_output_channels=1))
    steps.append(transforms.ToTensor())
    try:
        folder = datasets.ImageFolder(str(path), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise InputError.one(file, "data.image_folder", str(exc).splitlines()[0]) from None
    xs, ys = [], []
    for i in range(len(folder)):
        try:
            img, label = folder[i]
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
            raise InputError.one(
                file, "data.image_folder", f"cannot read {folder.samples[i][0]}: {exc}"
            ) from None
        xs.append(img.numpy())
        ys.append(label)
    x = _scale_into(np.stack(xs), lo, hi)
    y = np.asarray(ys, dtype=np.int64)
    return Dataset(
        x, y, np.arange(len(y), dtype=np.int64), list(folder.classes), f"image folder {path.name}"
    )


def load_data(scenario: Scenario) -> Dataset:
    """The scenario's samples, before ``only_correct`` (which needs the model)."""
    spec = scenario.data
    lo, hi = scenario.model.input_range
    if spec.builtin == "lines":
        from .lines import generate_lines

        assert spec.size is not None and spec.angle_step is not None
        lines = generate_lines(spec.size, spec.angle_step)
        ds = Dataset(
            _scale_into(lines.images, lo, hi),
            lines.labels.copy(),
            np.arange(len(lines), dtype=np.int64),
            ["other", "0-40°"],
            f"every unique {spec.size}x{spec.size} line image at {spec.angle_step:g}° steps "
            f"({len(lines)} images; Kügler et al.)",
        )
    elif spec.builtin == "digits":
        _, _, x, y, _, i_test = digits_split()
        ds = Dataset(
            _scale_into(x, lo, hi),
            y.copy(),
            i_test.astype(np.int64),
            [str(d) for d in range(10)],
            f"scikit-learn digits, held-out split ({len(y)} of 1797 images, 8x8 grey)",
        )
    elif spec.npz is not None:
        ds = _load_npz(scenario, lo, hi)
    else:
        ds = _load_image_folder(scenario, lo, hi)
    if spec.limit is not None:
        ds = Dataset(
            ds.x[: spec.limit],
            ds.y[: spec.limit],
            ds.index[: spec.limit],
            ds.class_names,
            ds.description,
        )
    return ds
