"""Data sources: builtin digits (held-out split), .npz arrays, an image folder, CIFAR-10/100
and MNIST as published (read by :mod:`unified_adv.sources.ondisk`); then the scenario's
``limit`` (stratified or first N) and ``classes`` (the model's class order)."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unified_adv.errors import InputError
from unified_adv.files import atomic_write, cache_dir
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.lines import generate_lines
from unified_adv.sources.models import check_file, error_gist
from unified_adv.sources.ondisk import read_cifar, read_mnist

if TYPE_CHECKING:
    from unified_adv.scenario.schema import DataSpec, Scenario

@dataclass
class Dataset:
    x: np.ndarray  # float32 (N, C, H, W), in the model's input range
    y: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,): each sample's position in its source
    class_names: list[str]
    description: str
    #: How the samples were chosen and preprocessed (source, split, limit, transform, class
    #: order): recorded in the summary's data block.
    details: dict[str, Any] = field(default_factory=dict)

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
    x = as_images(arrays["x"], file, "data.npz")
    y = arrays["y"]
    if y.ndim != 1 or len(y) != len(x):
        raise InputError.one(
            file, "data.npz", f"y must be one label per image ({len(x)}), got shape {y.shape}"
        )
    y = _integer_labels(y, file)
    x = as_values(x, lo, hi, file, "data.npz")
    names = _npz_class_names(arrays, file)
    return Dataset(x, y, np.arange(len(y), dtype=np.int64), names, f"npz {path.name}")


def as_images(x: np.ndarray, file: str, field: str) -> np.ndarray:
    """x as (N, C, H, W): (N, H, W) gains a channel; channels-last and empty are refused
    (one line on ``field``: ``data.npz`` for a file, ``data`` for arrays in memory)."""
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise InputError.one(
            file,
            field,
            f"x of shape {x.shape} looks channels-last (N, H, W, C); give (N, C, H, W), "
            "e.g. x.transpose(0, 3, 1, 2) or x.permute(0, 3, 1, 2)",
        )
    if x.ndim not in (3, 4):
        raise InputError.one(
            file, field, f"x must be (N, H, W) or (N, C, H, W), got shape {x.shape}"
        )
    if len(x) == 0:
        raise InputError.one(file, field, f"holds no samples (x has shape {x.shape})")
    return x[:, None] if x.ndim == 3 else x


def as_values(x: np.ndarray, lo: float, hi: float, file: str, field: str) -> np.ndarray:
    """float32 in [lo, hi]: uint8 scaled from [0, 255]; floats checked to be finite and to lie
    in the range (float32 is not copied: memory maps stay memory maps). ``field`` names the
    input in the error (``data.npz`` for a file, ``data`` for in-memory arrays)."""
    if x.dtype == np.uint8:
        return scale_into(x.astype(np.float32) / 255.0, lo, hi)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError.one(
            file, field, f"x must be uint8 or floating point, got {_dtype_words(x)}"
        )
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError.one(file, field, "x contains NaN or infinite values")
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise InputError.one(
            file,
            field,
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


IMAGE_CACHE_FORMAT = 2


def select_positions(y: np.ndarray, limit: int | None, how: str) -> np.ndarray:
    """The positions ``limit`` keeps: the first N, or stratified: every class's first
    sample (classes in label order), then every class's second, ... until N are taken, so
    class counts differ by at most one (a class with fewer samples gives what it has).
    Deterministic, in that interleaved order, so an attack's own ``limit`` (its first N)
    stays stratified too."""
    n = len(y)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if how == "first":
        return np.arange(limit, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return np.lexsort((y, rank))[:limit].astype(np.int64)


def _limit_text(spec: DataSpec, kept: np.ndarray, y: np.ndarray, total: int) -> str:
    if spec.limit is None or spec.limit >= total:
        return ""
    counts = np.bincount(y[kept])
    low, high = (int(counts[counts > 0].min()), int(counts.max())) if len(counts) else (0, 0)
    per_class = str(high) if low == high else f"{low}-{high}"
    how = spec.limit_how
    tail = f", {per_class} per class" if how == "stratified" else ""
    return f"; {how} limit {len(kept)} of {total}{tail}"


def _image_cache_key(
    root: Path,
    samples: list[tuple[str, int]],
    transform: str,
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
        "transform": transform,
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


def _folder_transform(spec: DataSpec) -> tuple[Any, tuple[int, int]]:
    """torchvision's transform for the image folder, and the image size it yields."""
    from torchvision import transforms

    if spec.image_size is not None:
        size = (int(spec.image_size[0]), int(spec.image_size[1]))
        steps: list[object] = [transforms.Resize(size)]
    else:
        assert spec.resize is not None and spec.center_crop is not None
        size = (int(spec.center_crop[0]), int(spec.center_crop[1]))
        steps = [transforms.Resize(spec.resize), transforms.CenterCrop(size)]
    if spec.grayscale:
        steps.append(transforms.Grayscale(num_output_channels=1))
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps), size


