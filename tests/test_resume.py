"""Crashes and resumption: a run killed with SIGKILL and resumed; --strict; Ctrl-C and
SIGTERM; batches inside a unit; an image folder streamed from a memory-mapped cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import unified_adv
from unified_adv.cli import EXIT_INTERRUPTED, EXIT_STRICT, EXIT_TERMINATED
from unified_adv.run import execute
from unified_adv.run.prepared import UnitFailed

REPO = Path(__file__).resolve().parents[1]
TIMING = ["time_s"]

# Many small units: 120 digits (about 117 correctly classified) in shards of 10 = 12 shards;
# FGSM at two eps on two backends + a random-start PGD on one = 12 x (4 + 1) = 60 units, each
# a fraction of a second, so a run spends several seconds in units and can be caught mid-way.
KILL_SCENARIO = """
name: killed
seed: 5
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 120}
attacks:
  - {name: fgsm, eps: [0.1, 0.2], backends: [art, torchattacks]}
  - {name: pgd, eps: 0.1, steps: 5, step_size: 1/50, random_starts: 1, backends: [torchattacks]}
report: {triptychs: 1}
execution: {shard_size: 10}
"""

KILL_AFTER = 3  # finished units seen on disk before the SIGKILL


def _finished(units: Path) -> set[str]:
    """Units whose result is complete: the JSON is written (atomically) after the arrays."""
    if not units.is_dir():
        return set()
    return {p.stem for p in units.glob("*.json") if not p.name.startswith(".")}


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "unified_adv", *map(str, args)]


def _env() -> dict[str, str]:
    env = dict(os.environ)  # carries UNIFIED_ADV_CACHE: the session's trained model
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_a_run_killed_with_sigkill_resumes_to_identical_results(tmp_path: Path) -> None:
    scenario_path = tmp_path / "killed.yaml"
    scenario_path.write_text(KILL_SCENARIO.lstrip(), encoding="utf-8")
    # The uninterrupted reference (in-process; it also trains the cached model if needed).
    reference = unified_adv.run(unified_adv.load_scenario(scenario_path), tmp_path / "reference")
    total = len(reference.summary["units"])
    assert total == 60

    out = tmp_path / "killed"
    units = out / "units"
    proc = subprocess.Popen(
        _cli("run", scenario_path, "--out", out),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300  # imports and model loading on a slow, busy machine
        while len(_finished(units)) < KILL_AFTER:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(
                    f"the run ended (code {proc.returncode}) before {KILL_AFTER} units were "
                    f"finished and it could be killed; make the scenario slower.\n{output}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {KILL_AFTER} finished units after 300 s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
    done = _finished(units)
    assert KILL_AFTER <= len(done) < total, f"killed too late: {len(done)} of {total} units done"
    assert not (out / "index.html").exists() and not (out / "summary.json").exists()
    mtimes = {name: (units / f"{name}.json").stat().st_mtime_ns for name in done}

    # What a kill can leave besides finished units: a temp file of the dead process, and the
    # arrays of a unit whose JSON was not written yet. Neither may be taken for a result.
    missing = sorted(u["name"] for u in reference.summary["units"] if u["name"] not in done)
    half_written = units / f".{missing[0]}.json.tmp{proc.pid}"
    half_written.write_text('{"key": "', encoding="utf-8")
    (units / f"{missing[1]}.npz").write_bytes(b"PK\x03\x04 truncated")
    left_by_kill = sorted(p.name for p in units.glob(".*.tmp*"))

    resumed = subprocess.run(
        _cli("run", scenario_path, "--out", out, "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    reused = {u["name"] for u in summary["units"] if u["reused"]}
    assert reused == done, "resume must reuse exactly the units finished before the kill"
    assert len(summary["units"]) == total
    assert all(u["status"] == "ok" for u in summary["units"])
    for name in done:  # reused, not rewritten
        assert (units / f"{name}.json").stat().st_mtime_ns == mtimes[name]
    # The dead process's temp files are gone, and none was read as a result.
    assert left_by_kill and not list(out.glob("**/*.tmp*")), left_by_kill

    # Identical to the uninterrupted run: every column but the timing, every array.
    a = pd.read_parquet(reference.out_dir / "samples.parquet").drop(columns=TIMING)
    b = pd.read_parquet(out / "samples.parquet").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    assert (a.attack == "pgd").any()  # the random-start attack too
    for npz in sorted((reference.out_dir / "units").glob("*.npz")):
        with np.load(npz) as x1, np.load(units / npz.name) as x2:
            for k in ("positions", "x_adv", "adv_logits", "target"):
                assert np.array_equal(x1[k], x2[k]), f"{npz.name}: {k}"


# --------------------------------------------------------------------------- strict

STRICT_SCENARIO = """
name: strict
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 40}
attacks: [{name: fgsm, eps: 0.1}]
execution: {shard_size: 10}
"""


def _fail_on_second_foolbox_call(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from unified_adv.adapters import adapter_class

    cls = adapter_class("foolbox")
    original = cls._generate
    calls: list[int] = []

    def flaky(self, request, x, y, target):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("backend exploded\nsecond line of the message")
        return original(self, request, x, y, target)

    monkeypatch.setattr(cls, "_generate", flaky)
    return calls


def test_strict_stops_at_the_first_failing_unit_and_resume_continues(
    monkeypatch: pytest.MonkeyPatch, write_scenario, cli, tmp_path: Path
) -> None:
    path = write_scenario(STRICT_SCENARIO)
    out = tmp_path / "strict"
    with monkeypatch.context() as m:
        _fail_on_second_foolbox_call(m)
        result = cli("run", path, "--out", out, "--strict")
    assert result.code == EXIT_STRICT == 3
    # Units run shard by shard, backend by backend: art, foolbox, torchattacks for shard 0,
    # then art for shard 1, then foolbox fails on shard 1. Nothing after it ran.
    failed = "00-fgsm-eps0-foolbox-shard001"
    done = _finished(out / "units")
    assert done == {
        "00-fgsm-eps0-art-shard000",
        "00-fgsm-eps0-foolbox-shard000",
        "00-fgsm-eps0-torchattacks-shard000",
        "00-fgsm-eps0-art-shard001",
    }
    lines = [ln for ln in result.err.splitlines() if ln and not ln.startswith("Training")]
    assert len(lines) == 1, result.err  # (the first test to run trains the cached model)
    assert lines[0].startswith(f"unit {failed} failed: RuntimeError: backend exploded;")
    assert "--strict" in lines[0] and "--resume" in lines[0] and "Traceback" not in result.err
    # No report, no tables: nothing half-written.
    for name in ("index.html", "summary.json", "samples.parquet", "samples.csv"):
        assert not (out / name).exists(), name

    again = cli("run", path, "--out", out, "--resume", "--strict")
    assert again.code == 0, again.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    reused = {u["name"] for u in summary["units"] if u["reused"]}
    assert reused == done
    assert len(summary["units"]) == 12 and all(u["status"] == "ok" for u in summary["units"])


def test_without_strict_the_same_failure_is_recorded_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, write_scenario, cli, tmp_path: Path
) -> None:
    path = write_scenario(STRICT_SCENARIO)
    _fail_on_second_foolbox_call(monkeypatch)
    result = cli("run", path, "--out", tmp_path / "o")
    assert result.code == 1
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))
    status = {u["name"]: u["status"] for u in summary["units"]}
    assert status.pop("00-fgsm-eps0-foolbox-shard001") == "error"
    assert len(status) == 11 and set(status.values()) == {"ok"}
    assert (tmp_path / "o" / "index.html").is_file()


def test_strict_in_the_python_api_raises_unit_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fail_on_second_foolbox_call(monkeypatch)
    scenario = unified_adv.scenario_from_text(STRICT_SCENARIO)
    with pytest.raises(UnitFailed) as info:
        unified_adv.run(scenario, tmp_path / "api", strict=True)
    assert info.value.unit == "00-fgsm-eps0-foolbox-shard001"
    assert info.value.error == "RuntimeError: backend exploded"
    # The unit may have run in another process: its traceback travels as text.
    assert "RuntimeError: backend exploded" in info.value.traceback
    assert "_generate" in info.value.traceback or "execute_unit" in info.value.traceback
    assert not (tmp_path / "api" / "summary.json").exists()


# --------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_run_keeps_finished_units_and_says_how_to_go_on(
    how: str, monkeypatch: pytest.MonkeyPatch, write_scenario, cli, tmp_path: Path
) -> None:
    path = write_scenario(STRICT_SCENARIO)
    out = tmp_path / "interrupted"
    real = execute.execute_unit
    calls: list[str] = []

    def interrupted_on_the_third(prep, unit, adapter):
        calls.append(unit.name)
        if len(calls) == 3:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler interrupts this at once
            pytest.fail("SIGTERM did not stop the run")
        return real(prep, unit, adapter)

    previous = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as m:
        m.setattr(execute, "execute_unit", interrupted_on_the_third)
        result = cli("run", path, "--out", out)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back
    assert result.code == (EXIT_INTERRUPTED if how == "ctrl-c" else EXIT_TERMINATED)
    word = "interrupted" if how == "ctrl-c" else "terminated"
    assert result.err.strip().splitlines()[-1] == (
        f"{word}: finished units kept in {out / 'units'}; rerun with --resume to continue"
    )
    assert len(_finished(out / "units")) == 2
    assert not (out / "index.html").exists()
    again = cli("run", path, "--out", out, "--resume")
    assert again.code == 0, again.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert sum(u["reused"] for u in summary["units"]) == 2


# --------------------------------------------------------------------------- batches

BATCH_SCENARIO = """
name: batches
seed: 1
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 60}
attacks:
  - {name: fgsm, eps: 0.1, backends: [art, torchattacks]}
  - {name: pgd, eps: 0.1, steps: 5, random_starts: 1, backends: [torchattacks]}
