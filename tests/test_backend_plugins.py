"""Third-party backends: a real distribution registering an adapter under the entry-point
group ``unified_adv.backends`` (a dist-info folder on sys.path), found, loaded lazily and
run through the same checked ``Adapter.generate`` as the builtin backends."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from unified_adv.adapters import (
    BACKENDS,
    ENTRY_POINT_GROUP,
    AttackRequest,
    adapter_class,
    backend_names,
    check_backends,
    registry,
)
from unified_adv.errors import InputError
from unified_adv.scenario import scenario_from_text

ADAPTER = '''
"""A backend in one file: numpy's Gaussian noise, as a third party would write it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unified_adv.adapters import Adapter, AdapterOutput, Capability, Translators

NOISE = Translators()


@dataclass
class Job:
    request: Any
    x: np.ndarray
    lo: float
    hi: float


@NOISE.add("gaussian_noise", Capability({"l2": "numpy.random.Generator.normal"}, ("untargeted",)))
def _noise(job: Job) -> AdapterOutput:
    """numpy.random.default_rng(seed).normal: std -> scale, clipped to the input range."""
    seed = int(np.random.randint(0, 2**31 - 1))  # drawn from the unit-seeded global RNG
    kwargs = {"scale": job.request.params["std"], "seed": seed}
    noise = np.random.default_rng(seed).normal(0.0, kwargs["scale"], job.x.shape)
    x_adv = np.clip(job.x + noise, job.lo, job.hi).astype(np.float32)
    return AdapterOutput(x_adv, {"class": "numpy.random.Generator.normal", "kwargs": kwargs})


class NumpyNoiseAdapter(Adapter):
    name = "numpy-noise"
    distribution = "ua-test-backend"
    translators = NOISE
    names = {"std": "scale"}

    def _job(self, request, x, y, target):
        return Job(request, x, *self.model.input_range)
'''


def _install(root: Path, name: str, value: str) -> None:
    info = root / "ua_test_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ua-test-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {value}\n")
    (root / "ua_test_backend.py").write_text(textwrap.dedent(ADAPTER))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    registry.cache_clear()
    adapter_class.cache_clear()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    registry.cache_clear()
    adapter_class.cache_clear()


def test_an_entry_point_backend_is_listed_loaded_and_run(plugin_path: Path, model) -> None:
    assert "numpy-noise" not in backend_names()  # read once: not there before installing
    _install(plugin_path, "numpy-noise", "ua_test_backend:NumpyNoiseAdapter")
    registry.cache_clear()
    assert backend_names() == (*BACKENDS, "numpy-noise")  # builtins first
    cls = adapter_class("numpy-noise")
    assert cls.__module__ == "ua_test_backend" and set(cls.capabilities) == {"gaussian_noise"}
    assert cls.version() == "0.1"

    x = np.full((4, 1, 8, 8), 0.5, dtype=np.float32)
    y = np.zeros(4, dtype=np.int64)
    req = AttackRequest("gaussian_noise", "l2", None, {"std": 0.1}, targeted=False)
    out = cls(model=model).generate(req, x, y, None, seed=3)
    again = cls(model=model).generate(req, x, y, None, seed=3)
    assert np.array_equal(out.x_adv, again.x_adv) and not np.array_equal(out.x_adv, x)
    assert 0.05 < float(np.std(out.x_adv - x)) < 0.2  # std 0.1 noise, 256 draws
    call = out.library_call
    assert call["library"] == "ua-test-backend" and call["version"] == "0.1"
    assert call["semantics"]["std"] == 0.1  # read back through the adapter's names

    # The scenario checks see it like any builtin backend.
    scenario = scenario_from_text(
        "name: p\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 4}\n"
        "attacks: [{name: gaussian_noise, std: 0.1, backends: [numpy-noise]}]\n"
    )
    assert check_backends(scenario.attacks[0], (0.0, 1.0)) == []
    with pytest.raises(InputError, match="backend 'numpy-noise' has no pgd"):
        scenario_from_text(
            "name: p\nmodel: {builtin: digits-cnn}\ndata: {builtin: digits, limit: 4}\n"
            "attacks: [{name: pgd, eps: 0.1, backends: [numpy-noise]}]\n"
        )


def test_an_entry_point_may_not_replace_a_builtin_backend(plugin_path: Path) -> None:
    _install(plugin_path, "art", "ua_test_backend:NumpyNoiseAdapter")
    registry.cache_clear()
    with pytest.raises(ValueError, match="reuses the name of a builtin backend"):
        backend_names()
