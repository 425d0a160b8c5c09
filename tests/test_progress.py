"""Progress, log levels, the cost estimate, the provenance's determinism flags and the
report's thumbnails: what a long run at real size shows before, while and after it runs."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import unified_adv
from unified_adv.api import as_scenario
from unified_adv.catalogue.speed import speed_table
from unified_adv.errors import InputError
from unified_adv.report import png_uri, pyplot
from unified_adv.run.estimate import _unit_seconds, estimate_run
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare
from unified_adv.run.progress import LEVEL_ENV, configure_logging, progress_mode

progress_module = importlib.import_module("unified_adv.run.progress")


def tiny() -> tuple[nn.Module, tuple[np.ndarray, np.ndarray]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = np.random.default_rng(0).random((30, 3, 8, 8), dtype=np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    return net, (x, y)


def test_the_estimate_scales_with_samples_and_steps() -> None:
    net, data = tiny()
    scenario = {
        "name": "cost",
        "attacks": [
            {"name": "pgd", "eps": 0.05, "steps": 10, "backends": ["art"]},
            {"name": "pgd", "id": "pgd40", "eps": 0.05, "steps": 40, "backends": ["art"]},
            {"name": "apgd", "eps": 0.05, "steps": 20, "backends": ["art"]},
        ],
        "execution": {"shard_size": 10},
    }
    prep = prepare(as_scenario(scenario, model=net, data=data), model=net, data=data)
    units = plan_units(prep)
    assert len(units) == 9  # 3 attacks x 3 shards of 10
    table = speed_table()
    per = [_unit_seconds(u, table, 1.0) for u in units]
    assert None not in per
    assert per[3] == pytest.approx(4 * per[0])  # 40 steps vs 10, same samples
    assert per[6] == pytest.approx(2 * per[0])  # APGD (not in the table) timed as PGD
    assert per[0] == pytest.approx(10 * table["pgd"]["art"]["seconds_per_sample"])
    guess = estimate_run(prep, units)
    assert guess.units == 9 and guess.unmeasured == 0
    assert guess.seconds == pytest.approx(sum(per) * guess.model_factor)  # type: ignore[arg-type]
    assert guess.line().startswith("9 units, about ")
    assert guess.line().endswith("on this machine's speed table")


def test_validate_prints_the_expected_time(
    cli: Callable[..., Any], write_scenario: Callable[..., Path]
) -> None:
    path = write_scenario(
        "name: v\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 20}\n"
        "attacks: [{name: fgsm, eps: 0.1, backends: [art]}]\n"
    )
    result = cli("validate", path)
    assert result.code == 0, result.err
    assert "1 unit(s)" in result.out
    assert "expected time about " in result.out and "speed table" in result.out


def test_plain_progress_lines_report_time_left_inside_a_unit(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not a terminal (a CI log): plain lines, for batches inside the unit and for units,
    each with the time left; the estimate at DEBUG for a short run."""
    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    net, data = tiny()
    scenario = {
        "name": "lines",
        "attacks": [{"name": "fgsm", "eps": 0.05, "backends": ["art", "torchattacks"]}],
        "execution": {"batch_size": 10},
    }
    with caplog.at_level(logging.DEBUG, logger="unified_adv"):
        unified_adv.run(
            scenario, tmp_path / "o", model=net, data=data, progress="lines", log_level="DEBUG"
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "unified_adv"]
    assert lines[0].startswith("2 units, about ")
    batch = [m for m in lines if ": batch " in m]
    assert batch[0].startswith("unit 1/2 00-fgsm-eps0-art-shard000: batch 1/3, about ")
    assert batch[0].endswith(" left in this unit")
    assert len(batch) == 4  # batches 1 and 2 of each unit (the last one ends the unit)
    assert [m.split(",")[0] for m in lines if m.startswith("units ")] == [
        "units 1/2 (50 %)",
        "units 2/2 (100 %)",
    ]


def test_log_levels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LEVEL_ENV, "warning")
    assert configure_logging() == logging.WARNING
    assert progress_mode(None) == "off"  # quiet: no progress unless asked
    assert progress_mode(True) == "bar"
    assert configure_logging("DEBUG") == logging.DEBUG  # the argument wins over the variable
    monkeypatch.setenv(LEVEL_ENV, "chatty")
    net, data = tiny()
    with pytest.raises(InputError) as err:
        unified_adv.run({"name": "x"}, tmp_path / "o", model=net, data=data)
    assert str(err.value) == (
        "log level: unknown log level 'chatty' ($UNIFIED_ADV_LOG_LEVEL or --log-level): "
        "DEBUG, INFO, WARNING, ERROR"
    )
    monkeypatch.delenv(LEVEL_ENV)
    configure_logging()


def test_determinism_flags_are_in_the_provenance(tmp_path: Path) -> None:
    net, data = tiny()
    scenario = {"name": "prov", "seed": 7, "attacks": [{"name": "fgsm", "eps": 0.05}]}
    result = unified_adv.run(scenario, tmp_path / "o", model=net, data=data, progress=False)
    flags = result.summary["provenance"]["determinism"]
    assert result.summary["scenario"]["seed"] == 7
    assert flags["cudnn_deterministic"] == torch.backends.cudnn.deterministic
    assert flags["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert flags["torch_threads"] == torch.get_num_threads()
    assert flags["cuda_device"] is None  # no GPU on the machines that run the suite


@pytest.mark.parametrize(("side", "kind"), [(8, "png"), (64, "png"), (65, "jpeg"), (224, "jpeg")])
def test_thumbnails_of_large_images_are_jpeg(side: int, kind: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(0).random((side, side, 3)))
    uri = png_uri(fig)
    plt.close(fig)
    assert uri.startswith(f"data:image/{kind};base64,")
