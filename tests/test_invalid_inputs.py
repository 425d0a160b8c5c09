"""Invalid input: exit code 2 and exactly one ``FILE: field.path: message`` line per problem.

Every case runs through ``validate`` and through ``run --out DIR`` (the same checks); the
expected stderr is the whole of stderr, with ``{path}`` standing for the scenario file and
``{dir}`` for its (resolved) folder.
"""

from __future__ import annotations

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


# ---------------------------------------------------------------------------- fixture files


def _digits(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Held-out digits, scaled to [0, 1] exactly as ``data: {builtin: digits}`` serves them."""
    from unified_adv.data import digits_split

    _, _, x, y, _, _ = digits_split()
    return x[:n, 0].copy(), y[:n].copy()


def _factory_with_weights(blob: object) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / "mynet.py").write_text(
            "import torch\n\n\n"
            "def build():\n"
            "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n",
            encoding="utf-8",
        )
        torch.save(blob, folder / "weights.pt")

    return setup


def _npz_16x16(folder: Path) -> None:
    np.savez(folder / "data.npz", x=np.zeros((4, 16, 16), np.float32), y=np.zeros(4, np.int64))


def _npz_all_labels_wrong(folder: Path) -> None:
    x, y = _digits()
    np.savez(folder / "data.npz", x=x, y=(y + 1) % 10)  # every label is some other digit


def _npz_label_12(folder: Path) -> None:
    x, y = _digits()
    y[3] = 12
    np.savez(folder / "data.npz", x=x, y=y)


FACTORY = 'model: {factory: "mynet:build", weights: weights.pt}'
NPZ = "data: {npz: data.npz}"

# (scenario text or None for "no file", setup(folder) or None, expected stderr)
CASES = [
    pytest.param(
        scenario(attacks=attack("{name: pgd, eps: 0.1, stpes: 5}")),
        None,
        "{path}: attacks[0].stpes: unknown field 'stpes'. Did you mean 'steps'? "
        "Available: attacker, backends, binary_search_steps, c, candidates, confidence, decay, delta, eot_samples, eps, id, init_evals, limit, lr, max_evals, max_iter, name, norm, overshoot, p_init, pixels, popsize, queries, random_starts, restarts, source_step, spherical_step, std, step_size, steps, target\n",
        id="typo-key",
    ),
    pytest.param(
        scenario(seed='seed: "abc"'),
        None,
        "{path}: seed: input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')\n",
        id="wrong-type-seed",
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
        "Available: bim, boundary, cw_l2, deepfool, fgsm, gaussian_noise, hopskipjump, lbfgs, mifgsm, one_pixel, pgd, square, universal\n",
        id="unknown-attack",
    ),
    pytest.param(
        scenario(attacks=attack("{name: fgsm, eps: 0.1, backends: [folbox]}")),
        None,
        "{path}: attacks[0].backends: unknown backend 'folbox'. Did you mean 'foolbox'? "
        "Available: art, foolbox, torchattacks, unified-adv\n",
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
        scenario(model="model: {torchscript: missing.pt}"),
        None,
        "{path}: model.torchscript: file not found: {dir}/missing.pt\n",
        id="missing-model-file",
    ),
    pytest.param(
        scenario(data="data: {npz: missing.npz}"),
        None,
        "{path}: data.npz: file not found: {dir}/missing.npz\n",
        id="missing-data-file",
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
        scenario(data=NPZ),
        _npz_16x16,
        "{path}: data: images of shape (1, 16, 16) do not fit the model "
        "(mat1 and mat2 shapes cannot be multiplied (2x2048 and 512x64))\n",
        id="image-size-mismatch",
    ),
    pytest.param(
        scenario(data=NPZ),
        _npz_all_labels_wrong,
        "{path}: data.only_correct: no correctly classified samples left to attack (0 of 60)\n",
        id="nothing-left-after-only-correct",
    ),
    pytest.param(
        scenario(data=NPZ),
        _npz_label_12,
        "{path}: data: labels must lie in [0, 9] for this model; found 12\n",
        id="label-outside-classes",
    ),
    pytest.param(
        "name: bad\nmodel: {builtin: digits-cnn\ndata: {builtin: digits}\n",
        None,
        "{path}: YAML syntax error at line 3, column 5: expected ',' or '}', but got ':'\n",
        id="yaml-syntax-error",
    ),
    pytest.param(
        "- name: bad\n- seed: 0\n",
        None,
        "{path}: top level must be a mapping with name, model, data, attacks; got a list\n",
        id="top-level-list",
    ),
    pytest.param(
        "",
        None,
        "{path}: top level must be a mapping with name, model, data, attacks; got an empty file\n",
        id="empty-file",
    ),
    pytest.param(
        scenario(again="seed: 1"),  # line 7 repeats line 2's key
        None,
        "{path}: YAML syntax error at line 7, column 1: duplicate key 'seed' "
        "(first given at line 2)\n",
        id="duplicate-key",
    ),
    pytest.param(
        scenario(attacks=None),
        None,
        "{path}: attacks: give at least one attack (or an analysis under analyses)\n",
        id="missing-attacks",
    ),
    pytest.param(
        scenario(data="data: {builtin: digits, npz: data.npz}"),
        None,
        "{path}: data: give exactly one of builtin, npz, image_folder (got builtin, npz)\n",
        id="builtin-and-npz",
    ),
    pytest.param(
        None,
        None,
        "{path}: scenario file not found\n",
        id="no-such-scenario-file",
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
        scenario(attacks=attack("{name: cw_l2, binary_search_steps: 3, backends: [torchattacks]}")),
        None,
        "{path}: attacks[0].backends: backend 'torchattacks' runs cw_l2 only with binary_search_steps=1 (got binary_search_steps=3)\n",
        id="torchattacks-cw-binary-search",
    ),
    pytest.param(
        scenario(attacks=attack("{name: deepfool, target: {class: 2}}")),
        None,
        "{path}: attacks[0].target: deepfool cannot be run with target class (it supports: untargeted)\n",
        id="targeted-deepfool",
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
        "(it takes: images_per_class, steps, pairs, seed)\n",
        id="analysis-field-not-taken",
    ),
    pytest.param(
        scenario(model="model: {builtin: digits-cnn, checkpoints: [7]}"),
        None,
        "{path}: model.checkpoints: the builtin digits-cnn has epochs 1, 2, 3, 5, 10, 20, 40; got 7\n",
        id="unknown-checkpoint",
    ),
]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _builtin_model_trained() -> None:
    """Train the builtin CNN up front, so its one-off 'Training ...' note is not in stderr."""
    from unified_adv.models import builtin_digits_cnn

    builtin_digits_cnn()


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


# ---------------------------------------------------------------------------- tests


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

    assert (result.code, result.err) == (2, _expected(expected, path))
    assert "Traceback" not in result.out
    assert not out_dir.exists(), "invalid input must not leave an output folder behind"


def test_console_script_reports_without_traceback(
    write_scenario: Callable[..., Path],
) -> None:
    exe = Path(sys.executable).with_name("unified-adv")
    assert exe.exists(), f"console script not installed next to {sys.executable}"
    path = write_scenario(scenario(model="model: {torchscript: missing.pt}"))

    proc = subprocess.run(
        [str(exe), "validate", str(path)], capture_output=True, text=True, timeout=300
    )

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    expected = "{path}: model.torchscript: file not found: {dir}/missing.pt\n"
    assert proc.stderr == _expected(expected, path)