report: {triptychs: 0}
execution: {shard_size: 30%s}
"""


def test_batches_inside_a_unit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from unified_adv.adapters.base import Adapter

    def scenario(batch: str = "") -> unified_adv.Scenario:
        return unified_adv.scenario_from_text(BATCH_SCENARIO % batch)

    whole = unified_adv.run(scenario(), tmp_path / "w")
    # A batch as large as the unit is the unit itself: same key, reused.
    same = unified_adv.run(scenario(", batch_size: 30"), tmp_path / "w", resume=True)
    assert all(u["reused"] for u in same.summary["units"])

    sizes: list[int] = []
    real = Adapter.generate

    def spy(self, request, x, y, target, *, seed):
        sizes.append(len(x))
        return real(self, request, x, y, target, seed=seed)

    monkeypatch.setattr(Adapter, "generate", spy)
    out = tmp_path / "b"
    batched = unified_adv.run(scenario(", batch_size: 8"), out)
    # Every library call holds at most 8 samples: a unit of 30 goes as 8 + 8 + 8 + 6.
    assert sizes and max(sizes) == 8
    for u in batched.summary["units"]:
        meta = json.loads((out / "units" / f"{u['name']}.json").read_text(encoding="utf-8"))
        n = len(np.load(out / "units" / f"{u['name']}.npz")["positions"])
        assert n > 8 and meta["batches"] == {"batch_size": 8, "count": -(-n // 8)}
        assert meta["unit"]["context"].endswith(":batch8")  # part of the unit's key
    assert len(sizes) == sum(-(-n // 8) for n in (30, len(whole.samples) // 3 - 30)) * 3
    # A deterministic attack gives the same examples however it is batched.
    a, b = whole.samples, batched.samples
    pd.testing.assert_frame_equal(
        a[a.attack == "fgsm"].drop(columns=TIMING).reset_index(drop=True),
        b[b.attack == "fgsm"].drop(columns=TIMING).reset_index(drop=True),
        check_exact=False,
        atol=1e-6,
    )
    # A randomised one is reproducible at a given batch size.
    again = unified_adv.run(scenario(", batch_size: 8"), tmp_path / "b2")
    pd.testing.assert_frame_equal(
        batched.samples.drop(columns=TIMING), again.samples.drop(columns=TIMING)
    )
    # Units made whole are not reused for a run that splits them.
    split = unified_adv.run(scenario(", batch_size: 8"), tmp_path / "w", resume=True)
    assert not any(u["reused"] for u in split.summary["units"])


# --------------------------------------------------------------------------- image folder


def _write_images(root: Path, n: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(10, 20)), int(rng.integers(10, 20))
        path = folder / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def _pil_decode(path: Path, size: tuple[int, int], lo: float, hi: float) -> np.ndarray:
    """What the old eager loader computed: ImageFolder's RGB load, a bilinear resize to
    (H, W), /255, scaled into the input range."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return (x * (hi - lo) + lo).astype(np.float32)


