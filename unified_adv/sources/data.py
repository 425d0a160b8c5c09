"""Data sources: builtin digits (held-out split), .npz arrays, an image folder."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unified_adv.errors import InputError
from unified_adv.files import atomic_write, cache_dir
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.lines import generate_lines
from unified_adv.sources.models import check_file, error_gist

if TYPE_CHECKING:
    from unified_adv.scenario.schema import Scenario

@dataclass
class Dataset:
    x: np.ndarray  # float32 (N, C, H, W), in the model's input range
    y: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,): each sample's position in its source
    class_names: list[str]
    description: str

    @cached_property
    def fingerprint(self) -> str:
        """Hashed once, in place: a memory-mapped image folder is read through, not copied."""
        h = hashlib.sha256()
        for a in (self.x, self.y, self.index):
            h.update(np.ascontiguousarray(a))  # type: ignore[arg-type]
        return h.hexdigest()


def scale_into(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Images in [0, 1] mapped linearly onto the model's input range [lo, hi], as float32."""
    return (x * (hi - lo) + lo).astype(np.float32)


def _dtype_words(a: np.ndarray) -> str:
    """'strings (<U3)' rather than a bare '<U3'."""
    kinds = {"U": "strings", "S": "bytes", "O": "Python objects", "b": "booleans"}
    kind = kinds.get(a.dtype.kind, "complex numbers" if a.dtype.kind == "c" else "")
    return f"{kind} ({a.dtype})" if kind else str(a.dtype)


def _npz_arrays(path: Path, file: str) -> dict[str, np.ndarray]:
    """Every array of an .npz, never unpickling (an object array is refused by name)."""
    field = "data.npz"
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds
        if "allow_pickle" in str(exc):
            raise InputError.one(
                file,
                field,
                "is a pickle, not an .npz file: pickles are never loaded (they run code)",
            ) from None
        raise InputError.one(file, field, f"not a readable .npz file ({error_gist(exc)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InputError.one(
            file,
            field,
            f"is a single array of shape {loaded.shape}, expected an .npz file with arrays x and "
            "y (np.savez(FILE, x=images, y=labels))",
        )
    arrays: dict[str, np.ndarray] = {}
    with loaded as npz:
        for k in npz.files:
            try:
                arrays[k] = npz[k]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise InputError.one(
                        file, field, f"array '{k}' cannot be read ({error_gist(exc)})"
                    ) from None
                raise InputError.one(
                    file,
                    field,
                    f"array '{k}' holds Python objects (pickled), which are never loaded: "
                    "save numeric arrays (x float32 or uint8, y integers)",
                ) from None
            except Exception as exc:  # noqa: BLE001 - a truncated or corrupt member
                raise InputError.one(
                    file, field, f"array '{k}' cannot be read ({error_gist(exc)})"
                ) from None
    return arrays


