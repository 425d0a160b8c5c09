"""Invalid input: exit code 2 and exactly one ``FILE: field.path: message`` line per problem.

Every case runs through ``validate`` and through ``run --out DIR`` (the same checks, all made
in ``prepare`` before any unit runs); a few also through the installed console script. The
expected stderr is the whole of stderr, with ``{path}`` standing for the scenario file and
``{dir}`` for its (resolved) folder. A failed ``run`` leaves no output folder at all: no
``index.html``, ``summary.json`` or samples file, not even an empty ``units/``.

Models here are tiny (one Linear layer over 8x8 images, weights set by hand: it predicts one
class whatever the input), written into each test's own folder; no case trains or loads the
builtin CNN, so the corpus runs in seconds.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# ---------------------------------------------------------------------------- scenarios

_BASE = {
    "name": "name: bad",  # line 1
    "seed": "seed: 0",  # line 2
    "model": "model: {builtin: digits-cnn}",  # line 3
    "data": "data: {builtin: digits, limit: 60}",  # line 4
    "attacks": "attacks:\n  - {name: fgsm, eps: 0.1}",  # lines 5-6
}


def scenario(**lines: str | None) -> str:
    """The base scenario with some top-level lines replaced (None drops a line)."""
    merged = {**_BASE, **lines}
    return "\n".join(v for v in merged.values() if v is not None) + "\n"


def attack(spec: str) -> str:
    return f"attacks:\n  - {spec}"


TINY = "model: {torchscript: model.pt}"
NPZ = "data: {npz: data.npz}"
FACTORY = 'model: {factory: "mynet:build", weights: weights.pt}'
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# ---------------------------------------------------------------------------- fixture files


def _tiny_net(classes: int = 10, *, nan: bool = False) -> torch.nn.Module:
    """Flatten + Linear(64, classes) that always predicts class 0 (or NaN with ``nan``)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.zero_()
        net[1].bias[0] = float("nan") if nan else 1.0
    return net


def _torchscript(name: str = "model.pt", **kw: Any) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        torch.jit.script(_tiny_net(**kw)).save(str(folder / name))

    return setup


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return setup


def _saved(name: str, blob: object) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        torch.save(blob, folder / name)

    return setup


def _npz(name: str = "data.npz", n: int = 10, **arrays: Any) -> Callable[[Path], None]:
    """x: n grey 8x8 images in [0, 1]; y: 0, 1, 2, ... (class 0 is classified correctly)."""

    def setup(folder: Path) -> None:
        x = np.linspace(0, 1, n * 64, dtype=np.float32).reshape(n, 8, 8)
        y = np.arange(n, dtype=np.int64) % 10
        np.savez(folder / name, **{"x": x, "y": y, **arrays})

    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        for s in setups:
            s(folder)

    return setup


def _mynet(body: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / "mynet.py").write_text("import torch\n\n\n" + body, encoding="utf-8")

    return setup


_LINEAR_FACTORY = (
    "def build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
)


def _factory_with_weights(blob: object) -> Callable[[Path], None]:
    return _both(_mynet(_LINEAR_FACTORY), _saved("weights.pt", blob))


def _folder(name: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).mkdir()

    return setup


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).symlink_to(target)

    return setup


def _unreadable(name: str) -> Callable[[Path], None]:
    """A file this process cannot read. chmod 000 does not stop root, so as root it is a
    symbolic link to itself (a loop), which no user can open."""

    def setup(folder: Path) -> None:
        path = folder / name
        if IS_ROOT:
            path.symlink_to(name)
        else:
            _npz(name)(folder)
            path.chmod(0)

    return setup


_UNREADABLE_WHY = "Too many levels of symbolic links" if IS_ROOT else "Permission denied"


def _image_folder(*classes: str, images: bool = True) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        root = folder / "imgs"
        root.mkdir()
        for c in classes:
            (root / c).mkdir()
            if images:
                from PIL import Image

                Image.new("L", (8, 8)).save(root / c / "0.png")

    return setup


def _object_array() -> np.ndarray:
    out = np.empty(10, dtype=object)
    out[:] = [{"label": i} for i in range(10)]
    return out


class _RunsCode:
    """A pickle payload: unpickling it calls os.mkdir(marker) (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _laughs() -> str:
    """A "billion laughs" file: 9 levels of 9 aliases each stand for 9^9 strings."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines)


def _fifo(name: str = "scenario.yaml") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        os.mkfifo(folder / name)

    return setup


