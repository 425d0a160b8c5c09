"""The scenario file: schema (pydantic v2, strict and frozen) and loading.

Every problem is reported as ``FILE: field.path: message`` through
:class:`~unified_adv.errors.InputError`; nothing here runs user code.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import reprlib
import stat
import types
import typing
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from unified_adv.catalogue.attacks import ALL_PARAMS, ATTACKS, shown
from unified_adv.errors import InputError, Problem, did_you_mean, format_loc

BUILTIN_MODELS = ("digits-cnn", "digits-mlp", "digits-cnn-wide", "line-cnn")
BUILTIN_DATA = ("digits", "lines")


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


class ModelSpec(_Strict):
    builtin: str | None = None
    torchscript: str | None = None
    factory: str | None = None
    weights: str | None = None
    #: A whole pickled ``torch.nn.Module`` (``torch.save(model)``). Unpickling it runs code
    #: named in the file, so it is loaded only with ``trust_model: true``, and the summary
    #: and the report record that code from the file ran.
    pickle: str | None = None
    #: Strict: only a YAML boolean true trusts a pickle, never "yes" or "1" as a string.
    trust_model: bool = Field(default=False, strict=True)
    input_range: tuple[Exact, Exact] = (0.0, 1.0)
    mean: tuple[Exact, ...] | None = None
    std: tuple[Exact, ...] | None = None
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
    def _one_source(self) -> ModelSpec:
        sources = ("builtin", "torchscript", "factory", "pickle")
        given = [k for k in sources if getattr(self, k) is not None]
        if len(given) != 1:
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
        if self.weights is not None and self.factory is None:
            raise ValueError("weights: only used with factory")
        lo, hi = self.input_range
        if not lo < hi:
            raise ValueError(f"input_range: low must be below high, got [{lo:g}, {hi:g}]")
        if self.checkpoints is not None:
            if not self.checkpoints:
                raise ValueError("checkpoints: give at least one, or leave it out")
            if self.builtin == "line-cnn":
                raise ValueError("checkpoints: the builtin line-cnn keeps no checkpoints")
            if self.builtin:
                from unified_adv.sources.models import DIGITS_CHECKPOINTS

                bad = [c for c in self.checkpoints if c not in DIGITS_CHECKPOINTS]
                if bad:
                    raise ValueError(
                        f"checkpoints: the builtin digits-cnn has epochs "
                        f"{', '.join(map(str, DIGITS_CHECKPOINTS))}; got {bad[0]!r}"
                    )
            elif not all(isinstance(c, str) for c in self.checkpoints):
                raise ValueError(
                    "checkpoints: give file paths (weights for a factory, TorchScript files, "
                    "pickled models for pickle)"
                )
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.std is not None and self.mean is not None:
            if len(self.std) != len(self.mean):
                raise ValueError("mean and std need one value per channel each")
            if any(s <= 0 for s in self.std):
                raise ValueError("std: every value must be > 0")
        return self

    def describe(self) -> str:
        if self.builtin:
            return f"builtin {self.builtin}"
        if self.torchscript:
            return f"TorchScript {self.torchscript}"
        if self.pickle:
            return f"trusted pickle (ran code from {self.pickle})"
        return f"factory {self.factory}" + (f" + weights {self.weights}" if self.weights else "")


class DataSpec(_Strict):
    builtin: str | None = None
    npz: str | None = None
    image_folder: str | None = None
    image_size: tuple[int, int] | None = None
    grayscale: bool = False
    #: builtin lines (Kügler et al.): image side D and angle grid step in degrees.
    size: int | None = Field(default=None, ge=14, le=128)
    angle_step: Exact | None = None
    limit: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    only_correct: bool = True

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, v: str | None) -> str | None:
        if v is not None and v not in BUILTIN_DATA:
            raise ValueError(did_you_mean("builtin data set", v, BUILTIN_DATA))
        return v

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        given = [k for k in ("builtin", "npz", "image_folder") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of builtin, npz, image_folder"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.image_folder is not None and self.image_size is None:
            raise ValueError("image_folder needs image_size: [height, width]")
        if self.image_size is not None and self.image_folder is None:
            raise ValueError("image_size: only used with image_folder")
        if self.builtin == "lines":
            if self.size is None or self.angle_step is None:
                raise ValueError("builtin lines needs size (image side) and angle_step (degrees)")
            if not 0 < self.angle_step <= 90:
                raise ValueError(f"angle_step: must be in (0, 90], got {self.angle_step:g}")
        elif self.size is not None or self.angle_step is not None:
            raise ValueError("size and angle_step are only used with builtin: lines")
        if self.image_size is not None and not all(1 <= v <= MAX_SIDE for v in self.image_size):
            raise ValueError(
                f"image_size: both sides must lie in [1, {MAX_SIDE}], "
                f"got [{', '.join(map(shown, self.image_size))}]"
            )
        return self

    def describe(self) -> str:
        src = self.builtin or self.npz or self.image_folder
        kind = "builtin" if self.builtin else ("npz" if self.npz else "image folder")
        return f"{kind} {src}"


class AttackSpec(_Strict):
    """One attack. Parameters an attack does not take are errors, not silently ignored."""

    name: str
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    backends: Annotated[tuple[str, ...], BeforeValidator(_backend_list)] = ("all",)
    norm: Literal["linf", "l2", "l0"]
    eps: Annotated[tuple[float, ...] | None, BeforeValidator(_eps_list)] = None
    target: TargetSpec = TargetSpec()
    limit: int | None = Field(default=None, gt=0, le=MAX_SAMPLES)
    # Canonical parameters (unified_adv.catalogue.attacks); each attack takes a subset.
    steps: int | None = None
    step_size: Exact | None = None
    random_starts: int | None = None
    decay: Exact | None = None
    overshoot: Exact | None = None
    candidates: int | None = None
    lr: Exact | None = None
    c: Exact | None = None
    confidence: Exact | None = None
    binary_search_steps: int | None = None
    pixels: int | None = None
    popsize: int | None = None
    attacker: str | None = None
    max_iter: int | None = None
    delta: Exact | None = None
    queries: int | None = None
    p_init: Exact | None = None
    restarts: int | None = None
    max_evals: int | None = None
    init_evals: int | None = None
    spherical_step: Exact | None = None
    source_step: Exact | None = None
    std: Exact | None = None
    eot_samples: int | None = None
    loss: str | None = None
    rho: Exact | None = None

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
                problems.append(_at(param, f"{self.name} takes no '{param}' (it takes: {takes})"))
        if self.norm not in spec.norms:
            problems.append(
                _at(
                    "norm",
                    f"{self.name} has no norm '{self.norm}' (available: {', '.join(spec.norms)})",
                )
            )
        if spec.takes_eps and self.eps is None:
            problems.append(_at("eps", f"required: {self.name} is bounded by an eps-ball"))
        if not spec.takes_eps and self.eps is not None:
            kind = {"minimal": "a minimal-perturbation attack", "l0": "bounded by `pixels`"}.get(
                spec.threat, "a random corruption"
            )
            problems.append(_at("eps", f"{self.name} is {kind} and takes no eps"))
        if self.target.mode not in spec.targets:
            problems.append(
                _at(
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
                        problems.append(_at(p.name, str(exc)))
        if problems:
            raise ValueError(_MULTI.join(problems))
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
_DEFENCE_FIELDS = (
    "min_size",
    "max_size",
    "pad_to",
    "width",
    "noise",
    "epochs",
    "window_size",
    "quality",
    "bit_depth",
    "sigma",
    "of",
)


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
            _at(f, f"{self.name} takes no '{f}' (it takes: {', '.join(takes)})")
            for f in _DEFENCE_FIELDS
            if getattr(self, f) is not None and f not in takes
        ]
        for f in ("noise", "sigma"):
            value = getattr(self, f)
            if value is not None and not value > 0:
                problems.append(_at(f, f"must be > 0, got {value:g}"))
        lo, hi, pad = self.min_size, self.max_size, self.pad_to
        if lo is not None and hi is not None and lo > hi:
            problems.append(_at("max_size", f"must be >= min_size ({lo}), got {hi}"))
        if hi is not None and pad is not None and hi > pad:
            problems.append(_at("pad_to", f"must be >= max_size ({hi}), got {pad}"))
        if self.name == "chain" and not self.of:
            problems.append(_at("of", "name at least one defence id to chain"))
        if self.eot_samples is not None and not self.adaptive:
            problems.append(_at("eot_samples", "only used with adaptive: true"))
        if self.attacks is not None and not self.adaptive:
            problems.append(_at("attacks", "only used with adaptive: true"))
        if problems:
            raise ValueError(_MULTI.join(problems))
        return self

    @property
    def label(self) -> str:
        return self.id or self.name


class NamedModelSpec(ModelSpec):
    """One of several models (the transfer analysis): a model source with its own id."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", max_length=40)


