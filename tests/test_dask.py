"""The Dask executor: units as tasks on a LocalCluster of 2 worker processes give the same
per-sample results as the in-process runner, even when a worker is killed mid-run; resume
submits only what is missing; workers share the driver's model cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import unified_adv
from unified_adv.errors import InputError
from unified_adv.evaluate.results import samples_table
from unified_adv.run.execute import run_units
from unified_adv.run.executors import (
    DaskExecutor,
    LocalExecutor,
    ScenarioSource,
    make_executor,
    prep_digest,
    run_unit_task,
)
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare
from unified_adv.run.prepared import Prepared, UnitFailed, UnitOutcome
from unified_adv.run.units import Unit
from unified_adv.scenario import load_scenario

# fgsm on 3 backends + pgd on 3 backends, 4 shards of 20: 24 units.
SCENARIO = """
name: dask-units
seed: 0
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 80}
attacks:
  - {name: fgsm, eps: 0.1}
  - {name: pgd, eps: 0.1, steps: 10}
execution: {shard_size: 20}
"""


@pytest.fixture(scope="module")
def executor(local: list[UnitOutcome]) -> Iterator[DaskExecutor]:
    """One LocalCluster of 2 single-thread worker processes for the whole module, started
    once the driver has trained (and cached) the model and made the local reference: on 2
    cores, training with torch's 2 threads next to workers starting up is many times slower."""
    with DaskExecutor(workers=2) as ex:
        ex.client.wait_for_workers(2, timeout=60)
        yield ex


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dask-scenario") / "scenario.yaml"
    path.write_text(textwrap.dedent(SCENARIO).lstrip(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(scenario_file: Path) -> tuple[Prepared, list[Unit]]:
    prep = prepare(load_scenario(scenario_file))
    return prep, plan_units(prep)


@pytest.fixture(scope="module")
def local(
    prepared: tuple[Prepared, list[Unit]], tmp_path_factory: pytest.TempPathFactory
) -> list[UnitOutcome]:
    prep, units = prepared
    return run_units(prep, units, tmp_path_factory.mktemp("local") / "units")


def as_json(value: Any) -> Any:
    """As stored on disk (a reused unit's meta comes from its JSON file)."""
    return json.loads(json.dumps(value, default=str))


def assert_same(prep: Prepared, a: list[UnitOutcome], b: list[UnitOutcome]) -> None:
    """Same units in the same order, every array equal, same per-sample table."""
    assert [o.unit for o in a] == [o.unit for o in b]
    for x, y in zip(a, b, strict=True):
        assert x.ok and y.ok, (x.meta.get("error"), y.meta.get("error"))
        assert x.arrays is not None and y.arrays is not None
        assert x.arrays.keys() == y.arrays.keys()
        for k in x.arrays:
            assert np.array_equal(x.arrays[k], y.arrays[k]), (x.unit.name, k)
        assert as_json(x.meta["library_call"]) == as_json(y.meta["library_call"])
    ta = samples_table(prep, a).drop(columns="time_s")
    tb = samples_table(prep, b).drop(columns="time_s")
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)


def test_dask_equals_local(
    executor: DaskExecutor,
    prepared: tuple[Prepared, list[Unit]],
    local: list[UnitOutcome],
    tmp_path: Path,
) -> None:
    prep, units = prepared
    assert len(units) >= 16
    ticks: list[str] = []
    outcomes = run_units(
        prep, units, tmp_path / "units", progress=lambda u: ticks.append(u.name), executor=executor
    )
    assert_same(prep, local, outcomes)
    assert sorted(ticks) == sorted(u.name for u in units)
    # The work was spread over both worker processes, and written by the driver as locally.
    assert len({o.meta["worker"] for o in outcomes}) == 2
    files = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert files == sorted([f"{u.name}.json" for u in units] + [f"{u.name}.npz" for u in units])
    assert executor.describe()["workers"] == 2


def test_scheduler_address(
    executor: DaskExecutor,
    prepared: tuple[Prepared, list[Unit]],
    local: list[UnitOutcome],
    tmp_path: Path,
) -> None:
    """--scheduler tcp://...: connect to a running cluster; closing leaves the cluster up."""
    prep, units = prepared
    address = executor.client.scheduler.address
    with DaskExecutor(scheduler=address) as remote:
        outcomes = run_units(prep, units[:6], tmp_path / "units", executor=remote)
        assert remote.describe()["workers"] == 2
    assert_same(prep, local[:6], outcomes)
    assert executor.describe()["workers"] == 2  # still there


def test_make_executor() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="either a scheduler address or a number of workers"):
        make_executor("dask")
    with pytest.raises(ValueError, match="need the dask executor"):
        make_executor("local", workers=2)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("ray")