def _integer_labels(y: np.ndarray, file: str) -> np.ndarray:
    """Integer labels; whole-valued floats are taken, fractions and non-numbers refused."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError.one(
                file,
                "data.npz",
                f"y must hold integer class labels; y[{i}] is {float(y[i]):g} ({y.dtype} with fractions)",
            )
        return y.astype(np.int64)
    raise InputError.one(
        file, "data.npz", f"y must hold integer class labels, got {_dtype_words(y)}"
    )


def _load_npz(scenario: Scenario, lo: float, hi: float) -> Dataset:
    file = scenario.file
    assert scenario.data.npz is not None
    path = check_file(scenario.resolve_path(scenario.data.npz), file, "data.npz")
    arrays = _npz_arrays(path, file)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise InputError.one(
            file,
            "data.npz",
            f"needs arrays 'x' and 'y'; missing {', '.join(missing)} (has: {', '.join(arrays) or 'none'})",
        )
    x = _npz_images(arrays["x"], file)
    y = arrays["y"]
    if y.ndim != 1 or len(y) != len(x):
        raise InputError.one(
            file, "data.npz", f"y must be one label per image ({len(x)}), got shape {y.shape}"
        )
    y = _integer_labels(y, file)
    x = _npz_values(x, lo, hi, file)
    names = _npz_class_names(arrays, file)
    return Dataset(x, y, np.arange(len(y), dtype=np.int64), names, f"npz {path.name}")


def _npz_images(x: np.ndarray, file: str) -> np.ndarray:
    """x as (N, C, H, W): (N, H, W) gains a channel; channels-last and empty are refused."""
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise InputError.one(
            file,
            "data.npz",
            f"x of shape {x.shape} looks channels-last (N, H, W, C); give (N, C, H, W), "
            "e.g. x.transpose(0, 3, 1, 2)",
        )
    if x.ndim not in (3, 4):
        raise InputError.one(
            file, "data.npz", f"x must be (N, H, W) or (N, C, H, W), got shape {x.shape}"
        )
    if len(x) == 0:
        raise InputError.one(file, "data.npz", f"holds no samples (x has shape {x.shape})")
    return x[:, None] if x.ndim == 3 else x


def _npz_values(x: np.ndarray, lo: float, hi: float, file: str) -> np.ndarray:
    """float32 in [lo, hi]: uint8 scaled from [0, 255]; floats checked to lie in the range."""
    if x.dtype == np.uint8:
        return scale_into(x.astype(np.float32) / 255.0, lo, hi)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError.one(
            file, "data.npz", f"x must be uint8 or floating point, got {_dtype_words(x)}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise InputError.one(file, "data.npz", "x contains NaN or infinite values")
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise InputError.one(
            file,
            "data.npz",
            f"x values span [{x.min():.4g}, {x.max():.4g}], outside model.input_range [{lo:g}, {hi:g}]: "
            "rescale x, or set model.input_range to what the model takes",
        )
    return x


def _npz_class_names(arrays: dict[str, np.ndarray], file: str) -> list[str]:
    if "class_names" not in arrays:
        return []
    raw = arrays["class_names"]
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise InputError.one(
            file,
            "data.npz",
            f"class_names must be a 1-D array of strings, got {_dtype_words(raw)} of shape {raw.shape}",
        )
    return [str(c) for c in raw]


def _check_image_folder(scenario: Scenario) -> None:
    """One subfolder per class, each holding at least one image (as torchvision's
    ImageFolder reads them): else one line saying which, before any image is decoded."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    file = scenario.file
    assert scenario.data.image_folder is not None
    path = scenario.resolve_path(scenario.data.image_folder)
    field = "data.image_folder"
    if not path.is_dir():
        if path.exists():
            raise InputError.one(file, field, f"is a file, expected a folder: {path}")
        return  # the loader says "folder not found"
    try:
        classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    except OSError as exc:
        raise InputError.one(file, field, f"cannot read {path}: {exc.strerror}") from None
    if not classes:
        raise InputError.one(
            file, field, f"no class folders in {path} (expected one subfolder of images per class)"
        )

    def has_image(folder: Path) -> bool:
        for _, _, names in os.walk(folder, followlinks=True):
            if any(n.lower().endswith(IMG_EXTENSIONS) for n in names):
                return True
        return False

    empty = [c for c in classes if not has_image(path / c)]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise InputError.one(
            file,
            field,
            f"class folder(s) {shown} in {path} hold no images ({', '.join(IMG_EXTENSIONS)})",
        )


IMAGE_CACHE_FORMAT = 1


