"""Models a library builds: a torchvision or timm architecture by name (untrained, then a
state dict from ``weights``), and an ONNX file converted to torch by onnx2torch.

None of them runs code from the user's files: the architectures are the libraries' own
code, weights are read as tensors only (``torch.load(weights_only=True)`` or safetensors),
and an ONNX file is a protobuf graph whose operators onnx2torch maps onto torch modules.
Nothing is downloaded (``weights=None``, ``pretrained=False``).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unified_adv.errors import InputError
from unified_adv.sources.models import check_file, error_gist, load_weights, state_fingerprint

if TYPE_CHECKING:
    from unified_adv.scenario.schema import ModelSpec


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{kind} has no classification model '{name}'{hint}"


def _torchvision(name: str, kwargs: dict[str, Any], file: str, field: str) -> nn.Module:
    import torchvision
    from torchvision import models

    known = models.list_models(module=models)
    if name not in known:
        raise InputError.one(file, field, _unknown(f"torchvision {torchvision.__version__}", name, known))
    net: nn.Module = models.get_model(name, weights=None, **kwargs)
    return net


def _timm(name: str, kwargs: dict[str, Any], file: str, field: str) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise InputError.one(
            file, field, "needs timm: pip install 'unified-adv[timm]'"
        ) from None
    if not timm.is_model(name):
        raise InputError.one(file, field, _unknown(f"timm {timm.__version__}", name, timm.list_models()))
    net: nn.Module = timm.create_model(name, pretrained=False, **kwargs)
    return net


def library_version(spec: ModelSpec) -> str:
    if spec.torchvision:
        import torchvision

        return f"torchvision {torchvision.__version__}"
    import timm

    return f"timm {timm.__version__}"


def build_library_model(
    spec: ModelSpec, weights: Path | None, seed: int, file: str, where: str, field: str | None
) -> tuple[nn.Module, str, dict[str, Any]]:
    """The named architecture, initialised from ``seed`` (so untrained weights are the same
    in every run and on every worker), then ``weights`` loaded into it."""
    name = spec.torchvision or spec.timm
    assert name is not None
    lib_field = f"{where}.torchvision" if spec.torchvision else f"{where}.timm"
    kwargs = {"num_classes": spec.num_classes} if spec.num_classes is not None else {}
    build = _torchvision if spec.torchvision else _timm
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = build(name, kwargs, file, lib_field)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a library's own checks (e.g. num_classes)
            raise InputError.one(
                file, lib_field, f"building {name} raised {type(exc).__name__}: {error_gist(exc)}"
            ) from None
    if weights is not None:
        load_weights(net, weights, file, field or f"{where}.weights")
    version = library_version(spec)
    fingerprint = hashlib.sha256(f"{state_fingerprint(net)}:{version}:{name}".encode()).hexdigest()
    details = {"architecture": f"{version} {name}", "weights": "loaded" if weights else "untrained"}
    return net, fingerprint, details


def _fixed_batch(model: Any) -> int | None:
    """The ONNX graph's first input's batch size, when fixed (a number, not a symbol)."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value"):
        return int(dims[0].dim_value)
    return None


def input_shape(model: Any) -> tuple[int, ...] | None:
    """The ONNX graph's per-image input shape (C, H, W) when every dimension is fixed."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    if not dims or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def load_onnx(path: Path, file: str, field: str) -> tuple[nn.Module, str, dict[str, Any]]:
    """An ONNX file, converted to a torch module (so gradient attacks work through it)."""
    raw = check_file(path, file, field).read_bytes()
    try:
        import onnx
        import onnx2torch
    except ImportError:
        raise InputError.one(file, field, "needs onnx and onnx2torch: pip install 'unified-adv[onnx]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds
        raise InputError.one(file, field, f"not an ONNX file ({error_gist(exc)})") from None
    batch = _fixed_batch(model)
    if batch is not None and batch != 0:
        raise InputError.one(
            file,
            field,
            f"its input has a fixed batch size of {batch}; export it with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))",
        )
    from importlib.metadata import version

    converter = f"onnx2torch {version('onnx2torch')}"
    try:
        net = onnx2torch.convert(model)
    except Exception as exc:  # noqa: BLE001 - an operator onnx2torch does not know
        raise InputError.one(
            file, field, f"{converter} cannot convert it ({error_gist(exc)})"
        ) from None
    details: dict[str, Any] = {"converted_by": converter}
    shape = input_shape(model)
    if shape is not None:
        details["input_shape"] = list(shape)
    return net, hashlib.sha256(raw).hexdigest(), details