ANALYSES = {
    # name: (fields it takes, summary)
    "morph": (
        ("images_per_class", "steps", "pairs", "seed", "select"),
        "interpolation morphing between classes (Ding & Möller)",
    ),
    "targeted_walk": (
        ("images_per_class", "step_size", "max_steps", "backends", "select"),
        "targeted iterative FGSM until the target class is reached (Ding & Möller)",
    ),
    "pixel_flip_study": (
        ("sizes", "angle_steps", "seeds", "engine"),
        "exhaustive one-pixel flips on the line data set, per size and angle step (Kügler et al.)",
    ),
    "confidence_buckets": (
        ("mode", "thresholds", "buckets", "eps", "steps", "step_size", "k", "backends"),
        "top-1/top-5 error of FGSM and BIM, inverse and least likely, per confidence bucket (Possas)",
    ),
    "uap": (
        (
            "norms",
            "zetas",
            "targets",
            "attacker",
            "max_iter",
            "delta",
            "fit_images",
            "seed",
            "success_over",
        ),
        "universal adversarial perturbations, non-targeted (fooling rate) and targeted (success "
        "rate), each against a random control of the same norm (Hirano & Takemoto, in Zingade)",
    ),
    "transfer": (
        ("models", "norm", "eps", "steps", "step_size", "backends"),
        "black-box transfer: PGD on each surrogate model, success on each target model (Zingade)",
    ),
}
#: The optional analysis fields (None unless given), each checked against what its analysis
#: takes; images_per_class has a default, so it is not among them.
_ANALYSIS_FIELDS = tuple(
    f for f in dict.fromkeys(f for takes, _ in ANALYSES.values() for f in takes)
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
        takes, _ = ANALYSES[self.name]
        problems = [
            _at(f, f"{self.name} takes no '{f}' (it takes: {', '.join(takes)})")
            for f in _ANALYSIS_FIELDS
            if getattr(self, f) is not None and f not in takes
        ]
        if self.zetas is not None and (not self.zetas or any(not 0 < z < 1 for z in self.zetas)):
            problems.append(
                _at("zetas", "give magnitudes as fractions of the data norm, in (0, 1)")
            )
        if self.norms is not None and (not self.norms or len(set(self.norms)) != len(self.norms)):
            problems.append(_at("norms", "give distinct norms: l2, linf"))
        if isinstance(self.targets, tuple) and any(t < 0 for t in self.targets):
            problems.append(_at("targets", "class indices must be >= 0"))
        if self.delta is not None and not 0 < self.delta < 1:
            problems.append(_at("delta", f"must be in (0, 1), got {self.delta:g}"))
        if self.name == "transfer":
            if self.models is None or len(self.models) < 2:
                problems.append(_at("models", "give at least two models (surrogates and targets)"))
            else:
                ids = [m.id for m in self.models]
                for j, mid in enumerate(ids):
                    if mid in ids[:j]:
                        problems.append(_at(f"models[{j}].id", f"'{mid}' is used twice"))
            if self.eps is None:
                problems.append(_at("eps", "required: the transfer PGD is bounded by an eps-ball"))
        if self.thresholds is not None and not 0 < self.thresholds[0] < self.thresholds[1] < 1:
            problems.append(_at("thresholds", "need 0 < low < high < 1"))
        if self.thresholds is not None and self.mode == "quantile":
            problems.append(_at("thresholds", "only used with mode: paper"))
        if self.buckets is not None and self.mode != "quantile":
            problems.append(_at("buckets", "only used with mode: quantile"))
        if self.sizes is not None and (
            not self.sizes or any(not 14 <= d <= 128 for d in self.sizes)
        ):
            problems.append(_at("sizes", "give image sides between 14 and 128"))
        if self.angle_steps is not None and (
            not self.angle_steps or any(not 0 < s <= 90 for s in self.angle_steps)
        ):
            problems.append(_at("angle_steps", "give steps in degrees, each in (0, 90]"))
        if self.eps is not None and not self.eps > 0:
            problems.append(_at("eps", f"must be > 0, got {self.eps:g}"))
        if problems:
            raise ValueError(_MULTI.join(problems))
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
        if self.executor == "local" and (self.scheduler or self.workers):
            raise ValueError("executor: scheduler and workers need executor: dask")
        if self.executor == "dask" and (self.scheduler is None) == (self.workers is None):
            raise ValueError("executor: dask needs either a scheduler address or workers")
        return self


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

    _file: str = PrivateAttr(default="<scenario>")
    _text: str = PrivateAttr(default="")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _backends_capable(self) -> Scenario:
        from unified_adv.adapters import check_backends

        problems = [
            f"attacks[{i}].backends: {msg}"
            for i, attack in enumerate(self.attacks)
            for msg in check_backends(attack, self.model.input_range)
        ]
        problems += self._eps_problems()
        if self.model.builtin == "line-cnn" and self.data.builtin != "lines":
            problems.append(
                "model.builtin: line-cnn is trained on the lines data: use data: {builtin: lines, ...}"
            )
        if not self.attacks and not self.analyses:
            problems.append("attacks: give at least one attack (or an analysis under analyses)")
        for i, analysis in enumerate(self.analyses):
            if analysis.name == "targeted_walk":
                from unified_adv.adapters import backend_names

                for name in analysis.backends or ():
                    if name != "all" and name not in backend_names():
                        problems.append(
                            f"analyses[{i}].backends: "
                            f"{did_you_mean('backend', name, backend_names())}"
                        )
        names = [a.label for a in self.analyses]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(
                    f"analyses[{i}].id: '{name}' is used twice; give each analysis its own id"
                )
        labels = [a.label for a in self.attacks]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                problems.append(
                    f"attacks[{i}].id: '{label}' is used twice; give each attack its own id"
                )
        problems += self._defence_problems(labels)
        if problems:
            # Several problems: joined with a marker split again by the formatter.
            raise ValueError(_MULTI.join(problems))
        return self

    def _eps_problems(self) -> list[str]:
        """An L-inf eps wider than the input range is no bound at all (every image lies in
        the ball): a typo, e.g. 8 for 8/255. The L2 bound needs the image size: prepare()."""
        lo, hi = self.model.input_range
        width = hi - lo
        out = []
        bounded: list[tuple[str, str | None, tuple[float, ...]]] = [
            (f"attacks[{i}].eps", a.norm, a.eps) for i, a in enumerate(self.attacks) if a.eps
        ]
        bounded += [
            (f"analyses[{i}].eps", a.norm or "linf", (a.eps,))
            for i, a in enumerate(self.analyses)
            if a.eps is not None
        ]
        for where, norm, values in bounded:
            if norm == "linf" and max(values) > width:
                out.append(
                    f"{where}: {max(values):g} is wider than the whole input range "
                    f"[{lo:g}, {hi:g}]: every image lies in that L-inf ball; give eps in "
                    "input units (e.g. 8/255 for images in [0, 1])"
                )
        return out

    def _defence_problems(self, attack_labels: list[str]) -> list[str]:
        out: list[str] = []
        ids = [d.label for d in self.defences]
        kinds = {d.label: d.name for d in self.defences}
        for i, d in enumerate(self.defences):
            if d.label in ids[:i]:
                out.append(f"defences[{i}].id: '{d.label}' is used twice; give each its own id")
            for j, ref in enumerate(d.of or ()):
                if ref not in kinds:
                    out.append(
                        f"defences[{i}].of[{j}]: {did_you_mean('defence id', ref, set(ids))}"
                    )
                elif kinds[ref] == "chain":
                    out.append(f"defences[{i}].of[{j}]: '{ref}' is itself a chain; list its parts")
            for j, ref in enumerate(d.attacks or ()):
                if ref not in attack_labels:
                    out.append(
                        f"defences[{i}].attacks[{j}]: {did_you_mean('attack id', ref, attack_labels)}"
                    )
            if d.name == "autoencoder" and self.data.builtin != "digits":
                out.append(
                    f"defences[{i}].name: the autoencoder is built in for the digits data "
                    "(data: {builtin: digits}) only"
                )
        if self.defences and not self.attacks:
            out.append(
                "defences: defences are evaluated under the attacks: give at least one attack"
            )
        return out

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

    def resolve_path(self, value: str) -> Path:
        """Paths in a scenario are relative to the scenario file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    def backends_for(self, attack: AttackSpec) -> tuple[str, ...]:
        from unified_adv.adapters import capable_backends

        if attack.backends == ("all",):
            return capable_backends(attack, self.model.input_range)
        if attack.backends == ("fastest",):
            from unified_adv.catalogue.speed import fastest_backend

            return (fastest_backend(attack.name, capable_backends(attack, self.model.input_range)),)
        return attack.backends


_MULTI = "\x1f"
_SUB = "\x1e"


def _at(field: str, message: str) -> str:
    """A message about one sub-field of the model being validated."""
    return f"{_SUB}{field}{_SUB}{message}"


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first given at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

#: Hostile YAML: a scenario nests a few levels and holds a few hundred values. Deeper
#: nesting, or more values once aliases (*ref) are expanded (a "billion laughs" file expands
#: 90 aliases into 10^9 values), is refused while composing, before anything is expanded.
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
#: A scenario file is at most this many bytes (read no further).
MAX_SCENARIO_BYTES = 2**20


class _TooLarge(yaml.MarkedYAMLError):
    """The document nests too deeply or expands to too many values."""


def _compose_node(self: Any, parent: Any, index: Any) -> Any:
    """``Composer.compose_node`` with a depth limit and a count of values in which an alias
    counts as every value it stands for."""
    event = self.peek_event()
    if isinstance(event, yaml.AliasEvent):
        node = _COMPOSE(self, parent, index)
        _count_nodes(self, self._anchor_sizes.get(event.anchor, 1), event)
        return node
    self._depth += 1
    if self._depth > MAX_YAML_DEPTH:
        raise _TooLarge(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
    before = self._nodes
    _count_nodes(self, 1, event)
    node = _COMPOSE(self, parent, index)
    self._depth -= 1
    if event.anchor is not None:
        self._anchor_sizes[event.anchor] = self._nodes - before
    return node


def _count_nodes(self: Any, n: int, event: Any) -> None:
    self._nodes += n
    if self._nodes > MAX_YAML_NODES:
        raise _TooLarge(
            None,
            None,
            f"more than {MAX_YAML_NODES} values once aliases are expanded",
            event.start_mark,
        )


_COMPOSE = yaml.composer.Composer.compose_node


class _SafeScenarioLoader(_UniqueKeyLoader):
    """The loader for scenarios: unique keys, bounded depth and size."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._anchor_sizes: dict[str, int] = {}

    compose_node = _compose_node


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The schema class that holds the field at ``loc`` (for 'did you mean' on typos)."""
    cls: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = _first_model(field.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def _describe_input(value: Any) -> str:
    """`` (got VALUE)`` for a short value; nothing for a long one (never formatted whole)."""
    if isinstance(value, (dict, list, tuple, set)) and len(value) > 20:
        return ""
    if isinstance(value, (str, bytes)) and len(value) > 60:
        return ""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 80, 80
    text = short.repr(value)
    return f" (got {text})" if len(text) <= 60 and "..." not in text else ""


def _problems_from(err: ValidationError, file: str) -> list[Problem]:
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = format_loc(loc)
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = [f.alias or n for n, f in (parent.model_fields.items() if parent else [])]
            problems.append(Problem(file, path, did_you_mean("field", str(loc[-1]), allowed)))
            continue
        if kind == "missing":
            message = "required field is missing"
        elif kind == "value_error":
            message = str(e.get("ctx", {}).get("error", e["msg"]))
            head, sep, rest = message.partition(": ")
            owner = _model_at(loc)
            if sep and owner is not None and head in owner.model_fields:
                # "field: message" from a model-level check: point at the field itself.
                path, message = (f"{path}.{head}" if path else head), rest
            if _MULTI in message or message.startswith(_SUB):
                for part in message.split(_MULTI):
                    if part.startswith(_SUB):  # relative to the model at `path`
                        _, field, sub_msg = part.split(_SUB, 2)
                        problems.append(
                            Problem(file, f"{path}.{field}" if path else field, sub_msg)
                        )
                    else:  # an absolute path from the Scenario-level checks
                        sub_path, _, sub_msg = part.partition(": ")
                        problems.append(Problem(file, sub_path, sub_msg))
                continue
        elif kind == "greater_than":
            message = f"must be > {e['ctx']['gt']}" + _describe_input(e["input"])
        elif kind == "greater_than_equal":
            message = f"must be >= {e['ctx']['ge']}" + _describe_input(e["input"])
        elif kind == "less_than_equal":
            message = f"must be <= {e['ctx']['le']}" + _describe_input(e["input"])
        elif kind == "literal_error":
            message = f"must be one of {e['ctx']['expected']}" + _describe_input(e["input"])
        else:
            message = e["msg"][0].lower() + e["msg"][1:] + _describe_input(e["input"])
        problems.append(Problem(file, path, message))
    return problems


def scenario_from_text(
    text: str, file: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Parse and validate scenario YAML; raises InputError listing every problem."""
    if len(text) > MAX_SCENARIO_BYTES:
        raise InputError.one(
            file, "", f"is {len(text)} characters long; a scenario is at most {MAX_SCENARIO_BYTES}"
        )
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError.one(file, "", f"holds a NUL byte (line {line}): not a YAML text file")
    try:
        data = yaml.load(text, Loader=_SafeScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooLarge as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError.one(file, "", f"YAML too large{where}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError.one(file, "", f"YAML syntax error{where}: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError.one(
            file, "", f"YAML syntax error at line {line}: {exc.reason} ({exc.character!r})"
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[:1]
        raise InputError.one(file, "", f"YAML syntax error: {first[0] if first else ''}") from None
    except RecursionError:  # a construct the depth limit does not see: refused all the same
        raise InputError.one(file, "", "YAML too large: nested too deeply") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InputError.one(
            file, "", f"top level must be a mapping with name, model, data, attacks; got {got}"
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise InputError(_problems_from(exc, file)) from None
    scenario._file = file
    scenario._text = text
    scenario._base_dir = base_dir if base_dir is not None else Path.cwd()
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file. Relative paths inside it resolve against its folder."""
    p = Path(path)
    try:
        text = _read_scenario(p)
    except FileNotFoundError:
        raise InputError.one(str(path), "", "scenario file not found") from None
    except IsADirectoryError:
        raise InputError.one(str(path), "", "is a folder, expected a YAML scenario file") from None
    except ValueError as exc:  # an embedded NUL in the path itself
        if isinstance(exc, UnicodeDecodeError):
            raise InputError.one(
                str(path), "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from None
        raise InputError.one(repr(str(path)), "", f"not a usable path ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError.one(
            str(path), "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    except OSError as exc:
        raise InputError.one(
            str(path), "", f"cannot read scenario: {exc.strerror or exc}"
        ) from None
    return scenario_from_text(text, file=str(path), base_dir=p.resolve().parent)


def _read_scenario(p: Path) -> str:
    """A regular file's text, at most MAX_SCENARIO_BYTES; a FIFO or device is never opened
    (opening a FIFO blocks until someone writes to it)."""
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError.one(
            str(p), "", "not a regular file (a pipe, socket or device); give a YAML file"
        )
    if st.st_size > MAX_SCENARIO_BYTES:
        raise InputError.one(
            str(p), "", f"is {st.st_size} bytes; a scenario file is at most {MAX_SCENARIO_BYTES}"
        )
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_SCENARIO_BYTES + 1)
    if len(raw) > MAX_SCENARIO_BYTES:
        raise InputError.one(
            str(p), "", f"is over {MAX_SCENARIO_BYTES} bytes; a scenario file is at most that"
        )
    return raw.decode("utf-8")