# (scenario text or None for "no file", setup(folder) or None, expected stderr)
CASES = [
    # ------------------------------------------------------------------ YAML
    pytest.param(
        "name: bad\nmodel: {builtin: digits-cnn\ndata: {builtin: digits}\n",
        None,
        "{path}: YAML syntax error at line 3, column 5: expected ',' or '}', but got ':'\n",
        id="yaml-syntax-error",
    ),
    pytest.param(
        "name: bad\nmodel:\n\tbuiltin: digits-cnn\n",
        None,
        "{path}: YAML syntax error at line 3, column 1: "
        "found character '\\t' that cannot start any token\n",
        id="yaml-tab-indent",
    ),
    pytest.param(
        scenario(attacks="attacks: [{name: fgsm, eps: 0.1}"),
        None,
        "{path}: YAML syntax error at line 6, column 1: expected ',' or ']', "
        "but got '<stream end>'\n",
        id="yaml-unclosed-list",
    ),
    pytest.param(
        scenario(again="seed: 1"),  # line 7 repeats line 2's key
        None,
        "{path}: YAML syntax error at line 7, column 1: duplicate key 'seed' "
        "(first given at line 2)\n",
        id="duplicate-key",
    ),
    pytest.param(
        "- name: bad\n- seed: 0\n",
        None,
        "{path}: top level must be a mapping with name, model, data, attacks; got a list\n",
        id="top-level-list",
    ),
    pytest.param(
        "just some text\n",
        None,
        "{path}: top level must be a mapping with name, model, data, attacks; got a str\n",
        id="top-level-scalar",
    ),
    pytest.param(
        "",
        None,
        "{path}: top level must be a mapping with name, model, data, attacks; got an empty file\n",
        id="empty-file",
    ),
    pytest.param(
        None,
        None,
        "{path}: scenario file not found\n",
        id="no-such-scenario-file",
    ),
    pytest.param(
        scenario(seed="seed: !!python/object/apply:os.getpid []"),
        None,
        "{path}: YAML syntax error at line 2, column 7: could not determine a constructor for "
        "the tag 'tag:yaml.org,2002:python/object/apply:os.getpid'\n",
        id="yaml-python-tag-not-constructed",
    ),
    # ------------------------------------------------------------------ hostile YAML and files
    pytest.param(
        scenario(attacks=f"{_laughs()}\nattacks: *i"),
        None,
        "{path}: YAML too large at line 10, column 8: more than 100000 values once aliases "
        "are expanded\n",
        id="yaml-billion-laughs",
    ),
    pytest.param(
        scenario(seed="seed: " + "[" * 500 + "]" * 500),
        None,
        "{path}: YAML too large at line 2, column 38: nested deeper than 32 levels\n",
        id="yaml-nested-500-deep",
    ),
    pytest.param(
        scenario(seed="seed: 0\x00"),
        None,
        "{path}: holds a NUL byte (line 2): not a YAML text file\n",
        id="yaml-nul-byte",
    ),
    pytest.param(
        None,
        _fifo(),
        "{path}: not a regular file (a pipe, socket or device); give a YAML file\n",
        id="scenario-is-a-fifo",
    ),
    pytest.param(
        None,
        _write("scenario.yaml", b"name: bad\n" + b"#" * 2**20 + b"\n"),
        "{path}: is 1048587 bytes; a scenario file is at most 1048576\n",
        id="scenario-file-too-large",
    ),
    pytest.param(
        None,
        _write("scenario.yaml", b"name: b\xffd\n"),
        "{path}: not UTF-8 text (byte 7: invalid start byte)\n",
        id="scenario-not-utf8",
    ),
    pytest.param(
        scenario(seed="seed: [" + ", ".join(["1"] * 1000) + "]"),
        None,
        "{path}: seed: input should be a valid integer\n",
        id="long-value-not-echoed",
    ),
    # ------------------------------------------------------------------ numbers and sizes
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 1e999}")),
        None,
        "{path}: attacks[0].eps: must lie within +-1e+09, got 1e999\n",
        id="eps-1e999",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: " + "7" * 400 + "/3}")),
        None,
        "{path}: attacks[0].eps: a number or fraction is at most 64 characters, got 402\n",
        id="eps-400-digit-fraction",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: .inf}")),
        None,
        "{path}: attacks[0].eps: must be a finite number, got inf\n",
        id="eps-infinite",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: .nan}")),
        None,
        "{path}: attacks[0].eps: must be a finite number, got nan\n",
        id="eps-nan",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 1.0e+308}")),
        None,
        "{path}: attacks[0].eps: must lie within +-1e+09, got 1e+308\n",
        id="eps-1e308",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 8}")),
        None,
        "{path}: attacks[0].eps: 8 is wider than the whole input range [0, 1]: every image "
        "lies in that L-inf ball; give eps in input units (e.g. 8/255 for images in [0, 1])\n",
        id="eps-wider-than-input-range",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ, attacks=attack("{name: pgd, norm: l2, eps: 100}")),
        _both(_torchscript(), _npz()),
        "{path}: attacks[0].eps: 100 is larger than the L2 diameter of the input box (8 for "
        "images of 64 values in [0, 1]): every image lies in that ball\n",
        id="l2-eps-beyond-the-input-box",
    ),
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, steps: 1180591620717411303424}")),
        None,
        "{path}: attacks[0].steps: must be <= 1000000, got 1180591620717411303424\n",
        id="steps-2-to-the-70",
    ),
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, step_size: -.inf}")),
        None,
        "{path}: attacks[0].step_size: must be a finite number, got -inf\n",
        id="step-size-minus-infinity",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, input_range: [0, .inf]}"),
        None,
        "{path}: model.input_range[1]: must be a finite number, got inf\n",
        id="input-range-infinite",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, mean: [.nan], std: [1]}"),
        None,
        "{path}: model.mean[0]: must be a finite number, got nan\n",
        id="mean-nan",
    ),
    pytest.param(
        scenario(data="data: {image_folder: imgs, image_size: [100000, 100000]}"),
        None,
        "{path}: data.image_size: both sides must lie in [1, 4096], got [100000, 100000]\n",
        id="image-size-huge",
    ),
    pytest.param(
        scenario(data="data: {builtin: digits, limit: 100000000000000000000}"),
        None,
        "{path}: data.limit: must be <= 10000000 (got 100000000000000000000)\n",
        id="data-limit-huge",
    ),
    pytest.param(
        scenario(extra="execution: {shard_size: 100000000000}"),
        None,
        "{path}: execution.shard_size: must be <= 10000000 (got 100000000000)\n",
        id="shard-size-huge",
    ),
    pytest.param(
        scenario(extra="crosscheck: {tolerance: {fgsm: .inf}}"),
        None,
        "{path}: crosscheck.tolerance.fgsm: must be a finite number, got inf\n",
        id="tolerance-infinite",
    ),
    pytest.param(
        scenario(
            extra="defences:\n  - {name: randomization, min_size: 8, max_size: 9, pad_to: 1000000}"
        ),
        None,
        "{path}: defences[0].pad_to: must be <= 4096 (got 1000000)\n",
        id="defence-pad-huge",
    ),
    # ------------------------------------------------------------------ schema, top level
    pytest.param(
        scenario(seed='seed: "abc"'),
        None,
        "{path}: seed: input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')\n",
        id="wrong-type-seed",
    ),
    pytest.param(
        scenario(extra="atacks: []"),
        None,
        "{path}: atacks: unknown field 'atacks'. Did you mean 'attacks'? Available: analyses, "
        "attacks, crosscheck, data, defences, description, execution, model, name, report, seed, tracking\n",
        id="unknown-top-level-key",
    ),
    pytest.param(
        scenario(attacks=None),
        None,
        "{path}: attacks: give at least one attack (or an analysis under analyses)\n",
        id="missing-attacks",
    ),
    # ------------------------------------------------------------------ schema, model
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, wieghts: w.pt}"),
        None,
        "{path}: model.wieghts: unknown field 'wieghts'. Did you mean 'weights'? Available: "
        "builtin, checkpoints, device, factory, input_range, mean, num_classes, onnx, pickle, "
        "seed, std, timm, torchscript, torchvision, trust_model, weights\n",
        id="model-unknown-field",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, device: gpu}"),
        None,
        "{path}: model.device: expected cpu, cuda, cuda:N or mps, got 'gpu'\n",
        id="model-bad-device",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, input_range: [1, 0]}"),
        None,
        "{path}: model.input_range: low must be below high, got [1, 0]\n",
        id="input-range-reversed",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, checkpoints: [7]}"),
        None,
        "{path}: model.checkpoints: the builtin digits-cnn has epochs 1, 2, 3, 5, 10, 20, 40; got 7\n",
        id="unknown-checkpoint",
    ),
    # ------------------------------------------------------------------ schema, data
    pytest.param(
        scenario(data="data: {builtin: digits, npz: data.npz}"),
        None,
        "{path}: data: give exactly one of builtin, npz, image_folder, cifar10, cifar100, mnist "
        "(got builtin, npz)\n",
        id="builtin-and-npz",
    ),
    pytest.param(
        scenario(data="data: {builtin: digits, limit: 0}"),
        None,
        "{path}: data.limit: must be > 0 (got 0)\n",
        id="data-limit-zero",
    ),
    # ------------------------------------------------------------------ schema, attacks[i]
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, stpes: 5}")),
        None,
        "{path}: attacks[0].stpes: unknown field 'stpes'. Did you mean 'steps'? "
        "Available: alpha_max, attacker, backends, beta, binary_search_steps, c, candidates, confidence, decay, delta, ema_alpha, eot_samples, eps, gamma, id, init_evals, init_lr_distance, init_norm, limit, loss, lr, lr_reduction, max_evals, max_iter, min_gamma, min_step_size, name, norm, overshoot, p_init, pixels, popsize, queries, random_starts, restarts, rho, source_step, spherical_step, std, step_size, steps, target, target_classes, version\n",
        id="typo-key",
    ),
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, steps: ten}")),
        None,
        "{path}: attacks[0].steps: input should be a valid integer, "
        "unable to parse string as an integer (got 'ten')\n",
        id="wrong-type-steps",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: -0.1}")),
        None,
        "{path}: attacks[0].eps: must be > 0, got -0.1\n",
        id="negative-eps",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 8/25x}")),
        None,
        "{path}: attacks[0].eps: expected a number or a fraction like 8/255, got '8/25x'\n",
        id="eps-bad-fraction",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 8/0}")),
        None,
        "{path}: attacks[0].eps: expected a number or a fraction like 8/255, got '8/0'\n",
        id="eps-zero-denominator",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgms, eps: 0.1}")),
        None,
        "{path}: attacks[0].name: unknown attack 'fgms'. Did you mean 'fgsm'? "
        "Available: alma, apgd, autoattack, bim, boundary, cw_l2, ddn, deepfool, fab, fgsm, fmn, gaussian_noise, hopskipjump, lbfgs, mifgsm, one_pixel, pgd, square, universal\n",
        id="unknown-attack",
    ),
    pytest.param(
        scenario(attacks=attack("{name: deepfool, eps: 0.1}")),
        None,
        "{path}: attacks[0].eps: deepfool is a minimal-perturbation attack and takes no eps\n",
        id="eps-on-minimal-attack",
    ),
    pytest.param(
        scenario(attacks=attack("{name: pgd}")),
        None,
        "{path}: attacks[0].eps: required: pgd is bounded by an eps-ball\n",
        id="missing-eps",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, steps: 3}")),
        None,
        "{path}: attacks[0].steps: fgsm takes no 'steps' (it takes: eot_samples)\n",
        id="param-not-taken",
    ),
    pytest.param(
        scenario(attacks=attack("{name: universal, eps: 0.1, attacker: pgd}")),
        None,
        "{path}: attacks[0].attacker: must be one of fgsm, deepfool, got 'pgd'\n",
        id="bad-choice",
    ),
    pytest.param(
        scenario(attacks=attack("{name: one_pixel, pixels: 0}")),
        None,
        "{path}: attacks[0].pixels: must be >= 1, got 0\n",
        id="zero-pixels",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1}\n  - {name: fgsm, eps: 0.2}")),
        None,
        "{path}: attacks[1].id: 'fgsm' is used twice; give each attack its own id\n",
        id="duplicate-attack-id",
    ),
    # ------------------------------------------------------------------ schema, attacks[i].target
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, target: {clas: 3}}")),
        None,
        "{path}: attacks[0].target: unknown target mode 'clas'. Did you mean 'class'? "
        "Available: class, least_likely\n",
        id="target-typo",
    ),
    pytest.param(
        scenario(attacks=attack("{name: deepfool, target: {class: 2}}")),
        None,
        "{path}: attacks[0].target: deepfool cannot be run with target class (it supports: untargeted)\n",
        id="targeted-deepfool",
    ),
    pytest.param(
        scenario(
            model=TINY, data=NPZ, attacks=attack("{name: fgsm, eps: 0.1, target: {class: 12}}")
        ),
        _both(_torchscript(), _npz()),
        "{path}: attacks[0].target.class: must be below the model's 10 classes, got 12\n",
        id="target-class-beyond-model",
    ),
    # ------------------------------------------------------------------ attack x backend x norm x target
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, backends: [folbox]}")),
        None,
        "{path}: attacks[0].backends: unknown backend 'folbox'. Did you mean 'foolbox'? "
        "Available: adv-lib, art, foolbox, secml-torch, torchattacks, unified-adv\n",
        id="unknown-backend",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, backends: [foolbox], target: {class: 3}}")),
        None,
        "{path}: attacks[0].backends: backend 'foolbox' cannot run fgsm with target class "
        "(it supports: untargeted)\n",
        id="foolbox-fgsm-targeted",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, norm: l2, backends: [torchattacks]}")),
        None,
        "{path}: attacks[0].backends: backend 'torchattacks' cannot run fgsm with norm l2 "
        "(it supports: linf)\n",
        id="torchattacks-fgsm-l2",
    ),
    pytest.param(
        scenario(attacks=attack("{name: cw_l2, binary_search_steps: 3, backends: [torchattacks]}")),
        None,
        "{path}: attacks[0].backends: backend 'torchattacks' runs cw_l2 only with binary_search_steps=1 (got binary_search_steps=3)\n",
        id="torchattacks-cw-binary-search",
    ),
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, random_starts: 3, backends: [foolbox]}")),
        None,
        "{path}: attacks[0].backends: backend 'foolbox' can do at most 1 random start(s) for pgd, got random_starts: 3\n",
        id="too-many-random-starts",
    ),
    pytest.param(
        scenario(attacks=attack("{name: bim, norm: l2, eps: 1}")),
        None,
        "{path}: attacks[0].norm: bim has no norm 'l2' (available: linf)\n",
        id="norm-not-available",
    ),
    pytest.param(
        scenario(attacks=attack("{name: square, eps: 0.1, backends: [foolbox]}")),
        None,
        "{path}: attacks[0].backends: backend 'foolbox' has no square (backends with square: art, torchattacks)\n",
        id="backend-lacks-attack",
    ),
    pytest.param(
        scenario(
            model="model: {builtin: digits-cnn, input_range: [-1, 1]}",
            attacks=attack("{name: fgsm, eps: 0.1, backends: [torchattacks]}"),
        ),
        None,
        "{path}: attacks[0].backends: backend 'torchattacks' needs model.input_range [0, 1] "
        "(it clamps to [0, 1] internally); got [-1, 1]: move the scaling into the model's "
        "mean/std\n",
        id="torchattacks-input-range",
    ),
    # ------------------------------------------------------------------ schema, other sections
    pytest.param(
        scenario(attacks="analyses:\n  - {name: morhp}"),
        None,
        "{path}: analyses[0].name: unknown analysis 'morhp'. Did you mean 'morph'? "
        "Available: confidence_buckets, morph, pixel_flip_study, targeted_walk, transfer, uap\n",
        id="unknown-analysis",
    ),
    pytest.param(
        scenario(attacks="analyses:\n  - {name: morph, step_size: 0.1}"),
        None,
        "{path}: analyses[0].step_size: morph takes no 'step_size' "
        "(it takes: images_per_class, steps, pairs, seed, select)\n",
        id="analysis-field-not-taken",
    ),
    pytest.param(
        scenario(extra="defences:\n  - {name: jpeg}"),
        None,
        "{path}: defences[0].name: unknown defence 'jpeg'. Available: autoencoder, chain, "
        "feature_squeezing, gaussian_augmentation, jpeg_compression, randomization, "
        "spatial_smoothing\n",
        id="unknown-defence",
    ),
    pytest.param(
        scenario(extra="defences:\n  - {name: jpeg_compression, quality: 0}"),
        None,
        "{path}: defences[0].quality: must be >= 1 (got 0)\n",
        id="defence-out-of-range",
    ),
    pytest.param(
        scenario(extra="report: {triptychs: 50}"),
        None,
        "{path}: report.triptychs: must be <= 20 (got 50)\n",
        id="report-triptychs-too-many",
    ),
    pytest.param(
        scenario(extra="crosscheck: {alpha: 1.5}"),
        None,
        "{path}: crosscheck.alpha: input should be less than 1 (got 1.5)\n",
        id="crosscheck-alpha-out-of-range",
    ),
    pytest.param(
        scenario(extra="execution: {shard_size: 0}"),
        None,
        "{path}: execution.shard_size: must be > 0 (got 0)\n",
        id="execution-shard-size-zero",
    ),
    # ------------------------------------------------------------------ files: missing, unreadable
    pytest.param(
        scenario(model="model: {torchscript: missing.pt}"),
        None,
        "{path}: model.torchscript: file not found: {dir}/missing.pt\n",
        id="missing-model-file",
    ),
    pytest.param(
        scenario(model=TINY, data="data: {npz: missing.npz}"),
        _torchscript(),
        "{path}: data.npz: file not found: {dir}/missing.npz\n",
        id="missing-data-file",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _folder("data.npz")),
        "{path}: data.npz: is a folder, expected a file: {dir}/data.npz\n",
        id="data-file-is-a-folder",
    ),
    pytest.param(
        scenario(model=TINY),
        _symlink("model.pt", "gone.pt"),
        "{path}: model.torchscript: broken symbolic link: {dir}/model.pt points to gone.pt\n",
        id="model-file-broken-symlink",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _unreadable("data.npz")),
        "{path}: data.npz: cannot read {dir}/data.npz: " + _UNREADABLE_WHY + "\n",
        id="data-file-unreadable",
    ),
    pytest.param(
        scenario(model=TINY, data="data: {image_folder: imgs, image_size: [8, 8]}"),
        _both(_torchscript(), _write("imgs", b"not a folder")),
        "{path}: data.image_folder: is a file, expected a folder: {dir}/imgs\n",
        id="image-folder-is-a-file",
    ),
    # ------------------------------------------------------------------ model files
    pytest.param(
        scenario(model=TINY),
        _write("model.pt", b"this is not a TorchScript archive"),
        "{path}: model.torchscript: not a TorchScript file "
        "(PytorchStreamReader failed reading zip archive: failed finding central directory)\n",
        id="torchscript-garbage",
    ),
    pytest.param(
        scenario(model=TINY),
        _saved("model.pt", {"weight": torch.zeros(2)}),
        "{path}: model.torchscript: is a torch.save file, not TorchScript (save with "
        "torch.jit.script(model).save(FILE)); a state dict goes under factory + weights, "
        "a pickled full model under pickle with trust_model: true\n",
        id="torchscript-is-torch-save",
    ),
    pytest.param(
        scenario(model=FACTORY),
        _factory_with_weights([torch.zeros(2), torch.ones(3)]),
        "{path}: model.weights: not a state dict of tensors (got list)\n",
        id="weights-list-of-tensors",
    ),
    pytest.param(
        scenario(model=FACTORY),
        _factory_with_weights(7),
        "{path}: model.weights: not a state dict of tensors (got int)\n",
        id="weights-plain-int",
    ),
    pytest.param(
        scenario(model=FACTORY),
        _factory_with_weights({"0.weight": torch.zeros(3, 64), "0.bias": torch.zeros(3)}),
        "{path}: model.weights: does not fit the model: Error(s) in loading state_dict for "
        'Sequential: Missing key(s) in state_dict: "1.weight", "1.bias". '
        'Unexpected key(s) in state_dict: "0.weight", "0.bias".\n',
        id="weights-for-another-network",
    ),
    pytest.param(
        scenario(model='model: {factory: "mynet:build"}'),
        _mynet("def build(:\n    pass\n"),
        "{path}: model.factory: importing 'mynet' raised SyntaxError: invalid syntax (mynet.py, line 4)\n",
        id="factory-module-does-not-parse",
    ),
    # ------------------------------------------------------------------ pickles and trust
    pytest.param(
        scenario(model="model: {pickle: model.pkl}"),
        _saved("model.pkl", _tiny_net()),
        "{path}: model.pickle: loading a pickled model executes code from model.pkl; add "
        "trust_model: true only if you trust that file, or give a state dict "
        "(factory + weights) or a TorchScript file instead\n",
        id="pickle-without-trust",
    ),
    pytest.param(
        scenario(model="model: {pickle: model.pkl, trust_model: false}"),
        _saved("model.pkl", _tiny_net()),
        "{path}: model.pickle: loading a pickled model executes code from model.pkl; add "
        "trust_model: true only if you trust that file, or give a state dict "
        "(factory + weights) or a TorchScript file instead\n",
        id="pickle-trust-false",
    ),
    pytest.param(
        scenario(model="model: {pickle: model.pkl, trust_model: true}"),
        None,
        "{path}: model.pickle: file not found: {dir}/model.pkl\n",
        id="trusted-pickle-missing",
    ),
    pytest.param(
        scenario(model='model: {pickle: model.pkl, trust_model: "true"}'),
        None,
        "{path}: model.trust_model: input should be a valid boolean (got 'true')\n",
        id="trust-model-as-string",
    ),
    pytest.param(
        scenario(model="model: {torchscript: model.pt, trust_model: true}"),
        None,
        "{path}: model.trust_model: only used with pickle\n",
        id="trust-model-without-pickle",
    ),
    pytest.param(
        scenario(model=FACTORY),
        _factory_with_weights(_tiny_net()),
        "{path}: model.weights: is a pickled full model or object (it names "
        "torch.nn.modules.container.Sequential), not a state dict: loading it would execute "
        "code from the file; save model.state_dict() instead, or load the whole model with "
        "pickle: FILE and trust_model: true\n",
        id="weights-is-a-pickled-model",
    ),
    pytest.param(
        scenario(model="model: {pickle: model.pkl, trust_model: true}"),
        _saved("model.pkl", _tiny_net().state_dict()),
        "{path}: model.pickle: holds a state dict, not a pickled model: give it as "
        "weights: FILE with a factory that builds the network (no trust needed)\n",
        id="pickle-holds-a-state-dict",
    ),
    # ------------------------------------------------------------------ model outputs
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(classes=3), _npz()),
        "{path}: data: labels must lie in [0, 2] for this model; found 3\n",
        id="model-has-fewer-classes-than-labels",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(classes=3), _npz(n=3, class_names=np.array(list("abcdefghij")))),
        "{path}: data.npz: class_names has 10 names, but the model outputs 3 classes\n",
        id="class-names-vs-model-classes",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(classes=1), _npz()),
        "{path}: model: expected logits of shape (N, classes >= 2), got (2, 1)\n",
        id="model-one-output",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(nan=True), _npz()),
        "{path}: model: produces NaN or infinite outputs on the data\n",
        id="model-outputs-nan",
    ),
    pytest.param(
        scenario(model='model: {factory: "mynet:build"}', data=NPZ),
        _both(
            _mynet(
                "class Net(torch.nn.Module):\n"
                "    def forward(self, x):\n"
                "        raise ValueError('expects RGB images')\n\n\n"
                "def build():\n"
                "    return Net()\n"
            ),
            _npz(),
        ),
        "{path}: model: forward pass on images of shape (1, 8, 8) raised ValueError: "
        "expects RGB images\n",
        id="model-forward-raises",
    ),
    pytest.param(
        scenario(model='model: {factory: "mynet:build"}', data=NPZ),
        _both(
            _mynet(
                "class Net(torch.nn.Module):\n"
                "    def forward(self, x):\n"
                "        return {'logits': x.flatten(1)}\n\n\n"
                "def build():\n"
                "    return Net()\n"
            ),
            _npz(),
        ),
        "{path}: model: returns a dict, expected a tensor of logits (N, classes)\n",
        id="model-returns-a-dict",
    ),
    pytest.param(
        scenario(
            model="model: {torchscript: model.pt, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}",
            data=NPZ,
        ),
        _both(_torchscript(), _npz()),
        "{path}: model.mean: 3 values (and as many std), but the images have 1 channel(s)\n",
        id="mean-std-channels-mismatch",
    ),
    # ------------------------------------------------------------------ data: shape
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.zeros((4, 16, 16), np.float32), y=np.zeros(4, np.int64))),
        "{path}: data: images of shape (1, 16, 16) do not fit the model "
        "(mat1 and mat2 shapes cannot be multiplied (2x256 and 64x10))\n",
        id="image-size-mismatch",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))),
        "{path}: data.npz: x must be (N, H, W) or (N, C, H, W), got shape (4, 64)\n",
        id="npz-flat-images",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.zeros((4, 8, 8, 3), np.float32), y=np.zeros(4, np.int64))),
        "{path}: data.npz: x of shape (4, 8, 8, 3) looks channels-last (N, H, W, C); "
        "give (N, C, H, W), e.g. x.transpose(0, 3, 1, 2) or x.permute(0, 3, 1, 2)\n",
        id="npz-channels-last",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.zeros(7, np.int64))),
        "{path}: data.npz: y must be one label per image (10), got shape (7,)\n",
        id="npz-labels-count-mismatch",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _write("data.npz", b"")),
        "{path}: data.npz: is empty (0 bytes): {dir}/data.npz\n",
        id="npz-empty-file",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _write("data.npz", pickle.dumps({"x": [0.5], "y": [0]}))),
        "{path}: data.npz: is a pickle, not an .npz file: pickles are never loaded "
        "(they run code)\n",
        id="npz-is-a-pickle",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), lambda d: np.savez(d / "data.npz", images=np.zeros((2, 8, 8)))),
        "{path}: data.npz: needs arrays 'x' and 'y'; missing x, y (has: images)\n",
        id="npz-without-x-and-y",
    ),
    # ------------------------------------------------------------------ data: range
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.full((10, 8, 8), 255.0, np.float32))),
        "{path}: data.npz: x values span [255, 255], outside model.input_range [0, 1]: "
        "rescale x, or set model.input_range to what the model takes\n",
        id="npz-outside-input-range",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.full((10, 8, 8), np.nan, np.float32))),
        "{path}: data.npz: x contains NaN or infinite values\n",
        id="npz-nan-pixels",
    ),
    # ------------------------------------------------------------------ data: dtype
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(x=np.full((10, 8, 8), "a"))),
        "{path}: data.npz: x must be uint8 or floating point, got strings (<U1)\n",
        id="npz-string-images",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=_object_array())),
        "{path}: data.npz: array 'y' holds Python objects (pickled), which are never loaded: "
        "save numeric arrays (x float32 or uint8, y integers)\n",
        id="npz-object-array",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.arange(10) / 2)),
        "{path}: data.npz: y must hold integer class labels; y[1] is 0.5 (float64 with fractions)\n",
        id="npz-fractional-labels",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.array([str(i) for i in range(10)]))),
        "{path}: data.npz: y must hold integer class labels, got strings (<U1)\n",
        id="npz-string-labels",
    ),
    # ------------------------------------------------------------------ data: labels
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.r_[0, 1, 2, 12, 4, 5, 6, 7, 8, 9])),
        "{path}: data: labels must lie in [0, 9] for this model; found 12\n",
        id="label-outside-classes",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.r_[0, -1, 2, 3, 4, 5, 6, 7, 8, 9])),
        "{path}: data: labels must lie in [0, 9] for this model; found -1\n",
        id="negative-label",
    ),
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(y=np.arange(10) % 9 + 1)),  # never class 0, the prediction
        "{path}: data.only_correct: no correctly classified samples left to attack (0 of 10)\n",
        id="nothing-left-after-only-correct",
    ),
    pytest.param(
        scenario(
            model=TINY,
            data=NPZ,
            attacks=attack("{name: fgsm, eps: 0.1, limit: 1, target: {class: 0}}"),
        ),
        _both(_torchscript(), _npz()),
        "{path}: attacks[0]: no samples left to attack after data.only_correct, "
        "target class 0, limit 1\n",
        id="nothing-left-for-an-attack",
    ),
    # ------------------------------------------------------------------ data: empty
    pytest.param(
        scenario(model=TINY, data=NPZ),
        _both(_torchscript(), _npz(n=0)),
        "{path}: data.npz: holds no samples (x has shape (0, 8, 8))\n",
        id="npz-no-samples",
    ),
    pytest.param(
        scenario(model=TINY, data="data: {image_folder: imgs, image_size: [8, 8]}"),
        _both(_torchscript(), _image_folder()),
        "{path}: data.image_folder: no class folders in {dir}/imgs "
        "(expected one subfolder of images per class)\n",
        id="image-folder-empty",
    ),
    pytest.param(
        scenario(model=TINY, data="data: {image_folder: imgs, image_size: [8, 8]}"),
        _both(_torchscript(), _image_folder("cat", "dog", images=False)),
        "{path}: data.image_folder: class folder(s) cat, dog in {dir}/imgs hold no images "
        "(.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp)\n",
        id="image-folder-class-without-images",
    ),
    # ------------------------------------------------------------------ what analyses load later
    pytest.param(
        scenario(model=TINY, data=NPZ, attacks="analyses:\n  - {name: uap, targets: [12]}"),
        _both(_torchscript(), _npz()),
        "{path}: analyses[0].targets: must be below the model's 10 classes, got 12\n",
        id="uap-target-beyond-classes",
    ),
    pytest.param(
        scenario(
            model=TINY,
            data=NPZ,
            attacks="analyses:\n  - {name: transfer, eps: 0.1, models: "
            "[{id: a, torchscript: model.pt}, {id: b, torchscript: missing.pt}]}",
        ),
        _both(_torchscript(), _npz()),
        "{path}: analyses[0].models[1].torchscript: file not found: {dir}/missing.pt\n",
        id="transfer-model-missing",
    ),
    pytest.param(
        scenario(model="model: {torchscript: model.pt, checkpoints: [early.pt]}", data=NPZ),
        _both(_torchscript(), _torchscript("early.pt", classes=3), _npz()),
        "{path}: model.checkpoints[0]: has 3 classes, but the model has 10\n",
        id="checkpoint-with-other-classes",
    ),
]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _forget_factory_module() -> Iterator[None]:
    """Each test's mynet.py lives in its own folder: do not reuse another test's import."""
    sys.modules.pop("mynet", None)
    yield
    sys.modules.pop("mynet", None)


