"""The scenario's schema: pydantic v2 specs, strict and frozen, each section checking itself.

Pure: it imports neither the adapters nor the sources. Checks across sections (which
backends can run an attack, ids and references) are :mod:`unified_adv.scenario.checks`;
reading YAML is :mod:`unified_adv.scenario.loading`; the translation of errors into
``FILE: field.path: message`` lines is :mod:`unified_adv.scenario.problems`.
"""

from __future__ import annotations

import hashlib
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from unified_adv.catalogue.analyses import ANALYSES
from unified_adv.catalogue.attacks import ALL_PARAMS, ATTACKS, PARAM_KINDS, shown
from unified_adv.errors import did_you_mean

# Several problems of one validator, joined into one message (split again by problems.py).
from unified_adv.scenario.problems import MULTI, at

BUILTIN_MODELS = ("digits-cnn", "digits-mlp", "digits-cnn-wide", "line-cnn")
BUILTIN_DATA = ("digits", "lines")
#: The training epochs of the builtin digits nets whose weights ship (``model.checkpoints``);
#: the last, 40, is the net itself.
DIGITS_CHECKPOINTS = (1, 2, 3, 5, 10, 20, 40)


#: The validation context key naming the sections whose source is given as an in-memory
#: object (the notebook API, ``unified_adv.run(scenario, model=net, data=(x, y))``): such a
#: section names no file or builtin.
IN_MEMORY = "in_memory"


def _given_in_memory(info: ValidationInfo, section: str) -> bool:
    return section in ((info.context or {}).get(IN_MEMORY) or ())


# --------------------------------------------------------------------------- numbers


#: Every number a scenario gives lies in [-MAX_NUMBER, MAX_NUMBER] (and is finite).
MAX_NUMBER = 1e9
#: Counts (iterations, classes, pairs, ...), samples and image sides: bounded too.
MAX_COUNT = 10**6
MAX_SAMPLES = 10**7
MAX_SIDE = 4096
#: A number written as text (a fraction like 8/255) is at most this long.
MAX_NUMBER_TEXT = 64


def parse_exact(value: Any) -> float:
    """Numbers and exact fractions ('8/255'), never eval; finite and within +-MAX_NUMBER."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return _bounded(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_TEXT:
            raise ValueError(
                f"a number or fraction is at most {MAX_NUMBER_TEXT} characters, got {len(text)}"
            )
        try:
            exact = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"expected a number or a fraction like 8/255, got {value!r}") from None
        return _bounded(exact, text)
    raise ValueError(f"expected a number or a fraction like 8/255, got {type(value).__name__}")


def _bounded(value: float | Fraction, text: str = "") -> float:
    """``value`` (written ``text``) as a float, if it is finite and within +-MAX_NUMBER."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    if not -MAX_NUMBER <= value <= MAX_NUMBER:
        got = text or shown(value)
        raise ValueError(f"must lie within +-{MAX_NUMBER:g}, got {got}")
    return float(value)


Exact = Annotated[float, BeforeValidator(parse_exact)]


def _eps_list(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError("needs at least one value")
    out = tuple(parse_exact(v) for v in values)
    for v in out:
        if not v > 0:
            raise ValueError(f"must be > 0, got {v:g}")
    if len(set(out)) != len(out):
        raise ValueError("values must be distinct")
    return out


def _backend_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        if not value:
            raise ValueError("needs at least one backend, or 'all', or 'fastest'")
        return tuple(value)
    raise ValueError(f"expected 'all', 'fastest' or a list of backend names, got {value!r}")


# --------------------------------------------------------------------------- sections


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Strict):
    """Whom to push the prediction towards; targets are chosen once, for every backend."""

    mode: Literal["untargeted", "class", "least_likely", "random", "each_other_class"] = (
        "untargeted"
    )
    label: int | None = Field(default=None, alias="class", ge=0, le=MAX_COUNT)
    k: int = Field(default=5, ge=2, le=MAX_COUNT)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `target: untargeted` | `target: {class: 3}` | `target: {least_likely: 5}`
        if isinstance(value, str):
            modes = ("untargeted", "least_likely", "random", "each_other_class")
            if value == "class":
                raise ValueError("write the class as `target: {class: K}`")
            if value not in modes:
                raise ValueError(did_you_mean("target mode", value, (*modes, "class")))
            return {"mode": value}
        if isinstance(value, dict) and "mode" not in value and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "class":
                return {"mode": "class", "class": arg}
            if key == "least_likely":
                return {"mode": "least_likely", "k": arg}
            raise ValueError(did_you_mean("target mode", str(key), ("class", "least_likely")))
        return value

    @property
    def targeted(self) -> bool:
        return self.mode != "untargeted"

    def describe(self) -> str:
        if self.mode == "class":
            return f"class {self.label}"
        if self.mode == "least_likely":
            return f"least likely of top-{self.k}"
        return self.mode