def test_an_image_folder_streams_from_a_memory_mapped_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _model_cache: Path
) -> None:
    from torchvision import datasets

    from unified_adv.sources.data import load_data

    files = _write_images(tmp_path / "imgs", 300)
    text = (
        "name: f\nmodel: {builtin: digits-cnn, input_range: [-1, 1]}\n"
        "data: {image_folder: imgs, image_size: [12, 10]%s}\n"
        "attacks: [{name: fgsm, eps: 0.1, backends: [art]}]\n"
    )
    scenario = unified_adv.scenario_from_text(text % "", base_dir=tmp_path)
    cache = _model_cache / "image-folders"
    before = set(cache.glob("*.npy")) if cache.is_dir() else set()

    ds = load_data(scenario)
    assert isinstance(ds.x, np.memmap) and ds.x.shape == (300, 3, 12, 10)
    assert ds.x.dtype == np.float32
    made = set(cache.glob("*.npy")) - before
    assert len(made) == 1 and Path(ds.x.filename) == next(iter(made))
    assert not list(cache.glob(".*.tmp*"))
    # The same values as decoding each file with PIL, in ImageFolder's (sorted) order.
    order = sorted(files, key=lambda p: (p.parent.name, p.name))
    expected = np.stack([_pil_decode(p, (12, 10), -1.0, 1.0) for p in order])
    np.testing.assert_array_equal(np.asarray(ds.x), expected)
    assert ds.y.tolist() == [int(p.parent.name[-1]) for p in order]
    assert ds.class_names == ["class0", "class1", "class2"]

    # A second load decodes nothing: it maps the same file.
    stamp = Path(ds.x.filename).stat().st_mtime_ns

    def no_decoding(self, index):
        raise AssertionError("decoded again instead of reusing the cache")

    with monkeypatch.context() as m:
        m.setattr(datasets.ImageFolder, "__getitem__", no_decoding)
        again = load_data(scenario)
    assert again.x.filename == ds.x.filename
    assert Path(ds.x.filename).stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(again.x), expected)
    # The cache file cannot be changed through the array.
    again.x[0] = 0.0
    np.testing.assert_array_equal(np.asarray(load_data(scenario).x[0]), expected[0])

    # A changed file makes a new cache entry, with the new pixels.
    from PIL import Image

    changed = order[7]
    Image.fromarray(np.zeros((15, 15, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    fresh = load_data(scenario)
    assert fresh.x.filename != ds.x.filename
    assert len(set(cache.glob("*.npy")) - before) == 2
    np.testing.assert_array_equal(np.asarray(fresh.x[7]), _pil_decode(changed, (12, 10), -1, 1))
    np.testing.assert_array_equal(np.asarray(fresh.x[8:]), expected[8:])

    # data.limit: only the files it keeps are decoded (here the first 40; stratified: test_byo).
    decoded: list[int] = []
    real = datasets.ImageFolder.__getitem__

    def counting(self, index):
        decoded.append(index)
        return real(self, index)

    limited = unified_adv.scenario_from_text(text % ", limit: 40, limit_mode: first", base_dir=tmp_path)
    with monkeypatch.context() as m:
        m.setattr(datasets.ImageFolder, "__getitem__", counting)
        small = load_data(limited)
    assert decoded == list(range(40)) and small.x.shape == (40, 3, 12, 10)
    np.testing.assert_array_equal(np.asarray(small.x), np.asarray(fresh.x[:40]))