def _materialise(
    text: str | None,
    setup: Callable[[Path], None] | None,
    tmp_path: Path,
    write_scenario: Callable[..., Path],
) -> Path:
    path = tmp_path / "scenario.yaml" if text is None else write_scenario(text)
    if setup is not None:
        setup(tmp_path)
    return path


def _expected(template: str, path: Path) -> str:
    return template.replace("{path}", str(path)).replace("{dir}", str(path.parent.resolve()))


def _assert_nothing_written(out_dir: Path) -> None:
    for name in ("index.html", "summary.json", "samples.parquet", "samples.csv"):
        assert not (out_dir / name).exists(), f"a failed run left {name}"
    assert not out_dir.exists(), "invalid input must not leave an output folder behind"


# ---------------------------------------------------------------------------- tests


def test_the_corpus_is_large_and_every_case_distinct() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 45
    assert len(set(ids)) == len(ids)
    inputs = [(c.values[0], c.id) for c in CASES if c.values[1] is None]
    assert len({text for text, _ in inputs}) == len(inputs), "two cases share a scenario"


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("text", "setup", "expected"), CASES)
def test_invalid_input_is_one_line_per_problem_and_exit_2(
    command: str,
    text: str | None,
    setup: Callable[[Path], None] | None,
    expected: str,
    cli: Callable[..., Any],
    write_scenario: Callable[..., Path],
    tmp_path: Path,
) -> None:
    path = _materialise(text, setup, tmp_path, write_scenario)
    out_dir = tmp_path / "out"
    args = ["validate", path] if command == "validate" else ["run", path, "--out", out_dir]

    result = cli(*args)
    # A setup warning (e.g. clean accuracy near chance on these tiny cases) may come first:
    # it names its code and is not an error; the error is the one line that follows.
    err = _without_warnings(result.err, path)

    assert (result.code, err) == (2, _expected(expected, path))
    assert err.count("\n") == 1
    assert "Traceback" not in result.out
    _assert_nothing_written(out_dir)