def test_local_executor_equals_runner(
    prepared: tuple[Prepared, list[Unit]], local: list[UnitOutcome], tmp_path: Path
) -> None:
    prep, units = prepared
    assert_same(prep, local, run_units(prep, units, tmp_path / "u", executor=LocalExecutor()))


def test_resume_submits_only_missing_units(
    executor: DaskExecutor,
    prepared: tuple[Prepared, list[Unit]],
    local: list[UnitOutcome],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prep, units = prepared
    folder = tmp_path / "units"
    run_units(prep, units[::3], folder)  # an earlier, interrupted run, by the local runner
    submitted: list[Unit] = []
    real = executor.map_units

    def spy(prep: Prepared, todo: Any) -> Iterator[UnitOutcome]:
        submitted.extend(todo)
        yield from real(prep, todo)

    monkeypatch.setattr(executor, "map_units", spy)
    outcomes = run_units(prep, units, folder, resume=True, executor=executor)
    assert [u.name for u in submitted] == [u.name for i, u in enumerate(units) if i % 3]
    assert [o.reused for o in outcomes] == [i % 3 == 0 for i in range(len(units))]
    assert_same(prep, local, outcomes)
    # Nothing left to do: nothing submitted.
    submitted.clear()
    again = run_units(prep, units, folder, resume=True, executor=executor)
    assert submitted == [] and all(o.reused for o in again)


def test_failing_unit_is_recorded_like_locally(
    executor: DaskExecutor, prepared: tuple[Prepared, list[Unit]], tmp_path: Path
) -> None:
    prep, units = prepared
    broken = [dataclasses.replace(units[0], attack="no_such_attack"), units[1]]
    here = run_units(prep, broken, tmp_path / "local")
    there = run_units(prep, broken, tmp_path / "dask", executor=executor)
    assert [o.ok for o in here] == [o.ok for o in there] == [False, True]
    assert here[0].meta["error"] == there[0].meta["error"]
    assert not (tmp_path / "dask" / f"{broken[0].name}.json").exists()  # not saved, as locally


def test_strict_stops_at_the_first_failure(
    executor: DaskExecutor, prepared: tuple[Prepared, list[Unit]], tmp_path: Path
) -> None:
    prep, units = prepared
    broken = dataclasses.replace(units[5], attack="no_such_attack")
    todo = [*units[:5], broken, *units[6:]]
    with pytest.raises(UnitFailed, match=broken.name):
        run_units(prep, todo, tmp_path / "units", strict=True, executor=executor)
    # What finished before the failure is on disk, complete, for resume; the rest was
    # cancelled, and the cluster is free for the next run.
    saved = {p.stem for p in (tmp_path / "units").glob("*.json")}
    assert saved <= {u.name for u in units} - {broken.name}
    for name in saved:
        assert (tmp_path / "units" / f"{name}.npz").is_file()
    deadline = time.monotonic() + 30  # a task already running finishes, then is forgotten
    while any(executor.client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(executor.client.processing().values())


def test_workers_share_the_model_cache(
    executor: DaskExecutor,
    prepared: tuple[Prepared, list[Unit]],
    _model_cache: Path,
    tmp_path: Path,
) -> None:
    prep, units = prepared
    run_units(prep, units[:4], tmp_path / "units", executor=executor)
    cache = os.environ["UNIFIED_ADV_CACHE"]
    assert cache == str(_model_cache)
    envs = executor.client.run(lambda: os.environ.get("UNIFIED_ADV_CACHE"))
    assert set(envs.values()) == {cache}

    def loaded_from() -> list[str]:
        from unified_adv.run import executors

        return [str(p.model.details.get("weights", "")) for p, _ in executors._PREPARED.values()]

    # The builtin net comes from the package's shipped weights, on the driver and every worker.
    paths = {p for ps in executor.client.run(loaded_from).values() for p in ps}
    assert paths == {prep.model.details["weights"]}
    assert Path(prep.model.details["weights"]).name == "digits-cnn.safetensors"


def test_worker_refuses_another_preparation(prepared: tuple[Prepared, list[Unit]]) -> None:
    """A worker whose model, data or targets differ from the driver's says so (run here, in
    process, as a worker would)."""
    prep, units = prepared
    good = ScenarioSource.of(prep.scenario, prep)
    assert good.digest == prep_digest(prep)
    res = run_unit_task(good, units[0])
    assert res["status"] == "ok"
    parts = dict(good.parts)
    parts["model"] = "0" * 64  # as if the driver's weights were others
    bad = dataclasses.replace(good, digest="0" * 64, parts=tuple(parts.items()))
    res = run_unit_task(bad, units[0])
    assert res["status"] == "input_error"
    assert (
        "prepared the scenario differently from the driver (model differ)" in res["problems"][0][2]
    )


def test_missing_file_on_worker_is_an_input_error(executor: DaskExecutor, tmp_path: Path) -> None:
    """A data file the workers cannot read ends the run with the worker's InputError."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.random((12, 1, 8, 8), dtype=np.float32),
        y=rng.integers(0, 10, 12),
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: gone
            model: {builtin: digits-cnn}
            data: {npz: d.npz}
            attacks: [{name: fgsm, eps: 0.1, backends: [art]}]
            """
        ),
        encoding="utf-8",
    )
    prep = prepare(load_scenario(path))
    (tmp_path / "d.npz").unlink()  # the driver read it; the workers will not find it
    with pytest.raises(InputError, match="data.npz"):
        run_units(prep, plan_units(prep), tmp_path / "units", executor=executor)