def _image_cache_key(
    root: Path,
    samples: list[tuple[str, int]],
    size: tuple[int, int],
    grayscale: bool,
    lo: float,
    hi: float,
) -> str:
    """What the decoded array depends on: every file (name, class, size, mtime), the
    decoding settings and the libraries that decode."""
    import PIL
    import torchvision

    h = hashlib.sha256()
    settings = {
        "format": IMAGE_CACHE_FORMAT,
        "root": str(root.resolve()),
        "size": list(size),
        "grayscale": grayscale,
        "range": [lo, hi],
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for file, label in samples:
        st = os.stat(file)
        h.update(
            f"{os.path.relpath(file, root)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
        )
    return h.hexdigest()


def _cached_images(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A finished cache file of the expected shape, memory-mapped; else None.

    Copy-on-write ("c"): the file itself can never change through the array, as with a
    read-only map, but the array counts as writable, so ``torch.from_numpy`` on a batch of
    it does not warn about non-writable memory. Pages are read on demand and only copied
    if something writes to them.
    """
    if not path.is_file():
        return None
    try:
        x = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if x.shape != shape or x.dtype != np.float32:
        return None
    return x


def _load_image_folder(scenario: Scenario, lo: float, hi: float) -> Dataset:
    """Decode an image folder once, file by file, into a ``.npy`` in the cache directory,
    and serve it memory-mapped: memory stays bounded by the OS page cache, not the data
    set. The file is keyed by the folder's file list, sizes and mtimes and the decoding
    settings, reused by later runs, and written atomically (temp file, then rename).
    Only the first ``data.limit`` files are decoded when a limit is given."""
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
    n = len(folder) if spec.limit is None else min(spec.limit, len(folder))
    samples = [(str(f), int(label)) for f, label in folder.samples[:n]]
    y = np.asarray([label for _, label in samples], dtype=np.int64)

    def decode(i: int) -> np.ndarray:
        try:
            img, _ = folder[i]
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
            raise InputError.one(
                file, "data.image_folder", f"cannot read {samples[i][0]}: {exc}"
            ) from None
        return scale_into(img.numpy(), lo, hi)

    size = (int(spec.image_size[0]), int(spec.image_size[1]))
    key = _image_cache_key(path, samples, size, spec.grayscale, lo, hi)
    cached = cache_dir() / "image-folders" / f"{key}.npy"
    # ImageFolder's loader converts every image to RGB; Grayscale then keeps one channel.
    shape = (n, 1 if spec.grayscale else 3, *size)
    x = _cached_images(cached, shape)
    if x is None:
        x = _decode_into(cached, shape, decode)
    return Dataset(
        x, y, np.arange(n, dtype=np.int64), list(folder.classes), f"image folder {path.name}"
    )


def _decode_into(
    target: Path,
    shape: tuple[int, ...],
    decode: Callable[[int], np.ndarray],
) -> np.ndarray:
    """Write the decoded images one by one into a new ``.npy``; rename it into place."""
    from numpy.lib.format import open_memmap

    def write(tmp: Path) -> None:
        out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for i in range(shape[0]):
            out[i] = decode(i)
        out.flush()
        del out

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, write)
    x = _cached_images(target, shape)
    assert x is not None
    return x


def load_data(scenario: Scenario) -> Dataset:
    """The scenario's samples, before ``only_correct`` (which needs the model)."""
    spec = scenario.data
    lo, hi = scenario.model.input_range
    if spec.builtin == "lines":
        assert spec.size is not None and spec.angle_step is not None
        lines = generate_lines(spec.size, spec.angle_step)
        ds = Dataset(
            scale_into(lines.images, lo, hi),
            lines.labels.copy(),
            np.arange(len(lines), dtype=np.int64),
            ["other", "0-40°"],
            f"every unique {spec.size}x{spec.size} line image at {spec.angle_step:g}° steps "
            f"({len(lines)} images; Kügler et al.)",
        )
    elif spec.builtin == "digits":
        _, _, x, y, _, i_test = digits_split()
        ds = Dataset(
            scale_into(x, lo, hi),
            y.copy(),
            i_test.astype(np.int64),
            [str(d) for d in range(10)],
            f"scikit-learn digits, held-out split ({len(y)} of 1797 images, 8x8 grey)",
        )
    elif spec.npz is not None:
        ds = _load_npz(scenario, lo, hi)
    else:
        _check_image_folder(scenario)
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