#: The units every number about the images is given in (eps, step sizes, mean, std).
RANGE_UNITS = "in the model's input_range units ([0, 1], [0, 255], ... as the model takes)"


class ModelSpec(_Strict):
    builtin: str | None = None
    torchscript: str | None = None
    factory: str | None = None
    #: A torchvision classification architecture by name (torchvision.models.get_model), or
    #: a timm one (timm.create_model), built untrained; ``weights`` loads a state dict.
    torchvision: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.]+$")
    timm: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")
    #: An ONNX file, converted to a torch module by onnx2torch (gradients flow through it).
    onnx: str | None = None
    #: Outputs of a torchvision or timm architecture (default: the library's, e.g. 1000).
    num_classes: int | None = Field(default=None, ge=2, le=MAX_COUNT)
    weights: str | None = Field(
        default=None,
        description="a state dict on disk: torch.save(model.state_dict()) (.pt, .pth) or "
        ".safetensors; for factory, torchvision or timm",
    )
    #: A whole pickled ``torch.nn.Module`` (``torch.save(model)``). Unpickling it runs code
    #: named in the file, so it is loaded only with ``trust_model: true``, and the summary
    #: and the report record that code from the file ran.
    pickle: str | None = None
    #: Strict: only a YAML boolean true trusts a pickle, never "yes" or "1" as a string.
    trust_model: bool = Field(default=False, strict=True)
    input_range: tuple[Exact, Exact] = Field(
        default=(0.0, 1.0),
        description="[low, high] of the pixel values the model takes; eps, step sizes, mean "
        "and std are all given in these units",
    )
    mean: tuple[Exact, ...] | None = Field(
        default=None, description=f"per-channel mean subtracted inside the model, {RANGE_UNITS}"
    )
    std: tuple[Exact, ...] | None = Field(
        default=None, description=f"per-channel std divided by inside the model, {RANGE_UNITS}"
    )
    device: str = "cpu"
    #: Training seed of the builtin line-cnn (Kügler et al.'s CNN, trained on the lines data).
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    #: Earlier states of the same model for the training-state monitor: epochs of the
    #: builtin digits CNN, weight files for a factory, TorchScript files otherwise.
    checkpoints: tuple[int | str, ...] | None = None

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, v: str | None) -> str | None:
        if v is not None and v not in BUILTIN_MODELS:
            raise ValueError(did_you_mean("builtin model", v, BUILTIN_MODELS))
        return v

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"expected 'package.module:function', got {v!r}")
        return v

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"expected cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> ModelSpec:
        sources = ("builtin", "torchscript", "factory", "pickle", "torchvision", "timm", "onnx")
        given = [k for k in sources if getattr(self, k) is not None]
        memory = type(self) is ModelSpec and _given_in_memory(info, "model")
        if memory and given:
            raise ValueError(f"the model is given in memory (model=); drop {', '.join(given)}")
        if memory and self.checkpoints is not None:
            raise ValueError("checkpoints: not available for a model given in memory (model=)")
        if len(given) != 1 and not memory:
            raise ValueError(
                f"give exactly one of {', '.join(sources)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.pickle is not None and not self.trust_model:
            raise ValueError(
                f"pickle: loading a pickled model executes code from {self.pickle}; add "
                "trust_model: true only if you trust that file, or give a state dict "
                "(factory + weights) or a TorchScript file instead"
            )
        if self.trust_model and self.pickle is None:
            raise ValueError("trust_model: only used with pickle")
        if self.seed is not None and self.builtin != "line-cnn":
            raise ValueError("seed: only used with builtin: line-cnn")
        built = self.factory or self.torchvision or self.timm
        if self.weights is not None and built is None:
            raise ValueError("weights: only used with factory, torchvision or timm")
        if self.num_classes is not None and not (self.torchvision or self.timm):
            raise ValueError("num_classes: only used with torchvision or timm")
        lo, hi = self.input_range
        if not lo < hi:
            raise ValueError(f"input_range: low must be below high, got [{lo:g}, {hi:g}]")
        if self.checkpoints is not None:
            self._check_checkpoints(self.checkpoints)
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.std is not None and self.mean is not None:
            if len(self.std) != len(self.mean):
                raise ValueError("mean and std need one value per channel each")
            if any(s <= 0 for s in self.std):
                raise ValueError("std: every value must be > 0")
        return self

    def _check_checkpoints(self, checkpoints: tuple[int | str, ...]) -> None:
        if not checkpoints:
            raise ValueError("checkpoints: give at least one, or leave it out")
        if self.builtin == "line-cnn":
            raise ValueError("checkpoints: the builtin line-cnn keeps no checkpoints")
        if self.builtin:
            bad = [c for c in checkpoints if c not in DIGITS_CHECKPOINTS]
            if bad:
                raise ValueError(
                    f"checkpoints: the builtin digits-cnn has epochs "
                    f"{', '.join(map(str, DIGITS_CHECKPOINTS))}; got {bad[0]!r}"
                )
        elif self.onnx is not None:
            raise ValueError("checkpoints: not supported for onnx models")
        elif not all(isinstance(c, str) for c in checkpoints):
            raise ValueError(
                "checkpoints: give file paths (weights for a factory, torchvision or timm, "
                "TorchScript files, pickled models for pickle)"
            )

    def describe(self) -> str:
        if self.builtin:
            return f"builtin {self.builtin}"
        if self.torchscript:
            return f"TorchScript {self.torchscript}"
        if self.pickle:
            return f"trusted pickle (ran code from {self.pickle})"
        if self.onnx:
            return f"ONNX {self.onnx} (onnx2torch)"
        weights = f" + weights {self.weights}" if self.weights else " (untrained weights)"
        if self.torchvision or self.timm:
            lib = "torchvision" if self.torchvision else "timm"
            classes = f", {self.num_classes} classes" if self.num_classes else ""
            return f"{lib} {self.torchvision or self.timm}{classes}{weights}"
        return f"factory {self.factory}" + (f" + weights {self.weights}" if self.weights else "")


#: The data sources: exactly one is given.
DATA_SOURCES = ("builtin", "npz", "image_folder", "cifar10", "cifar100", "mnist")
#: Sources read from files: their ``limit`` is stratified by default (an image folder, the
#: CIFAR and MNIST files are ordered by class or not at all); the builtin sets are shuffled
#: held-out splits already, so they keep their first N (and their published numbers).
_FILE_SOURCES = ("npz", "image_folder", "cifar10", "cifar100", "mnist")


def _side_pair(value: Any) -> Any:
    """``224`` or ``[224, 224]``: a square side given once is both sides."""
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


class DataSpec(_Strict):
    builtin: str | None = None
    npz: str | None = None
    image_folder: str | None = None
    #: The official python versions of CIFAR-10/100 (cifar-10-batches-py/,
    #: cifar-100-python/; the folder itself or the one holding it) and MNIST's idx files
    #: (gzipped or not). Never downloaded.
    cifar10: str | None = None
    cifar100: str | None = None
    mnist: str | None = None
    split: Literal["train", "test"] | None = Field(
        default=None, description="cifar10, cifar100, mnist: which split (default: test)"
    )
    image_size: tuple[int, int] | None = Field(
        default=None, description="image_folder: resize every image to exactly [height, width]"
    )
    resize: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SIDE,
        description="image_folder: resize the shorter side to this (aspect kept), then "
        "center_crop, e.g. resize: 256, center_crop: 224",
    )
    center_crop: Annotated[tuple[int, int] | None, BeforeValidator(_side_pair)] = Field(
        default=None, description="image_folder: after resize, crop the centre to N or [h, w]"
    )
    #: The model's class order, by name: label i of the data is the class named classes[i].
    #: A list, or a text file with one name per line (relative to the scenario).
    classes: tuple[str, ...] | str | None = Field(
        default=None,
        description="the model's class order by name (or a text file, one name per line): "
        "the data's labels are mapped onto it",
    )
    grayscale: bool = False
    #: builtin lines (Kügler et al.): image side D and angle grid step in degrees.
    size: int | None = Field(default=None, ge=14, le=128)
    angle_step: Exact | None = None
    limit: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    limit_mode: Literal["stratified", "first"] | None = Field(
        default=None,
        description="how limit picks samples: stratified (as even over the classes as "
        "possible, in source order within each class; the default for files) or first (the "
        "first N; the default for builtin data, shuffled already)",
    )
    only_correct: bool = True

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, v: str | None) -> str | None:
        if v is not None and v not in BUILTIN_DATA:
            raise ValueError(did_you_mean("builtin data set", v, BUILTIN_DATA))
        return v

    @property
    def source(self) -> str:
        """The one source field given (``cifar10``, ``image_folder``, ...); ``memory`` for
        data given in memory (``unified_adv.run(..., data=(x, y))``)."""
        return next((k for k in DATA_SOURCES if getattr(self, k) is not None), "memory")

    @property
    def limit_how(self) -> str:
        """``limit_mode`` as given, else the source's default."""
        if self.limit_mode is not None:
            return self.limit_mode
        return "stratified" if self.source in _FILE_SOURCES else "first"

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> DataSpec:
        given = [k for k in DATA_SOURCES if getattr(self, k) is not None]
        memory = _given_in_memory(info, "data")
        if memory and given:
            raise ValueError(f"the data is given in memory (data=); drop {', '.join(given)}")
        if len(given) != 1 and not memory:
            raise ValueError(
                f"give exactly one of {', '.join(DATA_SOURCES)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        self._check_image_fields()
        if self.split is not None and self.source not in ("cifar10", "cifar100", "mnist"):
            raise ValueError("split: only used with cifar10, cifar100 or mnist")
        if self.limit_mode is not None and self.limit is None:
            raise ValueError("limit_mode: only used with limit")
        if isinstance(self.classes, tuple):
            if len(self.classes) < 2:
                raise ValueError("classes: give at least two class names")
            repeated = [c for i, c in enumerate(self.classes) if c in self.classes[:i]]
            if repeated:
                raise ValueError(f"classes: '{repeated[0]}' is named twice")
        if self.builtin == "lines":
            if self.size is None or self.angle_step is None:
                raise ValueError("builtin lines needs size (image side) and angle_step (degrees)")
            if not 0 < self.angle_step <= 90:
                raise ValueError(f"angle_step: must be in (0, 90], got {self.angle_step:g}")
        elif self.size is not None or self.angle_step is not None:
            raise ValueError("size and angle_step are only used with builtin: lines")
        return self

    def _check_image_fields(self) -> None:
        """image_folder: image_size, or resize with center_crop; nothing else takes them."""
        if self.image_folder is None:
            for f in ("image_size", "resize", "center_crop"):
                if getattr(self, f) is not None:
                    raise ValueError(f"{f}: only used with image_folder")
            return
        if self.image_size is None and (self.resize is None or self.center_crop is None):
            raise ValueError(
                "image_folder needs image_size: [height, width], or resize: N with "
                "center_crop: M (e.g. resize: 256, center_crop: 224)"
            )
        if self.image_size is not None and (self.resize or self.center_crop):
            raise ValueError("give image_size, or resize with center_crop, not both")
        for f in ("image_size", "center_crop"):
            sides = getattr(self, f)
            if sides is not None and not all(1 <= v <= MAX_SIDE for v in sides):
                raise ValueError(
                    f"{f}: both sides must lie in [1, {MAX_SIDE}], "
                    f"got [{', '.join(map(shown, sides))}]"
                )
        crop, resize = self.center_crop, self.resize
        if crop is not None and resize is not None and max(crop) > resize:
            raise ValueError(
                f"center_crop: {list(crop)} is larger than the resized shorter side ({resize})"
            )

    def transform_text(self) -> str:
        """The image folder's preprocessing, as recorded in the data description."""
        if self.image_size is not None:
            return f"resized to {self.image_size[0]}x{self.image_size[1]}"
        assert self.resize is not None and self.center_crop is not None
        h, w = self.center_crop
        return f"shorter side resized to {self.resize}, centre-cropped to {h}x{w}"

    def describe(self) -> str:
        src = getattr(self, self.source)
        kind = {"builtin": "builtin", "npz": "npz", "image_folder": "image folder"}.get(
            self.source, self.source
        )
        return f"{kind} {src}"


class _AttackCore(_Strict):
    """The fields every attack has; its parameters follow (``_AttackFields``)."""

    name: str
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    backends: Annotated[tuple[str, ...], BeforeValidator(_backend_list)] = ("all",)
    norm: Literal["linf", "l2", "l1", "l0"]
    eps: Annotated[tuple[float, ...] | None, BeforeValidator(_eps_list)] = Field(
        default=None, description=f"the perturbation bound (one value or a list), {RANGE_UNITS}"
    )
    target: TargetSpec = TargetSpec()
    limit: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)