def _without_warnings(err: str, path: Path) -> str:
    """stderr without the setup warnings (``FILE: warning (code): ...``) printed before it."""
    prefix = f"{path}: warning ("
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith(prefix))


_BY_ID = {c.id: c for c in CASES}


@pytest.mark.parametrize(
    "case", ["missing-model-file", "torchscript-garbage", "pickle-without-trust"]
)
def test_console_script_reports_without_traceback(
    case: str, write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    """The installed command, in a fresh process: no warning or traceback around the line."""
    exe = Path(sys.executable).with_name("unified-adv")
    assert exe.exists(), f"console script not installed next to {sys.executable}"
    text, setup, expected = _BY_ID[case].values
    path = _materialise(text, setup, tmp_path, write_scenario)
    out_dir = tmp_path / "out"

    proc = subprocess.run(
        [str(exe), "run", str(path), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert (proc.returncode, proc.stderr) == (2, _expected(expected, path))
    assert "Traceback" not in proc.stdout
    _assert_nothing_written(out_dir)


# ---------------------------------------------------------------------------- trusted pickles


def test_a_pickle_runs_code_only_when_trusted(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    """The same payload as weights, as an untrusted pickle and as a trusted one: only the
    last unpickles it (and so runs its code)."""
    marker = tmp_path / "code-ran"
    torch.save(_RunsCode(marker), tmp_path / "payload.pt")
    _mynet(_LINEAR_FACTORY)(tmp_path)
    _npz()(tmp_path)

    as_weights = write_scenario(
        scenario(model='model: {factory: "mynet:build", weights: payload.pt}', data=NPZ), "w.yaml"
    )
    result = cli("validate", as_weights)
    assert result.code == 2 and result.err.startswith(f"{as_weights}: model.weights: ")
    assert "not a state dict: loading it would execute code" in result.err
    assert not marker.exists()

    untrusted = write_scenario(scenario(model="model: {pickle: payload.pt}", data=NPZ), "u.yaml")
    result = cli("validate", untrusted)
    assert result.code == 2 and "executes code from payload.pt" in result.err
    assert not marker.exists()

    trusted = write_scenario(
        scenario(model="model: {pickle: payload.pt, trust_model: true}", data=NPZ), "t.yaml"
    )
    result = cli("validate", trusted)
    assert (result.code, result.err) == (
        2,
        f"{trusted}: model.pickle: holds a NoneType, expected a pickled torch.nn.Module\n",
    )
    assert marker.is_dir(), "a trusted pickle is unpickled with weights_only=False"


def test_state_dicts_and_checkpoints_load_with_weights_only(
    monkeypatch: pytest.MonkeyPatch, write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    import unified_adv
    from unified_adv.run.prepare import prepare

    calls: list[object] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    _mynet(_LINEAR_FACTORY)(tmp_path)
    torch.save(_tiny_net().state_dict(), tmp_path / "weights.pt")
    torch.save(_tiny_net().state_dict(), tmp_path / "early.pt")
    _npz()(tmp_path)
    path = write_scenario(
        scenario(
            model='model: {factory: "mynet:build", weights: weights.pt, checkpoints: [early.pt]}',
            data=NPZ,
        )
    )

    prepare(unified_adv.load_scenario(path))

    assert calls == [True, True]


def test_a_trusted_pickle_runs_and_the_report_says_code_ran(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    torch.save(_tiny_net(), tmp_path / "model.pkl")
    _npz()(tmp_path)
    path = write_scenario(
        scenario(
            model="model: {pickle: model.pkl, trust_model: true}",
            data=NPZ,
            attacks=attack("{name: fgsm, eps: 0.1, backends: [torchattacks]}"),
            extra="report: {triptychs: 0}",
        )
    )
    out_dir = tmp_path / "out"

    result = cli("run", path, "--out", out_dir)

    assert (result.code, _without_warnings(result.err, path)) == (0, "")
    model = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))["model"]
    assert model["trusted_code"] is True
    assert model["description"] == "trusted pickle (ran code from model.pkl)"
    assert model["code_from"] == str((tmp_path / "model.pkl").resolve())
    html = (out_dir / "index.html").read_text(encoding="utf-8")
    model_row = html[html.index("<th>Model</th>") :].split("</tr>", 1)[0]
    assert "trusted pickle (ran code from model.pkl)" in model_row


def test_other_models_record_that_no_code_ran(
    write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    import unified_adv
    from unified_adv.sources.load import load_model

    _torchscript()(tmp_path)
    loaded = load_model(unified_adv.load_scenario(write_scenario(scenario(model=TINY))))
    assert loaded.details["trusted_code"] is False
    assert loaded.description == "TorchScript model.pt"


# ---------------------------------------------------------------------------- the output folder


def _out_file(tmp: Path) -> str:
    (tmp / "taken").write_text("a file", encoding="utf-8")
    return str(tmp / "taken")


def _out_under_file(tmp: Path) -> str:
    (tmp / "taken").write_text("a file", encoding="utf-8")
    return str(tmp / "taken" / "out")


def _out_not_a_run(tmp: Path) -> str:
    (tmp / "mine").mkdir()
    for name in ("index.html", "summary.json", "samples.csv"):
        (tmp / "mine" / name).write_text("the user's own", encoding="utf-8")
    return str(tmp / "mine")


def _out_broken_link(tmp: Path) -> str:
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    return str(tmp / "dangling")


def _out_read_only(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A folder this process may not write into: chmod 555, which root ignores, so as root
    write access is refused at the OS boundary (os.access) instead."""
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if IS_ROOT:
        real = os.access

        def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
            if Path(path) == ro and mode & os.W_OK:
                return False
            return real(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    return str(ro / "out")


def _out_no_space(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """1 MiB free, as the OS reports it (shutil.disk_usage is statvfs)."""
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**20))
    return str(tmp / "out")


# (make the --out value, expected stderr with {out} for it and {tmp} for the test's folder)
OUT_CASES = [
    pytest.param(
        lambda tmp, mp: "",
        "--out: is empty: give a folder, or leave --out out for reports/<name>/\n",
        id="out-empty-string",
    ),
    pytest.param(
        lambda tmp, mp: _out_file(tmp),
        "{out}: --out: is an existing file, expected a folder\n",
        id="out-is-a-file",
    ),
    pytest.param(
        lambda tmp, mp: _out_under_file(tmp),
        "{out}: --out: cannot create the folder: {tmp}/taken is a file\n",
        id="out-under-a-file",
    ),
    pytest.param(
        lambda tmp, mp: _out_broken_link(tmp),
        "{out}: --out: is a broken symbolic link (to {tmp}/nowhere)\n",
        id="out-broken-symlink",
    ),
    pytest.param(
        lambda tmp, mp: _out_not_a_run(tmp),
        "{out}: --out: is a non-empty folder that is not an earlier unified-adv run; choose "
        "another folder, or pass --force to write into it\n",
        id="out-non-empty-not-a-run",
    ),
    pytest.param(
        _out_read_only,
        "{out}: --out: cannot write into {tmp}/ro (permission denied)\n",
        id="out-read-only",
    ),
    pytest.param(
        _out_no_space,
        "{out}: --out: only 1.0 MiB free on the disk of {tmp}; a run needs at least 64 MiB\n",
        id="out-no-free-space",
    ),
]


@pytest.mark.parametrize(("make_out", "expected"), OUT_CASES)
def test_a_bad_output_folder_is_refused_before_any_work(
    make_out: Callable[[Path, pytest.MonkeyPatch], str],
    expected: str,
    cli: Callable[..., Any],
    write_scenario: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused before the model loads: the scenario's model file is missing, and the line
    is about the folder, not the model. Nothing is written or changed."""
    path = write_scenario(scenario(model=TINY))
    out = make_out(tmp_path, monkeypatch)
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    result = cli("run", path, "--out", out)

    want = expected.replace("{out}", out).replace("{tmp}", str(tmp_path))
    assert (result.code, result.err) == (2, want)
    assert "Traceback" not in result.out
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_the_corpus_covers_every_class_of_bad_input() -> None:
    """Hostile YAML and files, numbers and sizes, and the output folder each have cases."""
    ids = {c.id for c in CASES} | {c.id for c in OUT_CASES}
    for prefix in ("yaml-", "scenario-", "eps-", "out-"):
        assert sum(i.startswith(prefix) for i in ids) >= 3, prefix
    assert len(CASES) + len(OUT_CASES) >= 127
