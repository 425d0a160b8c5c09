"""In-memory sources, for the notebook API: ``unified_adv.run(scenario, model=net, data=(x, y))``.

The model is any ``torch.nn.Module`` returning logits; the data a pair ``(x, y)`` (or a
triple with class names, or a mapping with ``x``, ``y`` and optionally ``class_names``) of
numpy arrays or torch tensors, ``x`` of shape (N, C, H, W) or (N, H, W). Every mistake is one
``InputError`` line naming ``model`` or ``data`` (the argument), as for a scenario file.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from unified_adv.errors import InputError
from unified_adv.sources.data import Dataset, as_images, as_values
from unified_adv.sources.models import LoadedModel, ModelWrapper, state_fingerprint

if TYPE_CHECKING:
    from unified_adv.scenario.schema import Scenario

__all__ = ["infer_input_range", "memory_data", "memory_model"]

#: The input ranges :func:`infer_input_range` recognises, narrowest first.
KNOWN_RANGES = ((0.0, 1.0), (0.0, 255.0))


def memory_model(net: Any, scenario: Scenario) -> LoadedModel:
    """The caller's module, wrapped like a file's model (input range, mean/std, device).

    A deep copy is wrapped: the wrapper puts the network in eval mode, turns off its
    parameters' gradients and moves it to ``model.device``, which must not change the
    caller's object (a notebook may go on training it)."""
    file, spec = scenario.file, scenario.model
    if not isinstance(net, nn.Module):
        raise InputError.one(
            file, "model", f"expected a torch.nn.Module (model=), got {type(net).__name__}"
        )
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError.one(
            file, "model.device", f"'{spec.device}' requested but CUDA is not available"
        )
    own = copy.deepcopy(net)
    cls = f"{type(net).__module__}.{type(net).__qualname__}"
    fingerprint = hashlib.sha256(f"{state_fingerprint(own)}:{cls}".encode()).hexdigest()
    wrapper = ModelWrapper(
        own, input_range=spec.input_range, mean=spec.mean, std=spec.std, device=spec.device
    )
    details = {"in_memory": True, "class": cls, "trusted_code": False}
    return LoadedModel(wrapper, f"in-memory {type(net).__name__} (model=)", fingerprint, details)


def _array(value: Any, name: str, file: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return np.asarray(value)
    raise InputError.one(
        file, "data", f"{name} must be a numpy array or torch tensor, got {type(value).__name__}"
    )


def _parts(data: Any, file: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x, y, class names) from a pair, a triple or a mapping."""
    if isinstance(data, Mapping):
        missing = [k for k in ("x", "y") if k not in data]
        if missing:
            raise InputError.one(file, "data", f"needs keys 'x' and 'y'; missing {missing[0]!r}")
        parts = (data["x"], data["y"], data.get("class_names"))
    elif isinstance(data, tuple | list) and len(data) in (2, 3):
        parts = (data[0], data[1], data[2] if len(data) == 3 else None)
    else:
        raise InputError.one(
            file,
            "data",
            f"expected (x, y), (x, y, class_names) or a mapping with x and y; got "
            f"{type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else ""),
        )
    names = [str(c) for c in parts[2]] if parts[2] is not None else []
    return _array(parts[0], "x", file), _array(parts[1], "y", file), names


def _labels(y: np.ndarray, n: int, file: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise InputError.one(
            file, "data", f"y must be one integer label per image ({n}), got shape {y.shape}"
        )
    whole = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if not whole:
        raise InputError.one(file, "data", f"y must hold integer class labels, got {y.dtype}")
    return y.astype(np.int64)


def infer_input_range(data: Any, file: str) -> tuple[float, float] | None:
    """The model's input range read off in-memory images, for a scenario that gives none:
    [0, 1] for uint8 (scaled, as an .npz's) or floats within it, [0, 255] for floats above 1
    within that; None otherwise (:func:`memory_data` then says the values lie outside the
    range and asks for ``model.input_range``)."""
    x, _, _ = _parts(data, file)
    if x.dtype == np.uint8:
        return KNOWN_RANGES[0]
    if not (np.issubdtype(x.dtype, np.floating) and x.size and np.isfinite(x).all()):
        return None
    lo, hi = float(x.min()), float(x.max())
    return next(((a, b) for a, b in KNOWN_RANGES if a <= lo and hi <= b), None)


def memory_data(data: Any, scenario: Scenario) -> Dataset:
    """The caller's images and labels as a :class:`Dataset` in ``model.input_range``
    (uint8 scaled from [0, 255]; floats must lie in the range); ``data.limit`` applies."""
    file = scenario.file
    lo, hi = scenario.model.input_range
    x, y, names = _parts(data, file)
    x = as_images(x, file, "data")
    y = _labels(y, len(x), file)
    x = as_values(x, lo, hi, file, "data")
    n = len(y) if scenario.data.limit is None else min(scenario.data.limit, len(y))
    return Dataset(
        x[:n],
        y[:n],
        np.arange(n, dtype=np.int64),
        names,
        f"in-memory arrays (data=), {len(y)} images",
    )


def check_memory_classes(data: Dataset, num_classes: int, file: str) -> None:
    """Class names given with the data must be one per model output."""
    if data.class_names and len(data.class_names) != num_classes:
        raise InputError.one(
            file,
            "data",
            f"class_names has {len(data.class_names)} names, but the model outputs "
            f"{num_classes} classes",
        )