#: A parameter's scenario type, by its catalogue kind; its range is the catalogue's
#: (Param.check, in AttackSpec._fits_attack).
_PARAM_TYPES: dict[type, Any] = {int: int, float: Exact, str: str}

#: Each parameter's description (the catalogue's), with the units of step sizes stated.
_PARAM_DOCS = {p.name: p.doc for a in ATTACKS.values() for p in a.params} | {
    "step_size": f"step per iteration, {RANGE_UNITS}"
}

# One optional field per canonical parameter, derived from the catalogue: an attack's new
# parameter needs no field here. Each attack takes a subset (checked in _fits_attack).
if TYPE_CHECKING:
    _AttackFields = _AttackCore
else:
    _AttackFields = create_model(
        "_AttackFields",
        __base__=_AttackCore,
        __module__=__name__,
        **{
            name: (_PARAM_TYPES[kind] | None, Field(default=None, description=_PARAM_DOCS.get(name)))
            for name, kind in PARAM_KINDS.items()
        },
    )


class AttackSpec(_AttackFields):
    """One attack. Parameters an attack does not take are errors, not silently ignored."""

    if TYPE_CHECKING:  # the parameter fields, made at run time from the catalogue

        def __getattr__(self, name: str) -> Any: ...

    #: Each eps as the scenario wrote it ("8/255"), for the report and the summary.
    _eps_text: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_eps_text(cls, data: Any, handler: Any) -> Any:
        spec = handler(data)
        raw = data.get("eps") if isinstance(data, dict) else None
        if isinstance(spec, AttackSpec) and spec.eps is not None and raw is not None:
            values = raw if isinstance(raw, (list, tuple)) else [raw]
            spec._eps_text = tuple(v.strip() if isinstance(v, str) else str(v) for v in values)
        return spec

    def eps_text(self, eps: float | None) -> str | None:
        """``eps`` as the scenario wrote it (``8/255``, not 0.03137); None for no eps."""
        if eps is None:
            return None
        if self.eps is not None and eps in self.eps and len(self._eps_text) == len(self.eps):
            return self._eps_text[self.eps.index(eps)]
        return f"{eps:g}"

    @model_validator(mode="before")
    @classmethod
    def _default_norm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "norm" not in data:
            # An unknown name is reported on its own; do not add a "norm missing" line to it.
            known = ATTACKS.get(str(data.get("name")))
            return {**data, "norm": known.default_norm if known else "linf"}
        return data

    @field_validator("name")
    @classmethod
    def _known_attack(cls, v: str) -> str:
        if v not in ATTACKS:
            raise ValueError(did_you_mean("attack", v, ATTACKS))
        return v

    @model_validator(mode="after")
    def _fits_attack(self) -> AttackSpec:
        spec = ATTACKS[self.name]
        problems = []
        for param in ALL_PARAMS:
            if getattr(self, param) is not None and param not in spec.param_names:
                takes = ", ".join(spec.param_names) or "no parameters besides eps, norm, target"
                problems.append(at(param, f"{self.name} takes no '{param}' (it takes: {takes})"))
        if self.norm not in spec.norms:
            problems.append(
                at(
                    "norm",
                    f"{self.name} has no norm '{self.norm}' (available: {', '.join(spec.norms)})",
                )
            )
        if spec.takes_eps and self.eps is None:
            problems.append(at("eps", f"required: {self.name} is bounded by an eps-ball"))
        if not spec.takes_eps and self.eps is not None:
            kind = spec.threat_model.without_eps
            problems.append(at("eps", f"{self.name} is {kind} and takes no eps"))
        if self.target.mode not in spec.targets:
            problems.append(
                at(
                    "target",
                    f"{self.name} cannot be run with target {self.target.mode} "
                    f"(it supports: {', '.join(spec.targets)})",
                )
            )
        if not problems:
            given = self.given_params()
            for p in spec.params:
                if given.get(p.name) is not None:
                    try:
                        p.check(given[p.name])
                    except ValueError as exc:
                        problems.append(at(p.name, str(exc)))
        if problems:
            raise ValueError(MULTI.join(problems))
        return self

    @property
    def label(self) -> str:
        default = ATTACKS[self.name].default_norm
        return self.id or (self.name if self.norm == default else f"{self.name}-{self.norm}")

    @property
    def eps_values(self) -> tuple[float | None, ...]:
        return self.eps if self.eps is not None else (None,)

    def given_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in ATTACKS[self.name].param_names}

    def resolved_params(self, eps: float | None) -> dict[str, Any]:
        return ATTACKS[self.name].resolve(eps, self.given_params())


