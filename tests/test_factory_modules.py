"""A factory module is the scenario folder's own, even when this process imported another
folder's module of the same name, or this one before it was edited."""

from __future__ import annotations

from pathlib import Path

import unified_adv
from unified_adv.sources.load import load_model

NETS = """
import torch
def net():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
def width():
    return {width}
"""


def _scenario(folder: Path):
    text = (
        "name: f\nmodel: {factory: 'nets:net'}\ndata: {builtin: digits, limit: 8}\n"
        "attacks: [{name: fgsm, eps: 0.1, backends: [torchattacks]}]\n"
    )
    return unified_adv.scenario_from_text(text, base_dir=folder)


def test_same_module_name_in_two_folders_and_after_an_edit(tmp_path: Path) -> None:
    import importlib
    import sys

    one, two = tmp_path / "one", tmp_path / "two"
    for folder, width in ((one, 1), (two, 2)):
        folder.mkdir()
        (folder / "nets.py").write_text(NETS.format(width=width))
    fingerprints = []
    for folder in (one, two):
        load_model(_scenario(folder))
        assert Path(sys.modules["nets"].__file__).parent == folder
        assert importlib.import_module("nets").width() == (1 if folder == one else 2)
        fingerprints.append(load_model(_scenario(folder)).fingerprint)
    assert fingerprints[0] != fingerprints[1]  # different code, different key
    (two / "nets.py").write_text(NETS.format(width=3))
    load_model(_scenario(two))
    assert importlib.import_module("nets").width() == 3
