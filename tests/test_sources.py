"""Model and data sources: builtin, TorchScript, factory + weights, npz, image folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import unified_adv
from unified_adv.run.prepare import prepare
from unified_adv.sources.builtin.digits import DigitsCNN, builtin_digits_cnn, digits_split
from unified_adv.sources.data import load_data
from unified_adv.sources.load import load_model


def test_builtin_model_is_accurate_on_held_out_digits_and_shipped() -> None:
    net, details = builtin_digits_cnn()
    _, _, x_test, y_test, i_train, i_test = digits_split()
    assert not set(i_train) & set(i_test)
    acc = (net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    assert acc >= 0.95
    assert details["held_out_accuracy"] == pytest.approx(acc)
    assert Path(details["weights"]).name == "digits-cnn.safetensors"
    again, _ = builtin_digits_cnn()  # from the package: the same weights
    for (k, v), (_, w) in zip(net.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_builtin_data_is_the_held_out_split() -> None:
    scenario = unified_adv.scenario_from_text(
        "name: d\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 25}\n"
        "attacks: [{name: fgsm, eps: 0.1}]\n"
    )
    ds = load_data(scenario)
    _, _, _, _, i_train, i_test = digits_split()
    assert len(ds.y) == 25 and ds.x.shape == (25, 1, 8, 8) and ds.x.dtype == np.float32
    assert set(ds.index) <= set(i_test) and not set(ds.index) & set(i_train)


def _digits_net_state(path: Path) -> None:
    net, _ = builtin_digits_cnn()
    torch.save(net.state_dict(), path)


FACTORY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))
    def forward(self, x):
        return self.classifier(self.features(x))

def build():
    return Net()
"""


def test_factory_with_weights_and_torchscript_match_the_builtin(tmp_path: Path) -> None:
    (tmp_path / "digitsnet.py").write_text(textwrap.dedent(FACTORY))
    _digits_net_state(tmp_path / "weights.pt")
    net, _ = builtin_digits_cnn()
    torch.jit.script(net).save(str(tmp_path / "net.ts"))
    base = "name: s\ndata: {builtin: digits, limit: 50}\nattacks: [{name: fgsm, eps: 0.1}]\n"
    preds = {}
    for key, model in {
        "builtin": "{builtin: digits-cnn}",
        "factory": "{factory: 'digitsnet:build', weights: weights.pt}",
        "torchscript": "{torchscript: net.ts}",
    }.items():
        scenario = unified_adv.scenario_from_text(
            f"model: {model}\n{base}", file=f"{key}.yaml", base_dir=tmp_path
        )
        prep = prepare(scenario)
        preds[key] = prep.clean_logits
    np.testing.assert_allclose(preds["factory"], preds["builtin"], atol=1e-5)
    np.testing.assert_allclose(preds["torchscript"], preds["builtin"], atol=1e-5)


def test_normalisation_lives_inside_the_wrapper(tmp_path: Path) -> None:
    """A model trained on standardised inputs sees (x - mean) / std; attacks still work on x."""
    (tmp_path / "digitsnet.py").write_text(textwrap.dedent(FACTORY))
    _digits_net_state(tmp_path / "weights.pt")
    text = (
        "name: n\nmodel: {factory: 'digitsnet:build', weights: weights.pt, mean: [0.5], std: [0.25]}\n"
        "data: {builtin: digits, limit: 10}\nattacks: [{name: fgsm, eps: 0.1}]\n"
    )
    loaded = load_model(unified_adv.scenario_from_text(text, base_dir=tmp_path))
    x = torch.from_numpy(digits_split()[2][:10])
    net, _ = builtin_digits_cnn()
    with torch.no_grad():
        assert torch.allclose(loaded.wrapper(x), net((x - 0.5) / 0.25), atol=1e-6)


def test_npz_data_uint8_and_float(tmp_path: Path) -> None:
    _, _, x, y, _, _ = digits_split()
    np.savez(tmp_path / "f.npz", x=x[:30, 0], y=y[:30])
    np.savez(tmp_path / "u.npz", x=np.round(x[:30] * 255).astype(np.uint8), y=y[:30])
    for name in ("f", "u"):
        s = unified_adv.scenario_from_text(
            f"name: x\nmodel: {{builtin: digits-cnn}}\ndata: {{npz: {name}.npz}}\n"
            "attacks: [{name: fgsm, eps: 0.1}]\n",
            base_dir=tmp_path,
        )
        ds = load_data(s)
        assert ds.x.shape == (30, 1, 8, 8) and ds.x.dtype == np.float32
        np.testing.assert_allclose(ds.x, x[:30], atol=1 / 255)
        assert (ds.y == y[:30]).all()


def test_image_folder_with_resize(tmp_path: Path) -> None:
    from PIL import Image

    _, _, x, y, _, _ = digits_split()
    for i in range(20):
        folder = tmp_path / "imgs" / f"digit{y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((x[i, 0] * 255).astype(np.uint8)).resize((32, 32), Image.NEAREST)
        img.save(folder / f"{i}.png")
    scenario = unified_adv.scenario_from_text(
        "name: f\nmodel: {builtin: digits-cnn}\n"
        "data: {image_folder: imgs, image_size: [8, 8], grayscale: true}\n"
        "attacks: [{name: fgsm, eps: 0.1}]\n",
        base_dir=tmp_path,
    )
    ds = load_data(scenario)
    assert ds.x.shape == (20, 1, 8, 8) and ds.x.min() >= 0 and ds.x.max() <= 1
    assert ds.class_names == sorted({f"digit{d}" for d in y[:20]})


def test_digits_cnn_architecture_takes_8x8() -> None:
    assert DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
