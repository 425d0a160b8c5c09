"""The notebook API: ``unified_adv.run(scenario, model=nn.Module, data=(x, y))`` with
in-memory objects gives what the file-based API gives for the same model and data; every
mistake with the objects is one line naming ``model`` or ``data``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import unified_adv
from unified_adv.api import as_scenario
from unified_adv.errors import InputError
from unified_adv.run.prepare import prepare

ATTACKS = [{"name": "fgsm", "eps": 0.05, "backends": ["art", "torchattacks"]}]
#: torchattacks clamps to [0, 1]: refused for a [0, 255] model, as if the range were written.
ART_ONLY = [{"name": "fgsm", "eps": 0.05, "backends": ["art"]}]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4)
    )


@pytest.fixture(scope="module")
def net_and_data() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A seeded net; labels are its own predictions on half the images, shifted on the
    other half (so clean accuracy is 50 % and only_correct keeps 12 of 24)."""
    net = small_net()
    x = np.random.default_rng(0).random((24, 3, 8, 8), dtype=np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    y[::2] = (y[::2] + 1) % 4
    return net, x, y.astype(np.int64)


@pytest.fixture(scope="module")
def in_memory_run(
    net_and_data: tuple[nn.Module, np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> unified_adv.RunResult:
    net, x, y = net_and_data
    scenario = {"name": "notebook", "attacks": ATTACKS}
    out = tmp_path_factory.mktemp("nb") / "out"
    return unified_adv.run(scenario, out, model=net, data=(x, y), progress=False)


def test_an_in_memory_run_returns_what_a_file_run_returns(
    in_memory_run: unified_adv.RunResult,
    net_and_data: tuple[nn.Module, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    """The same net saved as TorchScript and the same arrays as .npz, run from a file:
    the same per-sample outcomes, the same clean accuracy, both reports written."""
    net, x, y = net_and_data
    torch.jit.script(net).save(str(tmp_path / "net.pt"))
    np.savez(tmp_path / "data.npz", x=x, y=y)
    (tmp_path / "s.yaml").write_text(
        "name: notebook\nmodel: {torchscript: net.pt}\ndata: {npz: data.npz}\nattacks:\n"
        "  - {name: fgsm, eps: 0.05, backends: [art, torchattacks]}\n"
    )
    from_file = unified_adv.run(
        unified_adv.load_scenario(tmp_path / "s.yaml"), tmp_path / "out", progress=False
    )
    mem = in_memory_run
    assert isinstance(mem, unified_adv.RunResult) and not mem.failed
    assert mem.report.is_file() and (mem.out_dir / "summary.json").is_file()
    assert mem.summary["data"]["clean_accuracy"] == pytest.approx(0.5)
    assert mem.summary["model"]["in_memory"] is True
    cols = ["sample", "backend", "adv_pred", "success"]
    keys = ["backend", "sample"]
    left = mem.samples[cols].sort_values(keys).reset_index(drop=True)
    right = from_file.samples[cols].sort_values(keys).reset_index(drop=True)
    assert len(left) == 2 * 12
    assert left.equals(right)


def test_the_callers_module_is_left_as_it_was(
    in_memory_run: unified_adv.RunResult, net_and_data: tuple[nn.Module, np.ndarray, np.ndarray]
) -> None:
    """The run wraps a copy: a notebook can go on training its net."""
    net, _, _ = net_and_data
    assert all(p.requires_grad for p in net.parameters())
    assert net.training  # a fresh module is in training mode; the run's copy went to eval


def test_scenario_as_path_text_or_dict_is_the_same(tmp_path: Path) -> None:
    text = "name: forms\nattacks:\n  - {name: fgsm, eps: 8/255}\n"
    (tmp_path / "s.yaml").write_text(text)
    parsed = yaml_dict = {"name": "forms", "attacks": [{"name": "fgsm", "eps": "8/255"}]}
    forms = [str(tmp_path / "s.yaml"), tmp_path / "s.yaml", text, yaml_dict]
    specs = [as_scenario(f, model=small_net(), data=(np.zeros((1, 3, 8, 8)), [0])) for f in forms]
    assert all(s.attacks == specs[0].attacks for s in specs)
    assert specs[0].attacks[0].eps == (8 / 255,)
    assert parsed["name"] == specs[2].name


def test_input_range_is_read_off_the_data_unless_given() -> None:
    x255 = np.full((2, 3, 8, 8), 200.0, dtype=np.float32)
    data = (x255, np.array([0, 1]))
    net = small_net()
    assert as_scenario(
        {"name": "r", "attacks": ART_ONLY}, model=net, data=data
    ).model.input_range == (0.0, 255.0)
    given = {"name": "r", "attacks": ART_ONLY, "model": {"input_range": [0, 1000]}}
    assert as_scenario(given, model=net, data=data).model.input_range == (0.0, 1000.0)
    # Given but wrong for the data: the data's check says so, naming the field.
    wrong = {"name": "r", "attacks": ATTACKS, "model": {"input_range": [0, 1]}}
    with pytest.raises(InputError) as err:
        prepare(as_scenario(wrong, model=small_net(), data=data), model=small_net(), data=data)
    assert str(err.value) == (
        "<scenario>: data: x values span [200, 200], outside model.input_range [0, 1]: "
        "rescale x, or set model.input_range to what the model takes"
    )


def _error(**kwargs: Any) -> str:
    scenario = kwargs.pop("scenario", {"name": "e", "attacks": ATTACKS})
    with pytest.raises(InputError) as err:
        unified_adv.run(scenario, kwargs.pop("out"), progress=False, **kwargs)
    return str(err.value)


X = np.random.default_rng(1).random((4, 3, 8, 8), dtype=np.float32)
Y = np.array([0, 1, 2, 3])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"model": "net.pt", "data": (X, Y)},
            "<scenario>: model: expected a torch.nn.Module (model=), got str",
        ),
        (
            {"model": small_net, "data": (X.transpose(0, 2, 3, 1), Y)},
            "<scenario>: data: x of shape (4, 8, 8, 3) looks channels-last (N, H, W, C); give "
            "(N, C, H, W), e.g. x.transpose(0, 3, 1, 2) or x.permute(0, 3, 1, 2)",
        ),
        (
            {"model": small_net, "data": (X, Y[:3])},
            "<scenario>: data: y must be one integer label per image (4), got shape (3,)",
        ),
        (
            {"model": small_net, "data": X},
            "<scenario>: data: expected (x, y), (x, y, class_names) or a mapping with x and y; "
            "got ndarray",
        ),
        (
            {"model": small_net, "data": (X, Y, ["a", "b"])},
            "<scenario>: data: class_names has 2 names, but the model outputs 4 classes",
        ),
        (
            {"model": small_net, "data": (X, Y + 4)},
            "<scenario>: data: labels must lie in [0, 3] for this model; found 4",
        ),
        (
            {
                "model": small_net,
                "data": (X, Y),
                "scenario": {"name": "e", "model": {"torchscript": "net.pt"}},
            },
            "<scenario>: model: the model is given in memory (model=); drop torchscript",
        ),
        (
            {"model": small_net, "data": (X, Y), "workers": 2},
            "<scenario>: execution.executor: a model or data given in memory (model=, data=) "
            "runs with the local executor only: a Dask worker rebuilds the scenario from its text",
        ),
    ],
    ids=[
        "not-a-module",
        "channels-last",
        "label-count",
        "bare-array",
        "class-names",
        "label-range",
        "two-models",
        "dask",
    ],  # fmt: skip
)
def test_in_memory_mistakes_are_one_line(
    kwargs: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    if kwargs["model"] is small_net:
        kwargs["model"] = small_net()
    if "workers" in kwargs:
        pytest.importorskip("dask.distributed", reason="the dask extra is not installed")
    assert _error(out=tmp_path / "out", **kwargs) == expected
    assert not (tmp_path / "out").exists()  # refused before any output


def test_cuda_without_a_gpu_is_one_line_at_validation(
    cli: Callable[..., Any], write_scenario: Callable[..., Path]
) -> None:
    """This machine has no GPU (the test is skipped where one is present)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: device: cuda is valid here")
    path = write_scenario(
        "name: gpu\nmodel: {builtin: digits-cnn, device: cuda}\ndata: {builtin: digits}\n"
        "attacks: [{name: fgsm, eps: 0.1}]\n"
    )
    result = cli("validate", path)
    assert (result.code, result.err) == (
        2,
        f"{path}: model.device: 'cuda' requested but CUDA is not available\n",
    )
    # The notebook API says the same (its file is the in-memory scenario's name).
    gpu = {"name": "g", "attacks": ATTACKS, "model": {"device": "cuda"}}
    with pytest.raises(InputError) as err:
        unified_adv.run(gpu, path.parent / "out", model=small_net(), data=(X, Y))
    assert str(err.value) == "<scenario>: model.device: 'cuda' requested but CUDA is not available"
