"""Shared fixtures: a per-session model cache, an in-process CLI, scenario writers."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session has its own model cache: the builtin models the package does not
    ship (non-default autoencoders, the one-pixel study's line CNNs) are trained into it."""
    cache = tmp_path_factory.mktemp("unified-adv-cache")
    old = os.environ.get("UNIFIED_ADV_CACHE")
    os.environ["UNIFIED_ADV_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("UNIFIED_ADV_CACHE", None)
    else:
        os.environ["UNIFIED_ADV_CACHE"] = old


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``unified-adv ARGS`` in-process; return exit code, stdout and stderr."""
    from unified_adv.cli import main

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["unified-adv", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a scenario (dedented YAML) into a fresh folder and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


SMALL = """
name: small
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 60}
attacks:
  - {name: fgsm, eps: 0.1}
report: {triptychs: 1}
"""


@pytest.fixture(scope="session")
def model():  # type: ignore[no-untyped-def]
    """The builtin digits CNN, wrapped: the model most adapter-level tests attack."""
    from unified_adv.sources.builtin.digits import builtin_digits_cnn
    from unified_adv.sources.models import ModelWrapper

    net, _ = builtin_digits_cnn()
    return ModelWrapper(net)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``scenarios/quickstart.yaml`` run once per session: the report's browser tests and the
    metric tests (headline, curves, intervals) read the same run."""
    import unified_adv

    scenario = unified_adv.load_scenario(REPO / "scenarios" / "quickstart.yaml")
    return unified_adv.run(scenario, tmp_path_factory.mktemp("quickstart"), progress=False)
