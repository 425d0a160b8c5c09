"""Data sets people already have on disk, read as they were published: the python versions
of CIFAR-10 and CIFAR-100 and MNIST's idx files (gzipped or not). Nothing is downloaded.

CIFAR's python batches are pickles. torchvision's ``CIFAR10`` reads them with the full
``pickle`` module (which runs code a file names) and refuses any folder whose files differ
from the official ones by MD5 (a re-packed subset, or the synthetic example of
``scripts/make_shapes_cifar.py``); so they are read here with an unpickler that admits
numpy arrays, lists, dicts, strings and numbers only. MNIST's idx files are parsed by
torchvision's own reader.
"""

from __future__ import annotations

import gzip
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unified_adv.errors import InputError
from unified_adv.sources.models import error_gist


@dataclass(frozen=True)
class Raw:
    """A split as stored: uint8 images (N, C, H, W), labels, class names, what it is."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    description: str


@dataclass(frozen=True)
class _CifarLayout:
    title: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels: str
    names: str
    archive: str


CIFAR = {
    "cifar10": _CifarLayout(
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": _CifarLayout(
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        "fine_labels",
        "fine_label_names",
        "cifar-100-python.tar.gz",
    ),
}

#: The only globals a CIFAR batch may name: how numpy rebuilds an array (numpy 1 and 2), and
#: how Python 3 writes bytes at protocol 2 (``_codecs.encode(text, "latin1")``).
_NUMPY_GLOBALS = {("_codecs", "encode")} | {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles containers, strings, numbers and numpy arrays; refuses any other global
    (which is how a pickle runs code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is never loaded")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core in numpy 2
            return super().find_class(module, name)


def _unpickle(path: Path, file: str, field: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _ArraysOnly(fh, encoding="latin1").load()
    except OSError as exc:
        raise InputError.one(file, field, f"cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling raises many kinds
        raise InputError.one(
            file, field, f"{path} is not a CIFAR python batch ({error_gist(exc)})"
        ) from None
    if not isinstance(obj, dict):
        raise InputError.one(file, field, f"{path} holds a {type(obj).__name__}, expected a dict")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_root(given: Path, layout: _CifarLayout, file: str, field: str) -> Path:
    """The folder holding the batches: ``given`` itself or its ``cifar-10-batches-py``."""
    for root in (given / layout.folder, given):
        if (root / layout.meta).is_file():
            return root
    raise InputError.one(
        file,
        field,
        f"no {layout.title} python batches at {given}: expected {given / layout.folder}/ with "
        f"{', '.join((*layout.train, *layout.test, layout.meta))} (as extracted from the "
        f"official {layout.archive}; nothing is downloaded)",
    )


def _cifar_names(meta: dict[str, Any], layout: _CifarLayout, path: Path, file: str, field: str) -> list[str]:
    names = meta.get(layout.names)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise InputError.one(file, field, f"{path} has no list '{layout.names}' of class names")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def read_cifar(source: str, given: Path, split: str, file: str) -> Raw:
    """One split of CIFAR-10 (``source`` cifar10) or CIFAR-100 (its fine labels)."""
    layout, field = CIFAR[source], f"data.{source}"
    root = _cifar_root(given, layout, file, field)
    names = _cifar_names(_unpickle(root / layout.meta, file, field), layout, root / layout.meta, file, field)
    xs, ys = [], []
    for part in layout.train if split == "train" else layout.test:
        path = root / part
        if not path.is_file():
            raise InputError.one(file, field, f"{path} is missing ({layout.title} {split} split)")
        batch = _unpickle(path, file, field)
        data, labels = batch.get("data"), batch.get(layout.labels)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise InputError.one(
                file, field, f"{path}: 'data' must be uint8 rows of 3072 values (3x32x32), got {got}"
            )
        y = np.asarray(labels if labels is not None else [], dtype=np.int64)
        if y.shape != (len(data),):
            raise InputError.one(
                file, field, f"{path}: '{layout.labels}' must hold one label per row ({len(data)})"
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y)
    y = np.concatenate(ys)
    bad = y[(y < 0) | (y >= len(names))]
    if len(bad):
        raise InputError.one(
            file, field, f"label {int(bad[0])} is outside the {len(names)} class names of {layout.meta}"
        )
    return Raw(np.concatenate(xs), y, names, f"{layout.title} {split} split ({root.name})")


_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def _mnist_file(given: Path, stem: str, file: str) -> Path:
    for folder in (given, given / "raw", given / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    raise InputError.one(
        file,
        "data.mnist",
        f"no {stem} (or {stem}.gz) in {given}, {given / 'raw'} or {given / 'MNIST' / 'raw'}: "
        "give the folder holding MNIST's idx files (nothing is downloaded)",
    )


def _read_idx(path: Path, images: bool, file: str) -> np.ndarray:
    """An idx file through torchvision's reader; a gzipped one is unpacked to a temporary
    file first (the reader takes a path)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    read = read_image_file if images else read_label_file
    try:
        if path.suffix != ".gz":
            return read(str(path)).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem
            plain.write_bytes(gzip.decompress(path.read_bytes()))
            return read(str(plain)).numpy()
    except Exception as exc:  # noqa: BLE001 - gzip, asserts and torch raise many kinds
        raise InputError.one(
            file, "data.mnist", f"{path} is not an MNIST idx file ({error_gist(exc) or 'bad header'})"
        ) from None


def read_mnist(given: Path, split: str, file: str) -> Raw:
    """One split of MNIST (or a data set in its format, e.g. Fashion-MNIST)."""
    if not given.is_dir():
        raise InputError.one(file, "data.mnist", f"folder not found: {given}")
    prefix = _MNIST_PREFIX[split]
    images = _mnist_file(given, f"{prefix}-images-idx3-ubyte", file)
    labels = _mnist_file(given, f"{prefix}-labels-idx1-ubyte", file)
    x, y = _read_idx(images, True, file), _read_idx(labels, False, file).astype(np.int64)
    if x.ndim != 3 or x.dtype != np.uint8 or len(x) != len(y):
        raise InputError.one(
            file,
            "data.mnist",
            f"{images.name} ({x.dtype} {x.shape}) and {labels.name} ({len(y)} labels) do not match",
        )
    names = [str(c) for c in range(max(10, int(y.max()) + 1))]
    return Raw(x[:, None], y, names, f"MNIST {split} split ({images.parent.name})")