DEFENCES = {
    # name: (fields it takes, summary)
    "randomization": (
        ("min_size", "max_size", "pad_to"),
        "random resize, then random zero padding (Xie et al. 2018, as Lim): project code",
    ),
    "autoencoder": (
        ("width", "noise", "epochs"),
        "convolutional autoencoder denoiser trained on clean, noise-augmented training data "
        "(Lim): project code, built in for the digits data",
    ),
    "spatial_smoothing": (("window_size",), "ART SpatialSmoothing (median filter)"),
    "jpeg_compression": (("quality",), "ART JpegCompression"),
    "feature_squeezing": (("bit_depth",), "ART FeatureSqueezing (colour bit depth)"),
    "gaussian_augmentation": (
        ("sigma",),
        "ART GaussianAugmentation at inference: Gaussian noise added to every input",
    ),
    "chain": (("of",), "several of the defences above, applied in the order given"),
}
#: The optional defence fields, each checked against what its defence takes.
_DEFENCE_FIELDS = tuple(dict.fromkeys(f for takes, _ in DEFENCES.values() for f in takes))


class DefenceSpec(_Strict):
    """A defence placed in front of the unchanged classifier: one defended model variant.

    Every attack runs against it twice over: non-adaptively (the adversarial examples made
    against the undefended model, passed through the defence, as Lim reports) and, unless
    ``adaptive: false``, adaptively (the attack sees the defended model; gradient attacks on a
    randomised defence average ``eot_samples`` draws: expectation over transformation).
    """

    name: str
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.+-]+$")
    min_size: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    max_size: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    pad_to: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    width: int | None = Field(default=None, ge=1, le=256)
    noise: Exact | None = None
    epochs: int | None = Field(default=None, ge=1, le=500)
    window_size: int | None = Field(default=None, ge=1, le=11)
    quality: int | None = Field(default=None, ge=1, le=100)
    bit_depth: int | None = Field(default=None, ge=1, le=64)
    sigma: Exact | None = None
    of: tuple[str, ...] | None = None
    adaptive: bool = True
    #: Attack ids run adaptively against this defence (default: every attack).
    attacks: tuple[str, ...] | None = None
    eot_samples: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DEFENCES:
            raise ValueError(did_you_mean("defence", v, DEFENCES))
        return v

    @model_validator(mode="after")
    def _fields_fit(self) -> DefenceSpec:
        takes, _ = DEFENCES[self.name]
        problems = [
            at(f, f"{self.name} takes no '{f}' (it takes: {', '.join(takes)})")
            for f in _DEFENCE_FIELDS
            if getattr(self, f) is not None and f not in takes
        ]
        for f in ("noise", "sigma"):
            value = getattr(self, f)
            if value is not None and not value > 0:
                problems.append(at(f, f"must be > 0, got {value:g}"))
        lo, hi, pad = self.min_size, self.max_size, self.pad_to
        if lo is not None and hi is not None and lo > hi:
            problems.append(at("max_size", f"must be >= min_size ({lo}), got {hi}"))
        if hi is not None and pad is not None and hi > pad:
            problems.append(at("pad_to", f"must be >= max_size ({hi}), got {pad}"))
        if self.name == "chain" and not self.of:
            problems.append(at("of", "name at least one defence id to chain"))
        if self.eot_samples is not None and not self.adaptive:
            problems.append(at("eot_samples", "only used with adaptive: true"))
        if self.attacks is not None and not self.adaptive:
            problems.append(at("attacks", "only used with adaptive: true"))
        if problems:
            raise ValueError(MULTI.join(problems))
        return self

    @property
    def label(self) -> str:
        return self.id or self.name