def _load_image_folder(scenario: Scenario, lo: float, hi: float) -> Dataset:
    """Decode an image folder once, file by file, into a ``.npy`` in the cache directory,
    and serve it memory-mapped: memory stays bounded by the OS page cache, not the data
    set. The file is keyed by the folder's file list, sizes and mtimes and the decoding
    settings, reused by later runs, and written atomically (temp file, then rename).
    Only the files ``data.limit`` keeps are decoded when a limit is given."""
    file = scenario.file
    spec = scenario.data
    assert spec.image_folder is not None
    path = scenario.resolve_path(spec.image_folder)
    if not path.is_dir():
        raise InputError.one(file, "data.image_folder", f"folder not found: {path}")
    from torchvision import datasets

    transform, size = _folder_transform(spec)
    try:
        folder = datasets.ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise InputError.one(file, "data.image_folder", str(exc).splitlines()[0]) from None
    all_y = np.asarray(folder.targets, dtype=np.int64)
    keep = select_positions(all_y, spec.limit, spec.limit_how)
    samples = [(str(folder.samples[p][0]), int(all_y[p])) for p in keep]

    def decode(i: int) -> np.ndarray:
        try:
            img, _ = folder[int(keep[i])]
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds
            raise InputError.one(
                file, "data.image_folder", f"cannot read {samples[i][0]}: {exc}"
            ) from None
        return scale_into(img.numpy(), lo, hi)

    how = spec.transform_text()
    key = _image_cache_key(path, samples, how, spec.grayscale, lo, hi)
    cached = cache_dir() / "image-folders" / f"{key}.npy"
    # ImageFolder's loader converts every image to RGB; Grayscale then keeps one channel.
    shape = (len(keep), 1 if spec.grayscale else 3, *size)
    x = _cached_images(cached, shape)
    if x is None:
        x = _decode_into(cached, shape, decode)
    description = f"image folder {path.name} ({len(all_y)} images, {how})"
    description += _limit_text(spec, keep, all_y, len(all_y))
    return Dataset(
        x, all_y[keep], keep, list(folder.classes), description, {"transform": how}
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


def _load_ondisk(scenario: Scenario, lo: float, hi: float) -> Dataset:
    """CIFAR-10/100 or MNIST, one split, limited before any image is scaled."""
    spec = scenario.data
    source = spec.source
    given = scenario.resolve_path(getattr(spec, source))
    split = spec.split or "test"
    if not given.is_dir():
        where = "the folder holding cifar-10-batches-py/" if source == "cifar10" else (
            "the folder holding cifar-100-python/" if source == "cifar100"
            else "the folder holding MNIST's idx files"
        )
        raise InputError.one(
            scenario.file,
            f"data.{source}",
            f"folder not found: {given} (give {where}; nothing is downloaded)",
        )
    if source == "mnist":
        raw = read_mnist(given, split, scenario.file)
    else:
        raw = read_cifar(source, given, split, scenario.file)
    keep = select_positions(raw.y, spec.limit, spec.limit_how)
    x = scale_into(raw.x[keep].astype(np.float32) / 255.0, lo, hi)
    description = f"{raw.description}, {len(raw.y)} images"
    description += _limit_text(spec, keep, raw.y, len(raw.y))
    return Dataset(x, raw.y[keep], keep, raw.class_names, description, {"split": split})


def _builtin(scenario: Scenario, lo: float, hi: float) -> Dataset:
    spec = scenario.data
    if spec.builtin == "lines":
        assert spec.size is not None and spec.angle_step is not None
        lines = generate_lines(spec.size, spec.angle_step)
        return Dataset(
            scale_into(lines.images, lo, hi),
            lines.labels.copy(),
            np.arange(len(lines), dtype=np.int64),
            ["other", "0-40°"],
            f"every unique {spec.size}x{spec.size} line image at {spec.angle_step:g}° steps "
            f"({len(lines)} images; Kügler et al.)",
        )
    _, _, x, y, _, i_test = digits_split()
    return Dataset(
        scale_into(x, lo, hi),
        y.copy(),
        i_test.astype(np.int64),
        [str(d) for d in range(10)],
        f"scikit-learn digits, held-out split ({len(y)} of 1797 images, 8x8 grey)",
    )


def _limited(ds: Dataset, spec: DataSpec) -> Dataset:
    """``limit`` on a data set loaded whole (builtin, npz)."""
    keep = select_positions(ds.y, spec.limit, spec.limit_how)
    if len(keep) == len(ds.y):
        return ds
    description = ds.description + _limit_text(spec, keep, ds.y, len(ds.y))
    return Dataset(ds.x[keep], ds.y[keep], ds.index[keep], ds.class_names, description, ds.details)


def class_list(scenario: Scenario) -> list[str] | None:
    """``data.classes``: the list given, or the names in the text file it names."""
    given = scenario.data.classes
    if given is None or isinstance(given, tuple):
        return None if given is None else list(given)
    path = check_file(scenario.resolve_path(given), scenario.file, "data.classes")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.one(scenario.file, "data.classes", f"cannot read {path}: {exc}") from None
    names = [n for n in names if n]
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError.one(
            scenario.file,
            "data.classes",
            f"{path} must name at least two distinct classes, one per line",
        )
    return names


def _reordered(ds: Dataset, scenario: Scenario) -> Dataset:
    """Labels mapped onto ``data.classes`` (the model's order), by class name."""
    wanted = class_list(scenario)
    if wanted is None:
        return ds
    file = scenario.file
    if not ds.class_names:
        raise InputError.one(
            file,
            "data.classes",
            "the data names no classes (an .npz needs a class_names array) to map by name",
        )
    present = [ds.class_names[c] for c in np.unique(ds.y) if c < len(ds.class_names)]
    missing = [n for n in present if n not in wanted]
    if missing:
        close = difflib.get_close_matches(missing[0], wanted, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError.one(
            file,
            "data.classes",
            f"the data's class '{missing[0]}'{more} is not among the {len(wanted)} names "
            f"given{hint}; name every class the data holds, in the model's order",
        )
    mapping = np.array([wanted.index(n) if n in wanted else -1 for n in ds.class_names])
    moved = int((mapping != np.arange(len(mapping))).sum())
    description = ds.description + f"; labels mapped onto data.classes ({moved} moved)"
    details = {**ds.details, "classes": wanted}
    return Dataset(ds.x, mapping[ds.y].astype(np.int64), ds.index, wanted, description, details)


def load_data(scenario: Scenario) -> Dataset:
    """The scenario's samples, before ``only_correct`` (which needs the model): loaded,
    limited (stratified or first N), labels mapped onto ``data.classes`` when given."""
    spec = scenario.data
    lo, hi = scenario.model.input_range
    if spec.builtin is not None:
        ds = _limited(_builtin(scenario, lo, hi), spec)
    elif spec.npz is not None:
        ds = _limited(_load_npz(scenario, lo, hi), spec)
    elif spec.image_folder is not None:
        _check_image_folder(scenario)
        ds = _load_image_folder(scenario, lo, hi)
    else:
        ds = _load_ondisk(scenario, lo, hi)
    details = {"source": spec.source, **ds.details}
    if spec.limit is not None:
        details.update(limit=spec.limit, limit_mode=spec.limit_how)
    ds.details = details
    return _reordered(ds, scenario)
