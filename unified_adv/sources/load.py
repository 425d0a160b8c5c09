"""The model a scenario names, built and wrapped: a builtin (shipped weights) or a user's
file (factory + weights, TorchScript, trusted pickle). No user code runs unless named."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unified_adv.errors import InputError
from unified_adv.sources.builtin.digits import builtin_digits
from unified_adv.sources.builtin.line_cnn import builtin_line_cnn
from unified_adv.sources.libraries import build_library_model, load_onnx
from unified_adv.sources.models import (
    LoadedModel,
    ModelWrapper,
    code_fingerprint,
    error_gist,
    import_factory,
    load_torchscript,
    load_trusted_pickle,
    load_weights,
    state_fingerprint,
)

if TYPE_CHECKING:
    from unified_adv.scenario.schema import ModelSpec, Scenario

#: A built network, its fingerprint and what the summary records about where it came from.
Built = tuple[nn.Module, str, dict[str, Any]]


def load_model(scenario: Scenario, checkpoint: int | str | None = None) -> LoadedModel:
    """Build the wrapped model named by the scenario (no user code runs unless named).

    ``checkpoint``: one of ``model.checkpoints`` instead of the model itself.
    """
    return load_model_spec(scenario.model, scenario, checkpoint=checkpoint)


def load_model_spec(
    spec: ModelSpec,
    scenario: Scenario,
    *,
    where: str = "model",
    checkpoint: int | str | None = None,
) -> LoadedModel:
    """Build one model description of the scenario; ``where`` is its field path for errors
    (``model``, or ``analyses[2].models[1]`` for the transfer analysis's models)."""
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError.one(
            scenario.file, f"{where}.device", f"'{spec.device}' requested but CUDA is not available"
        )
    field = f"{where}.checkpoints" if checkpoint is not None else None
    if spec.builtin:
        net, fingerprint, details = _builtin(spec, scenario, checkpoint)
    elif spec.torchscript:
        path = scenario.resolve_path(
            str(checkpoint) if checkpoint is not None else spec.torchscript
        )
        net, fingerprint = load_torchscript(path, scenario.file, field or f"{where}.torchscript")
        details = {}
    elif spec.pickle:
        net, fingerprint, details = _pickled(spec, scenario, checkpoint, field or f"{where}.pickle")
    elif spec.onnx:
        onnx_path = scenario.resolve_path(spec.onnx)
        net, fingerprint, details = load_onnx(onnx_path, scenario.file, f"{where}.onnx")
    elif spec.torchvision or spec.timm:
        weights = str(checkpoint) if checkpoint is not None else spec.weights
        net, fingerprint, details = build_library_model(
            spec,
            scenario.resolve_path(weights) if weights else None,
            scenario.seed,
            scenario.file,
            where,
            field,
        )
    else:
        net, fingerprint, details = _from_factory(spec, scenario, checkpoint, where, field)
    #: Whether loading ran code from a model file (a trusted pickle); recorded in the
    #: summary's model block and the report's Model row.
    details = {**details, "trusted_code": spec.pickle is not None}
    wrapper = ModelWrapper(
        net, input_range=spec.input_range, mean=spec.mean, std=spec.std, device=spec.device
    )
    return LoadedModel(wrapper, spec.describe(), fingerprint, details)


def _builtin(spec: ModelSpec, scenario: Scenario, checkpoint: int | str | None) -> Built:
    if spec.builtin == "line-cnn":
        data = scenario.data
        assert data.size is not None and data.angle_step is not None  # checked by the schema
        net, details = builtin_line_cnn(data.size, data.angle_step, spec.seed or 0)
    else:
        assert spec.builtin is not None
        epoch = checkpoint if isinstance(checkpoint, int) else None
        net, details = builtin_digits(spec.builtin, epoch)
    return net, state_fingerprint(net), details


def _pickled(
    spec: ModelSpec, scenario: Scenario, checkpoint: int | str | None, field: str
) -> Built:
    assert spec.pickle is not None
    path = scenario.resolve_path(str(checkpoint) if checkpoint is not None else spec.pickle)
    folder = scenario.resolve_path(".")
    net, fingerprint = load_trusted_pickle(spec, path, folder, scenario.file, field)
    code = code_fingerprint("", folder, net)
    fingerprint = hashlib.sha256(f"{fingerprint}:{code}".encode()).hexdigest()
    return net, fingerprint, {"code_from": str(path.resolve()), "code_sha256": code}


def _from_factory(
    spec: ModelSpec,
    scenario: Scenario,
    checkpoint: int | str | None,
    where: str,
    field: str | None,
) -> Built:
    assert spec.factory is not None  # guaranteed by the schema
    file, folder = scenario.file, scenario.resolve_path(".")
    fn = import_factory(spec.factory, folder, file, f"{where}.factory")
    try:
        net = fn()
    except Exception as exc:  # noqa: BLE001 - user code
        raise InputError.one(
            file,
            f"{where}.factory",
            f"{spec.factory}() raised {type(exc).__name__}: {error_gist(exc)}",
        ) from None
    if not isinstance(net, nn.Module):
        raise InputError.one(
            file,
            f"{where}.factory",
            f"{spec.factory}() returned {type(net).__name__}, expected a torch.nn.Module",
        )
    weights = str(checkpoint) if checkpoint is not None else spec.weights
    if weights:
        load_weights(net, scenario.resolve_path(weights), file, field or f"{where}.weights")
    # Weights and code: a fixed forward() or factory is a different model (resume).
    code = code_fingerprint(spec.factory.split(":")[0], folder, net)
    fingerprint = hashlib.sha256(f"{state_fingerprint(net)}:{code}".encode()).hexdigest()
    return net, fingerprint, {"code_sha256": code}