class NamedModelSpec(ModelSpec):
    """One of several models (the transfer analysis): a model source with its own id."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", max_length=40)


#: The optional analysis fields (None unless given), each checked against what its analysis
#: takes; images_per_class has a default, so it is not among them.
_ANALYSIS_FIELDS = tuple(
    f for f in dict.fromkeys(f for entry in ANALYSES.values() for f in entry.fields)
    if f != "images_per_class"
)


class AnalysisSpec(_Strict):
    """One analysis of the source papers that no backend library has."""

    name: str
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    images_per_class: int = Field(default=10, gt=0, le=MAX_SAMPLES)
    steps: int | None = Field(default=None, ge=2, le=MAX_COUNT)
    pairs: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    step_size: Exact | None = None
    max_steps: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    backends: Annotated[tuple[str, ...], BeforeValidator(_backend_list)] | None = None
    mode: Literal["paper", "quantile"] | None = None
    thresholds: tuple[Exact, Exact] | None = None
    buckets: int | None = Field(default=None, ge=2, le=10)
    eps: Exact | None = None
    k: int | None = Field(default=None, ge=2, le=MAX_COUNT)
    sizes: tuple[int, ...] | None = None
    angle_steps: tuple[Exact, ...] | None = None
    seeds: int | None = Field(default=None, ge=1, le=20)
    engine: Literal["auto", "fast", "generic", "bruteforce"] | None = None
    norms: tuple[Literal["l2", "linf"], ...] | None = None
    zetas: tuple[Exact, ...] | None = None
    targets: tuple[int, ...] | Literal["all"] | None = None
    attacker: Literal["fgsm", "deepfool"] | None = None
    max_iter: int | None = Field(default=None, ge=1, le=1000)
    delta: Exact | None = None
    fit_images: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    models: tuple[NamedModelSpec, ...] | None = None
    norm: Literal["linf", "l2"] | None = None
    # Ding & Möller: images chosen by the final model (every checkpoint scored on the pairs
    # valid for it) or chosen anew per checkpoint.
    select: Literal["final", "per_checkpoint"] | None = None
    # Zingade's targeted UAP success rate R_s: over the images of other classes (ours) or
    # over all images, the target class included (the review's).
    success_over: Literal["other_classes", "all_images"] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ANALYSES:
            raise ValueError(did_you_mean("analysis", v, ANALYSES))
        return v

    @field_validator("step_size")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError(f"must be > 0, got {v:g}")
        return v

    @model_validator(mode="after")
    def _fields_fit(self) -> AnalysisSpec:
        takes = ANALYSES[self.name].fields
        problems = [
            at(f, f"{self.name} takes no '{f}' (it takes: {', '.join(takes)})")
            for f in _ANALYSIS_FIELDS
            if getattr(self, f) is not None and f not in takes
        ]
        if self.zetas is not None and (not self.zetas or any(not 0 < z < 1 for z in self.zetas)):
            problems.append(
                at("zetas", "give magnitudes as fractions of the data norm, in (0, 1)")
            )
        if self.norms is not None and (not self.norms or len(set(self.norms)) != len(self.norms)):
            problems.append(at("norms", "give distinct norms: l2, linf"))
        if isinstance(self.targets, tuple) and any(t < 0 for t in self.targets):
            problems.append(at("targets", "class indices must be >= 0"))
        if self.delta is not None and not 0 < self.delta < 1:
            problems.append(at("delta", f"must be in (0, 1), got {self.delta:g}"))
        if self.name == "transfer":
            if self.models is None or len(self.models) < 2:
                problems.append(at("models", "give at least two models (surrogates and targets)"))
            else:
                ids = [m.id for m in self.models]
                for j, mid in enumerate(ids):
                    if mid in ids[:j]:
                        problems.append(at(f"models[{j}].id", f"'{mid}' is used twice"))
            if self.eps is None:
                problems.append(at("eps", "required: the transfer PGD is bounded by an eps-ball"))
        if self.thresholds is not None and not 0 < self.thresholds[0] < self.thresholds[1] < 1:
            problems.append(at("thresholds", "need 0 < low < high < 1"))
        if self.thresholds is not None and self.mode == "quantile":
            problems.append(at("thresholds", "only used with mode: paper"))
        if self.buckets is not None and self.mode != "quantile":
            problems.append(at("buckets", "only used with mode: quantile"))
        if self.sizes is not None and (
            not self.sizes or any(not 14 <= d <= 128 for d in self.sizes)
        ):
            problems.append(at("sizes", "give image sides between 14 and 128"))
        if self.angle_steps is not None and (
            not self.angle_steps or any(not 0 < s <= 90 for s in self.angle_steps)
        ):
            problems.append(at("angle_steps", "give steps in degrees, each in (0, 90]"))
        if self.eps is not None and not self.eps > 0:
            problems.append(at("eps", f"must be > 0, got {self.eps:g}"))
        if problems:
            raise ValueError(MULTI.join(problems))
        return self

    @property
    def label(self) -> str:
        return self.id or self.name


class ReportSpec(_Strict):
    title: str | None = None
    triptychs: int = Field(default=3, ge=0, le=20)


class CrosscheckSpec(_Strict):
    """How backends are compared: significance level, tolerance per attack or attack/norm (a
    fraction of the input range's width), repeat runs."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    tolerance: dict[str, Exact] = Field(default_factory=dict)
    repeat: bool = False

    @field_validator("tolerance")
    @classmethod
    def _known_attacks(cls, v: dict[str, float]) -> dict[str, float]:
        for key, tol in v.items():
            # "attack" or "attack/norm"; a fraction of the input range's width.
            name, _, norm = key.partition("/")
            if name not in ATTACKS:
                raise ValueError(did_you_mean("attack", name, ATTACKS))
            if norm and norm not in ATTACKS[name].norms:
                raise ValueError(
                    f"{key}: {name} has no norm {norm!r} (it has: {', '.join(ATTACKS[name].norms)})"
                )
            if tol < 0:
                raise ValueError(f"{key}: must be >= 0, got {tol:g}")
        return v


def executor_rule(kind: str, scheduler: str | None, workers: int | None) -> str | None:
    """The one rule on where units run, for the scenario and the command line alike:
    ``"dask-options-without-dask"``, ``"dask-without-cluster"`` or None when fine."""
    if kind == "local" and (scheduler is not None or workers is not None):
        return "dask-options-without-dask"
    if kind == "dask" and (scheduler is None) == (workers is None):
        return "dask-without-cluster"
    return None


class ExecutionSpec(_Strict):
    """How the work is cut up: samples per unit, and per library call inside a unit."""

    #: Samples per unit: the grain of resumption and of failure isolation.
    shard_size: int = Field(default=512, gt=0, le=MAX_SAMPLES)
    #: Samples per library call (and per forward pass when scoring) inside a unit; bounds the
    #: memory one call needs. None: the whole unit in one call. A unit split into batches has
    #: a different key (a randomised attack draws a different random stream per batch).
    batch_size: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    #: Where units run: in this process, or on a Dask cluster (``unified-adv[dask]``): an
    #: existing one at ``scheduler`` (tcp://HOST:8786) or a LocalCluster of ``workers``
    #: processes. The command line's --executor/--scheduler/--workers win over these.
    executor: Literal["local", "dask"] = "local"
    scheduler: str | None = Field(default=None, pattern=r"^(tcp|tls|ucx|inproc)://\S+$")
    workers: int | None = Field(default=None, gt=0, le=1024)

    @model_validator(mode="after")
    def _executor_fields(self) -> ExecutionSpec:
        problem = executor_rule(self.executor, self.scheduler, self.workers)
        if problem == "dask-options-without-dask":
            raise ValueError("executor: scheduler and workers need executor: dask")
        if problem == "dask-without-cluster":
            raise ValueError("executor: dask needs either a scheduler address or workers")
        return self


class MlflowSpec(_Strict):
    """Where a finished run is logged in MLflow (``pip install 'unified-adv[mlflow]'``)."""

    #: A tracking URI: ``file:///path/mlruns`` (a local store, no server) or ``http://HOST:5000``.
    uri: str = Field(min_length=1)
    experiment: str = Field(default="unified-adv", min_length=1)


class TrackingSpec(_Strict):
    """Experiment trackers a finished run is logged to; a failure to log only warns."""

    mlflow: MlflowSpec | None = None


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    seed: int = Field(default=0, ge=0, lt=2**32)
    model: ModelSpec
    data: DataSpec
    attacks: list[AttackSpec] = Field(default_factory=list)
    analyses: list[AnalysisSpec] = Field(default_factory=list)
    defences: list[DefenceSpec] = Field(default_factory=list)
    report: ReportSpec = ReportSpec()
    crosscheck: CrosscheckSpec = CrosscheckSpec()
    execution: ExecutionSpec = ExecutionSpec()
    tracking: TrackingSpec = TrackingSpec()

    _file: str = PrivateAttr(default="<scenario>")
    _text: str = PrivateAttr(default="")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    # ------------------------------------------------------------------ provenance
    @property
    def file(self) -> str:
        return self._file

    @property
    def text(self) -> str:
        return self._text

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._text.encode()).hexdigest()

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the scenario resolve against (its file's folder)."""
        return self._base_dir

    def record_source(self, file: str, text: str, base_dir: Path) -> Scenario:
        """Record where the scenario was read from: its file name (for error messages), its
        text (hashed for resume, sent to workers) and its folder (for relative paths)."""
        self._file, self._text, self._base_dir = file, text, base_dir
        return self

    def resolve_path(self, value: str) -> Path:
        """Paths in a scenario are relative to the scenario file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._base_dir / p
