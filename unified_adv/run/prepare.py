"""Scenario -> prepared model and data: load them, check they fit, predict once, and plan
each attack's samples and targets. Clean predictions are computed once per scenario, never
once per unit.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import torch

from unified_adv.defences.variants import build_variants
from unified_adv.errors import InputError
from unified_adv.run.prepared import AttackPlan, Prepared
from unified_adv.run.sanity import setup_warnings
from unified_adv.scenario.checks import backends_for
from unified_adv.scenario.schema import AttackSpec, Scenario
from unified_adv.sources.data import Dataset, load_data
from unified_adv.sources.load import load_model, load_model_spec
from unified_adv.sources.memory import check_memory_classes, memory_data, memory_model
from unified_adv.sources.models import LoadedModel, error_gist

__all__ = ["prepare"]


def _forward(
    model: LoadedModel, x: np.ndarray, file: str, field: str, data_field: str = "data"
) -> np.ndarray:
    """One forward pass on a few samples; any failure is the user's input, said in one line."""
    # A copy: the data may be a read-only memory map, which torch.from_numpy warns about.
    xb = torch.from_numpy(np.array(x, copy=True)).to(model.wrapper.device)
    shape = tuple(x.shape[1:])
    try:
        with torch.no_grad():
            raw = model.wrapper(xb)
    except RuntimeError as exc:  # torch's shape and dtype errors
        raise InputError.one(
            file, data_field, f"images of shape {shape} do not fit the model ({error_gist(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's forward() raised
        raise InputError.one(
            file,
            field,
            f"forward pass on images of shape {shape} raised {type(exc).__name__}: "
            f"{error_gist(exc)}",
        ) from None
    if not isinstance(raw, torch.Tensor):
        raise InputError.one(
            file,
            field,
            f"returns a {type(raw).__name__}, expected a tensor of logits (N, classes)",
        )
    out: np.ndarray = raw.detach().float().cpu().numpy()
    if out.ndim != 2 or out.shape[0] != len(x) or out.shape[1] < 2:
        raise InputError.one(
            file, field, f"expected logits of shape (N, classes >= 2), got {tuple(out.shape)}"
        )
    return out


def _probe(model: LoadedModel, data: Dataset, scenario: Scenario) -> int:
    """One forward pass on two samples: shapes, classes and outputs must make sense."""
    file = scenario.file
    channels = int(data.x.shape[1])
    if model.wrapper.normalised:
        n_mean = int(model.wrapper.get_buffer("mean").shape[1])
        if n_mean not in (1, channels):
            raise InputError.one(
                file,
                "model.mean",
                f"{n_mean} values (and as many std), but the images have {channels} channel(s)",
            )
    expected = model.details.get("input_shape")
    if expected is not None and list(data.x.shape[1:]) != list(expected):
        raise InputError.one(
            file,
            "data",
            f"images are {'x'.join(map(str, data.x.shape[1:]))} (channels x height x width), "
            f"but the model takes {'x'.join(map(str, expected))}",
        )
    out = _forward(model, data.x[:2], file, "model")
    if not np.isfinite(out).all():
        raise InputError.one(file, "model", "produces NaN or infinite outputs on the data")
    num_classes = int(out.shape[1])
    source = "data.npz" if scenario.data.npz is not None else "data"
    if scenario.data.npz is not None and data.class_names and len(data.class_names) != num_classes:
        raise InputError.one(
            file,
            source,
            f"class_names has {len(data.class_names)} names, but the model outputs "
            f"{num_classes} classes",
        )
    if scenario.data.classes is not None and len(data.class_names) != num_classes:
        raise InputError.one(
            file,
            "data.classes",
            f"names {len(data.class_names)} classes, but the model outputs {num_classes}",
        )
    bad = data.y[(data.y < 0) | (data.y >= num_classes)]
    if len(bad):
        raise InputError.one(
            file,
            "data",
            f"labels must lie in [0, {num_classes - 1}] for this model; found {int(bad[0])}",
        )
    return num_classes


def _check_l2_eps(scenario: Scenario, data: Dataset) -> None:
    """An L2 eps beyond the diameter of the input box is no bound (every image is in the
    ball): refused, as the schema refuses such an L-inf eps."""
    lo, hi = scenario.model.input_range
    values = int(np.prod(data.x.shape[1:]))
    diameter = (hi - lo) * float(np.sqrt(values))
    for i, spec in enumerate(scenario.attacks):
        if spec.norm == "l2" and spec.eps and max(spec.eps) > diameter:
            raise InputError.one(
                scenario.file,
                f"attacks[{i}].eps",
                f"{max(spec.eps):g} is larger than the L2 diameter of the input box "
                f"({diameter:g} for images of {values} values in [{lo:g}, {hi:g}]): every "
                "image lies in that ball",
            )


def _check_other_models(prep: Prepared) -> None:
    """Everything the analyses load or check later, checked now, before any unit runs and
    before an output folder exists: the model's checkpoints, the transfer analysis's models,
    the UAP analysis's targets."""
    scenario, file = prep.scenario, prep.scenario.file
    x = prep.data.x[:2]
    spec = scenario.model
    if spec.checkpoints and not spec.builtin:  # builtin epochs: checked by the schema
        for j, ckpt in enumerate(spec.checkpoints):
            where = f"model.checkpoints[{j}]"
            loaded = prep.checkpoint_models[j] = load_model(scenario, ckpt)
            out = _forward(loaded, x, file, where)
            if out.shape[1] != prep.num_classes:
                raise InputError.one(
                    file, where, f"has {out.shape[1]} classes, but the model has {prep.num_classes}"
                )
    for a_i, analysis in enumerate(scenario.analyses):
        if analysis.name == "transfer":
            for j, m in enumerate(analysis.models or ()):
                where = f"analyses[{a_i}].models[{j}]"
                loaded = load_model_spec(m, scenario, where=where)
                prep.analysis_models[a_i, j] = loaded
                out = _forward(loaded, x, file, where, data_field=where)
                if out.shape[1] != prep.num_classes:
                    raise InputError.one(
                        file,
                        where,
                        f"has {out.shape[1]} classes, but the scenario's model has "
                        f"{prep.num_classes}",
                    )
        if analysis.name == "uap":
            targets = analysis.targets if isinstance(analysis.targets, tuple) else ()
            bad = [t for t in targets if t >= prep.num_classes]
            if bad:
                raise InputError.one(
                    file,
                    f"analyses[{a_i}].targets",
                    f"must be below the model's {prep.num_classes} classes, got {bad[0]}",
                )
            if scenario.data.builtin != "digits" and len(prep.data.y) < 2:
                raise InputError.one(
                    file, "data", "the UAP analysis needs at least two images to split"
                )


def _choose_targets(
    spec: AttackSpec, index: int, seed: int, y: np.ndarray, logits: np.ndarray, file: str
) -> np.ndarray | None:
    """Targets are chosen here, once, and handed to every backend alike."""
    n, num_classes = logits.shape
    mode = spec.target.mode
    if mode == "untargeted":
        return None
    if mode == "class":
        assert spec.target.label is not None
        if spec.target.label >= num_classes:
            raise InputError.one(
                file,
                f"attacks[{index}].target.class",
                f"must be below the model's {num_classes} classes, got {spec.target.label}",
            )
        return np.full(n, spec.target.label, dtype=np.int64)
    if mode == "least_likely":
        k = spec.target.k
        if k > num_classes:
            raise InputError.one(
                file,
                f"attacks[{index}].target.k",
                f"must be <= the model's {num_classes} classes, got {k}",
            )
        ranked = np.argsort(-logits, axis=1, kind="stable")
        return ranked[:, k - 1].astype(np.int64)
    # random: uniform over the classes other than the true one, seeded per attack
    rng = np.random.default_rng([seed, index, 0x7A5])
    t = rng.integers(0, num_classes - 1, size=n)
    return (t + (t >= y)).astype(np.int64)


def _plan_attack(prep: Prepared, i: int, spec: AttackSpec) -> AttackPlan:
    """The samples attack ``i`` runs on (within its limit, correct ones only if asked, not
    already of its target class) and their targets."""
    scenario, data, file = prep.scenario, prep.data, prep.scenario.file
    correct = prep.correct
    keep = correct.copy() if scenario.data.only_correct else np.ones_like(correct)
    if spec.target.mode == "class" and spec.target.label is not None:
        keep &= data.y != spec.target.label  # attacking a sample toward its own class is void
    # limit: the attack evaluates the first `limit` samples of the (already limited) data;
    # a stratified data.limit leaves them interleaved by class, so they stay stratified.
    scope = min(spec.limit, len(keep)) if spec.limit is not None else len(keep)
    keep[scope:] = False
    positions = np.flatnonzero(keep)
    if len(positions) == 0:
        why = ["data.only_correct"] if scenario.data.only_correct else []
        if spec.target.mode == "class":
            why.append(f"target class {spec.target.label}")
        if spec.limit is not None:
            why.append(f"limit {spec.limit}")
        raise InputError.one(
            file,
            f"attacks[{i}]",
            "no samples left to attack" + (f" after {', '.join(why)}" if why else ""),
        )
    if spec.target.mode == "each_other_class":
        # Every sample once per class other than its own: a source x target matrix.
        num_classes = prep.num_classes
        others = [np.delete(np.arange(num_classes), data.y[p]) for p in positions]
        targets: np.ndarray | None = np.concatenate(others).astype(np.int64)
        positions = np.repeat(positions, num_classes - 1)
    else:
        targets = _choose_targets(
            spec, i, scenario.seed, data.y[positions], prep.clean_logits[positions], file
        )
    return AttackPlan(spec, i, positions, targets, backends_for(scenario, spec), scope)


def deterministic_gpu(device: str) -> None:
    """On a GPU, cuDNN's deterministic kernels and torch's deterministic algorithms where
    they exist (``warn_only``: an op without one warns instead of failing); the flags are
    recorded in the summary's provenance. On the CPU torch is deterministic already."""
    if not device.startswith("cuda"):
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def prepare(scenario: Scenario, *, model: Any = None, data: Any = None) -> Prepared:
    """Load model and data, check they fit, predict once, plan each attack's samples.

    ``model``, ``data``: in-memory objects instead of the scenario's sources (the notebook
    API; :mod:`unified_adv.sources.memory`)."""
    file = scenario.file
    deterministic_gpu(scenario.model.device)
    loaded = load_model(scenario) if model is None else memory_model(model, scenario)
    dataset = load_data(scenario) if data is None else memory_data(data, scenario)
    if len(dataset.y) == 0:
        raise InputError.one(file, "data", "holds no samples")
    torch.manual_seed(scenario.seed)
    num_classes = _probe(loaded, dataset, scenario)
    if data is not None:
        check_memory_classes(dataset, num_classes, file)
    return _prepared(scenario, loaded, dataset, num_classes)


def _prepared(scenario: Scenario, model: LoadedModel, data: Dataset, num_classes: int) -> Prepared:
    """Clean predictions once, the other models checked, each attack's samples planned."""
    file = scenario.file
    _check_l2_eps(scenario, data)
    prep = Prepared(scenario, model, data, model.wrapper.logits(data.x), num_classes)
    finite = np.isfinite(prep.clean_logits).all(axis=1)
    if not finite.all():
        first = int(data.index[int(np.argmin(finite))])
        raise InputError.one(
            file,
            "model",
            f"produces NaN or infinite outputs on the data (first on sample {first})",
        )
    _check_other_models(prep)
    prep.setup_warnings = setup_warnings(scenario, data.y, prep.clean_logits, data.class_names)
    for code, message in prep.setup_warnings:
        print(f"{file}: warning ({code}): {message}", file=sys.stderr)
    correct = prep.correct
    if scenario.data.only_correct and not correct.any():
        raise InputError.one(
            file,
            "data.only_correct",
            f"no correctly classified samples left to attack (0 of {len(correct)})",
        )
    prep.plans.extend(_plan_attack(prep, i, spec) for i, spec in enumerate(scenario.attacks))
    if scenario.defences:
        prep.variants = build_variants(prep)
    return prep