def test_core_does_not_import_dask() -> None:
    code = (
        "import sys, unified_adv, unified_adv.api, unified_adv.cli, unified_adv.run.executors; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_dask_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"unified-adv\[dask\]"):
        DaskExecutor(workers=1)


def test_killed_worker_gives_identical_results(
    executor: DaskExecutor,
    prepared: tuple[Prepared, list[Unit]],
    local: list[UnitOutcome],
    tmp_path: Path,
) -> None:
    """SIGKILL a busy worker process once the first result is in: what it was running (and
    any result it held) is rescheduled, the nanny restarts the process, nothing differs."""
    prep, units = prepared
    client = executor.client
    pids = client.run(os.getpid)  # worker address -> pid
    ticks: list[str] = []
    killed: dict[str, Any] = {}

    def progress(unit: Unit) -> None:
        ticks.append(unit.name)
        if killed:
            return
        deadline = time.monotonic() + 10
        while True:  # a worker that is running a unit right now
            processing = client.processing()  # worker address -> keys assigned to it now
            busy = [a for a in sorted(pids) if processing.get(a)]
            if busy or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        victim = busy[0]
        killed.update(pid=pids[victim], after=len(ticks), running=list(processing[victim]))
        os.kill(pids[victim], signal.SIGKILL)

    outcomes = run_units(prep, units, tmp_path / "units", progress=progress, executor=executor)
    assert_same(prep, local, outcomes)
    # Killed mid-run, while running a unit; everything that came in after the kill, the
    # interrupted unit(s) included, was computed by another process.
    assert killed["running"] and killed["after"] < len(units)
    worker_of = {o.unit.name: o.meta["worker"] for o in outcomes}
    after = ticks[killed["after"] :]
    assert not [n for n in after if worker_of[n].endswith(f":{killed['pid']}")]
    interrupted = [
        n for n in after if any(k.startswith(f"unified-adv-{n}-") for k in killed["running"])
    ]
    assert interrupted
    # The nanny has started a new process in place of the killed one.
    client.wait_for_workers(2, timeout=60)
    deadline = time.monotonic() + 60
    while killed["pid"] in client.run(os.getpid).values() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert killed["pid"] not in client.run(os.getpid).values()


def test_run_through_the_api_with_the_scenarios_own_cluster(
    executor: DaskExecutor, scenario_file: Path, tmp_path: Path
) -> None:
    """unified_adv.run(executor=...) end to end: the same samples table and report as a
    local run, and the executor recorded in the provenance."""
    scenario = load_scenario(scenario_file)
    local_run = unified_adv.run(scenario, tmp_path / "local")
    dask_run = unified_adv.run(scenario, tmp_path / "dask", executor=executor)
    cols = [c for c in local_run.samples.columns if c != "time_s"]
    pd.testing.assert_frame_equal(local_run.samples[cols], dask_run.samples[cols], check_exact=True)
    assert local_run.summary["provenance"]["executor"] == {"executor": "local"}
    assert dask_run.summary["provenance"]["executor"]["executor"] == "dask"
    assert dask_run.report.is_file()
    assert executor.client.status == "running"  # a given executor is left open


def test_executor_options_are_checked(cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(
        """
        name: exec
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 10}
        attacks: [{name: fgsm, eps: 0.1}]
        execution: {executor: dask}
        """
    )
    result = cli("validate", path)
    assert result.code == 2
    assert result.err.strip() == (
        f"{path}: execution.executor: dask needs either a scheduler address or workers"
    )
    ok = write_scenario(
        """
        name: exec
        model: {builtin: digits-cnn}
        data: {builtin: digits, limit: 10}
        attacks: [{name: fgsm, eps: 0.1}]
        """,
        name="ok.yaml",
    )
    result = cli("run", ok, "--out", tmp_path / "o", "--executor", "local", "--workers", "2")
    assert result.code == 2
    assert result.err.strip() == (
        f"{ok}: execution: scheduler and workers need the dask executor (--executor dask)"
    )
    assert not (tmp_path / "o" / "index.html").exists()


def test_one_pixel_study_through_dask_equals_local(
    executor: DaskExecutor, tmp_path: Path, write_scenario
) -> None:
    """The exhaustive flip sweeps (one task per trained line CNN) run on the workers; the
    study's numbers equal an in-process run's."""
    path = write_scenario(
        """
        name: flips
        model: {builtin: line-cnn, seed: 0}
        data: {builtin: lines, size: 16, angle_step: 10}
        analyses:
          - {name: pixel_flip_study, sizes: [16], angle_steps: [10, 15], seeds: 2}
        report: {triptychs: 0}
        """
    )
    scenario = load_scenario(path)
    here = unified_adv.run(scenario, tmp_path / "local")
    there = unified_adv.run(scenario, tmp_path / "dask", executor=executor)
    keys = ("images", "adversarial_share_per_model", "by_angle", "images_with_adversarial_flip")
    for a, b in zip(
        here.summary["analyses"][0]["configs"], there.summary["analyses"][0]["configs"], strict=True
    ):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert len(list((tmp_path / "dask" / "units").glob("an00-*seed*.json"))) == 4


def test_closing_the_cluster_restores_the_environment_after_a_worker_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The nanny writes OMP_NUM_THREADS=1 (and the like) into this process's environment each
    time it restarts a dead worker; the executor puts the environment back on close, so
    processes started later (a CLI run from the tests) keep their usual torch threads."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # as in a fresh process (another test's
        # cluster may have left them: this module's shared one restores them at its end)
    before = dict(os.environ)
    with DaskExecutor(workers=1) as ex:
        client = ex.client
        client.wait_for_workers(1, timeout=60)
        (pid,) = client.run(os.getpid).values()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if pid not in client.run(os.getpid).values() and client.run(os.getpid):
                    break
            time.sleep(0.2)
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # the restart wrote it here
    assert dict(os.environ) == before


def test_boundary_ties_make_dask_equal_local(
    executor: DaskExecutor, tmp_path: Path, write_scenario
) -> None:
    """The quickstart's DeepFool, reduced: torchattacks leaves samples on the decision boundary,
    where logits differ by ~1e-7 between processes and could flip an argmax. Counted apart as
    ties, the tables of a local and a Dask run are identical."""
    path = write_scenario(
        """
        name: ties
        seed: 0
        model: {builtin: digits-cnn}
        data: {builtin: digits, only_correct: true, limit: 40}
        attacks:
          - {name: deepfool, steps: 50, overshoot: 0.02, candidates: 10, backends: all}
        execution: {shard_size: 10}
        report: {triptychs: 0}
        """
    )
    scenario = load_scenario(path)
    here = unified_adv.run(scenario, tmp_path / "local")
    there = unified_adv.run(scenario, tmp_path / "dask", executor=executor)
    # The reported outcome (success, tie); adv_pred is the raw argmax, which may flip on a tie.
    columns = ["backend", "sample", "success", "tie"]
    pd.testing.assert_frame_equal(here.samples[columns], there.samples[columns], check_exact=True)
    ties = here.samples.groupby("backend")["tie"].sum()
    assert ties["torchattacks"] > 0 and ties["art"] == 0
    assert not (here.samples["tie"] & here.samples["success"]).any()
    counts = {(e["backend"], e["n_ties"]) for e in here.summary["attacks"] if "n_ties" in e}
    assert ("torchattacks", int(ties["torchattacks"])) in counts
