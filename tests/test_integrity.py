"""Data integrity: ``--resume`` never reuses a stale or tampered unit, a full disk loses
nothing and leaves no temp file, summary.json is strict JSON, and user strings in figures
are never parsed as formulas.

Every end-to-end check compares the resumed run's tables with those of a fresh run of the
same scenario (timings aside): they must be identical.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import unified_adv
from unified_adv.run.plan import plan_units
from unified_adv.run.prepare import prepare

TIMING = ["time_s"]

# 60 digits in shards of 6 on one backend: 10 quick FGSM units (about a second in all).
SMALL = """
name: integrity
seed: 3
model: {builtin: digits-cnn}
data: {builtin: digits, limit: 60}
attacks:
  - {name: fgsm, eps: 0.1, backends: [torchattacks]}
report: {triptychs: 1}
execution: {shard_size: 6}
"""


def _table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "samples.parquet").drop(columns=TIMING)


def _headline(out: Path) -> list[dict[str, Any]]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return [{k: v for k, v in a.items() if k != "time_s"} for a in summary["attacks"]]


def _reused(out: Path) -> set[str]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {u["name"] for u in summary["units"] if u["reused"]}


def _same_as_fresh(out: Path, fresh: Path) -> None:
    pd.testing.assert_frame_equal(_table(out), _table(fresh))
    assert _headline(out) == _headline(fresh)


# ---------------------------------------------------------------------------- unit keys


def test_resume_after_a_change_of_samples_recomputes_exactly_the_changed_units(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    """The issue's case: ``only_correct: false`` and a per-attack ``limit`` that attacks as
    many samples as before, but not the same ones. Units whose samples are unchanged may be
    reused; every other one is recomputed; the tables equal a fresh run's."""
    before = SMALL.replace("limit: 60", "limit: 200").replace("shard_size: 6", "shard_size: 40")
    path = write_scenario(before)
    out = tmp_path / "out"
    assert cli("run", path, "--out", out).code == 0
    old = prepare(unified_adv.load_scenario(path))
    n = len(old.plans[0].positions)

    after = before.replace("limit: 200}", "limit: 200, only_correct: false}").replace(
        "backends: [torchattacks]}", f"backends: [torchattacks], limit: {n}}}"
    )
    path.write_text(after.lstrip(), encoding="utf-8")
    new = prepare(unified_adv.load_scenario(path))
    assert len(new.plans[0].positions) == n, "the same number of samples is attacked"
    assert not np.array_equal(new.plans[0].positions, old.plans[0].positions), (
        "a misclassified sample among the first 200 makes the sample sets differ"
    )
    same = {
        u.name
        for u in plan_units(new)
        if np.array_equal(
            new.plans[0].positions[u.start : u.stop], old.plans[0].positions[u.start : u.stop]
        )
    }
    assert len(same) < len(plan_units(new)), "some unit attacks other samples than before"

    resumed = cli("run", path, "--out", out, "--resume")
    assert (resumed.code, resumed.err) == (0, "")
    fresh = tmp_path / "fresh"
    assert cli("run", path, "--out", fresh).code == 0
    _same_as_fresh(out, fresh)
    assert _reused(out) == same


_FACTORY = """\
import torch

from layers import Scale


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), Scale())
"""


@pytest.fixture
def _fresh_imports() -> Iterator[None]:
    """A factory's modules are imported anew, as a new process would."""

    def forget() -> None:
        for name in ("mynet", "layers"):
            sys.modules.pop(name, None)

    forget()
    yield
    forget()


def _layers(folder: Path, factor: str) -> None:
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    (folder / "layers.py").write_text(
        "import torch\n\n\nclass Scale(torch.nn.Module):\n"
        f"    def forward(self, x):\n        return x * {factor}\n",
        encoding="utf-8",
    )


def test_a_factory_models_key_covers_its_code(
    cli: Callable[..., Any],
    write_scenario: Callable[..., Path],
    tmp_path: Path,
    _fresh_imports: None,
) -> None:
    """Same weights, other code (a module the factory imports from the scenario's folder):
    nothing is reused. Unchanged code, or an unrelated file changed: everything is."""
    (tmp_path / "mynet.py").write_text(_FACTORY, encoding="utf-8")
    _layers(tmp_path, "1.0")
    path = write_scenario(
        SMALL.replace("{builtin: digits-cnn}", '{factory: "mynet:build"}').replace(
            "fgsm, eps: 0.1", "pgd, eps: 0.1, steps: 3"
        )
    )
    out = tmp_path / "out"
    assert cli("run", path, "--out", out).code == 0
    total = len(json.loads((out / "summary.json").read_text(encoding="utf-8"))["units"])

    sys.modules.pop("mynet", None), sys.modules.pop("layers", None)
    (tmp_path / "notes.py").write_text("x = 1\n", encoding="utf-8")  # not imported by mynet
    assert cli("run", path, "--out", out, "--resume").code == 0
    assert len(_reused(out)) == total

    sys.modules.pop("mynet", None), sys.modules.pop("layers", None)
    _layers(tmp_path, "-25.0")  # flips the predictions: other results
    resumed = cli("run", path, "--out", out, "--resume")
    assert resumed.code == 0
    # The flipped model scores near chance, which the run warns about, and says nothing else.
    assert [line.split(": ", 1)[1][:27] for line in resumed.err.splitlines()] == [
        "warning (clean_near_chance)"
    ]
    assert _reused(out) == set()
    sys.modules.pop("mynet", None), sys.modules.pop("layers", None)
    fresh = tmp_path / "fresh"
    assert cli("run", path, "--out", fresh).code == 0
    _same_as_fresh(out, fresh)


# ---------------------------------------------------------------------------- tampering


def _resign(units: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Rewrite a unit's arrays and its record's checksums, as a careful forger would."""
    from unified_adv.files import json_checksum

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (units / f"{name}.npz").write_bytes(buf.getvalue())
    doc = json.loads((units / f"{name}.json").read_text(encoding="utf-8"))
    import hashlib

    doc["npz_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    doc["checksum"] = json_checksum(doc)
    (units / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")


def _npz(units: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(units / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _rewrite_npz(units: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (units / f"{name}.npz").write_bytes(buf.getvalue())


def _flip_byte(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))


# name -> (tamper(units, this unit, another unit), the problem the warning names or None
# when the unit is recomputed silently: it is not this unit's result at all)
TAMPERS: dict[str, tuple[Callable[[Path, str, str], None], str | None]] = {
    "truncated npz": (
        lambda u, n, o: (u / f"{n}.npz").write_bytes((u / f"{n}.npz").read_bytes()[:300]),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "flipped byte in npz": (
        lambda u, n, o: _flip_byte(u / f"{n}.npz"),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "missing key": (
        lambda u, n, o: _rewrite_npz(
            u, n, {k: v for k, v in _npz(u, n).items() if k != "adv_logits"}
        ),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "another unit's npz": (
        lambda u, n, o: shutil.copyfile(u / f"{o}.npz", u / f"{n}.npz"),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "changed x_adv": (
        lambda u, n, o: _rewrite_npz(
            u, n, {**_npz(u, n), "x_adv": np.clip(_npz(u, n)["x_adv"] + 0.05, 0, 1)}
        ),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "negated logits": (
        lambda u, n, o: _rewrite_npz(u, n, {**_npz(u, n), "adv_logits": -_npz(u, n)["adv_logits"]}),
        "its arrays (.npz) do not match the checksum in its record",
    ),
    "short arrays, re-signed": (
        lambda u, n, o: _resign(u, n, {k: v[:-1] for k, v in _npz(u, n).items()}),
        "array 'positions' has shape (5,), expected 6 rows",
    ),
    "missing key, re-signed": (
        lambda u, n, o: _resign(u, n, {k: v for k, v in _npz(u, n).items() if k != "x_adv"}),
        "array 'x_adv' is missing",
    ),
    "another unit's arrays, re-signed": (
        lambda u, n, o: _resign(u, n, _npz(u, o)),
        "it was made on other samples",
    ),
    "garbage npz, re-signed": (
        lambda u, n, o: (
            (u / f"{n}.npz").write_bytes(b"PK\x03\x04" + b"\0" * 64),
            _resign_bytes(u, n),
        ),
        "its arrays (.npz) cannot be read",
    ),
    "truncated record": (
        lambda u, n, o: (u / f"{n}.json").write_text('{"key": "', encoding="utf-8"),
        "its record (.json) cannot be read",
    ),
    "record edited": (
        lambda u, n, o: _edit_record(u, n),
        "its record (.json) does not match its checksum",
    ),
}


def _resign_bytes(units: Path, name: str) -> None:
    import hashlib

    from unified_adv.files import json_checksum

    doc = json.loads((units / f"{name}.json").read_text(encoding="utf-8"))
    doc["npz_sha256"] = hashlib.sha256((units / f"{name}.npz").read_bytes()).hexdigest()
    doc["checksum"] = json_checksum(doc)
    (units / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")


def _edit_record(units: Path, name: str) -> None:
    doc = json.loads((units / f"{name}.json").read_text(encoding="utf-8"))
    doc["status"] = "ok"
    doc["time_s"] = -1.0
    (units / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")


def test_a_tampered_or_corrupt_unit_is_recomputed_with_one_warning(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_scenario(SMALL.replace("limit: 60", "limit: 80"))
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    assert cli("run", path, "--out", fresh).code == 0
    shutil.copytree(fresh, out)
    units = out / "units"
    names = sorted(p.stem for p in units.glob("*.json"))
    assert len(names) > len(TAMPERS), "one unit per kind of damage, and some left intact"
    expected = []
    for (_kind, (tamper, problem)), name in zip(TAMPERS.items(), names, strict=False):
        other = names[len(TAMPERS)]  # an intact, full shard
        tamper(units, name, other)
        if problem is not None:
            expected.append(
                f"warning: unit {name}: stored result fails verification ({problem}); "
                "recomputing it"
            )

    resumed = cli("run", path, "--out", out, "--resume")

    assert resumed.code == 0
    assert resumed.err.splitlines() == expected
    assert "Traceback" not in resumed.out + resumed.err
    assert _reused(out) == set(names[len(TAMPERS) :])
    _same_as_fresh(out, fresh)
    # The recomputed units are whole again: a second resume reuses everything, silently.
    again = cli("run", path, "--out", out, "--resume")
    assert (again.code, again.err) == (0, "")
    assert _reused(out) == set(names)


# ---------------------------------------------------------------------------- a full disk


def test_a_disk_that_fills_during_a_run_loses_nothing_and_leaves_no_temp_file(
    cli: Callable[..., Any],
    write_scenario: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC injected at the OS boundary (``os.write`` to regular files, after a byte
    budget: what a filling disk does), since a real small file system needs root."""
    path = write_scenario(SMALL)
    fresh = tmp_path / "fresh"
    assert cli("run", path, "--out", fresh).code == 0
    unit_bytes = sum(p.stat().st_size for p in (fresh / "units").iterdir())
    budget = {"left": unit_bytes // 2}  # about half the units fit
    real_write = os.write

    def filling_write(fd: int, data: Any) -> int:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real_write(fd, data)
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data)[: budget["left"]])
        budget["left"] -= n
        return n

    out = tmp_path / "out"
    monkeypatch.setattr(os, "write", filling_write)
    full = cli("run", path, "--out", out)
    monkeypatch.setattr(os, "write", real_write)

    assert full.code == 2
    assert full.err.count("\n") == 1 and "Traceback" not in full.out
    assert full.err.startswith(f"{out}: --out: No space left on device while writing ")
    assert full.err.endswith(
        f"; the finished units are kept in {out / 'units'}: make room and rerun with --resume\n"
    )
    assert [p.name for p in out.rglob("*") if ".tmp" in p.name] == []
    assert not (out / "samples.parquet").exists() and not (out / "summary.json").exists()
    kept = {p.stem for p in (out / "units").glob("*.json")}
    assert 0 < len(kept) < 10

    resumed = cli("run", path, "--out", out, "--resume")
    assert (resumed.code, resumed.err) == (0, "")
    assert _reused(out) == kept, "every unit finished before the disk filled is reused"
    _same_as_fresh(out, fresh)


def test_a_disk_full_while_writing_the_tables_leaves_no_temp_file(
    cli: Callable[..., Any],
    write_scenario: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The units fit, the parquet table does not: no 0-byte samples.parquet.tmp."""
    from unified_adv import files as units_module

    path = write_scenario(SMALL)
    real = units_module.atomic_write

    def full_for_tables(target: Path, write: Callable[[Path], None]) -> None:
        if target.name.startswith("samples"):

            def partial(tmp: Path) -> None:
                tmp.write_bytes(b"")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

            return real(target, partial)
        return real(target, write)

    monkeypatch.setattr(units_module, "atomic_write", full_for_tables)
    out = tmp_path / "out"
    result = cli("run", path, "--out", out)
    assert (result.code, result.err) == (
        2,
        f"{out}: --out: No space left on device while writing samples.parquet; the "
        f"finished units are kept in {out / 'units'}: make room and rerun with --resume\n",
    )
    assert [p.name for p in out.iterdir() if "tmp" in p.name] == []
    assert len(list((out / "units").glob("*.json"))) == 10


# ---------------------------------------------------------------------------- the output folder


def test_force_writes_into_a_folder_that_is_not_a_run_and_marks_it(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_scenario(SMALL)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("my own page", encoding="utf-8")
    refused = cli("run", path, "--out", out)
    assert refused.code == 2
    assert (out / "index.html").read_text(encoding="utf-8") == "my own page"
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]

    forced = cli("run", path, "--out", out, "--force")
    assert (forced.code, forced.err) == (0, "")
    assert (out / ".unified-adv-run").is_file()
    again = cli("run", path, "--out", out)  # a run folder now: no --force needed
    assert (again.code, again.err) == (0, "")


# ---------------------------------------------------------------------------- strict JSON


def _strict_loads(text: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_summary_json_is_strict_json(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    from unified_adv.api import strict_json

    doc = {"a": float("nan"), "b": [float("inf"), np.float32(-np.inf), 1.5], "c": {"d": 2}}
    assert _strict_loads(strict_json(doc)) == {"a": None, "b": [None, None, 1.5], "c": {"d": 2}}
    # A run with a unit that fooled nothing on one backend (median distances over nothing).
    path = write_scenario(SMALL.replace("eps: 0.1", "eps: 0.001"))
    out = tmp_path / "out"
    assert cli("run", path, "--out", out).code == 0
    _strict_loads((out / "summary.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- report text


def test_class_names_that_look_like_formulas_are_drawn_as_text(
    cli: Callable[..., Any], write_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    """``$\\foo$`` is an invalid mathtext formula: parsed, it failed every figure (and so
    the run, after every unit). Drawn as text, the report is written."""
    from unified_adv.sources.builtin.digits import digits_split

    _, _, x, y, _, _ = digits_split()
    names = np.array([r"$\foo$", "$x^$", r"a\b$", *[f"${d}$" for d in range(3, 10)]])
    np.savez(tmp_path / "digits.npz", x=x[:30], y=y[:30], class_names=names)
    path = write_scenario(
        SMALL.replace("{builtin: digits, limit: 60}", "{npz: digits.npz}").replace(
            "triptychs: 1", "triptychs: 3"
        )
    )
    out = tmp_path / "out"
    result = cli("run", path, "--out", out)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2  # triptychs and distance figure


# Memory at scale: a stored unit's examples live on disk, read back verified.


def test_a_stored_units_examples_are_read_back_from_disk_and_verified(tmp_path: Path) -> None:
    """save_unit keeps the per-sample scalars in memory and reads ``x_adv`` from the .npz
    each time (so a run never holds every unit's examples); a file changed underneath is an
    error naming it, never silently different examples."""
    from unified_adv.run.units import StoredArrays, save_unit

    @dataclasses.dataclass(frozen=True)
    class U:
        name: str = "u"
        key: str = "k"

    rng = np.random.default_rng(0)
    arrays = {"x_adv": rng.random((5, 1, 4, 4), dtype=np.float32), "target": np.arange(5)}
    stored = save_unit(tmp_path, U(), arrays, {"status": "ok"})
    assert isinstance(stored, StoredArrays) and sorted(stored) == ["target", "x_adv"]
    assert np.array_equal(stored["x_adv"], arrays["x_adv"])
    assert stored["x_adv"] is not stored["x_adv"]  # a fresh read, nothing cached
    rescored = stored.replace(target=np.zeros(5, np.int64))
    assert np.array_equal(rescored["target"], np.zeros(5)) and rescored.path == stored.path
    buf = io.BytesIO()
    np.savez_compressed(buf, **{**arrays, "x_adv": arrays["x_adv"] + 1})
    (tmp_path / "u.npz").write_bytes(buf.getvalue())
    with pytest.raises(RuntimeError, match=r"u\.npz: the stored examples changed on disk"):
        stored["x_adv"]


def test_a_runs_outcomes_hold_stored_arrays(tmp_path: Path) -> None:
    """After a run (and after a resume) every finished unit's arrays are the stored ones."""
    from unified_adv.run.execute import run_units
    from unified_adv.run.units import StoredArrays

    prep = prepare(unified_adv.scenario_from_text(SMALL))
    units = plan_units(prep)
    for resume in (False, True):
        outcomes = run_units(prep, units, tmp_path / "units", resume=resume)
        assert all(isinstance(o.arrays, StoredArrays) for o in outcomes), resume
        assert [o.reused for o in outcomes] == [resume] * len(units)


def test_perturbation_sizes_in_chunks_equal_the_whole_array_computation() -> None:
    """The chunked sizes (results.CHUNK_ROWS rows at a time) are bit for bit those of one
    pass over the whole array, across a chunk boundary and through RowsOf's indexing."""
    from unified_adv.evaluate.results import CHUNK_ROWS, RowsOf, perturbation_sizes

    rng = np.random.default_rng(1)
    n = CHUNK_ROWS * 2 + 7
    data = rng.random((n + 5, 3, 4, 4), dtype=np.float32)
    pos = rng.permutation(n + 5)[:n]
    x_adv = np.clip(data[pos] + rng.normal(0, 0.1, (n, 3, 4, 4)).astype(np.float32), 0, 1)
    delta = (x_adv - data[pos]).reshape(n, -1).astype(np.float64)
    got = perturbation_sizes(x_adv, RowsOf(data, pos))
    assert np.array_equal(got["linf"], np.abs(delta).max(1))
    assert np.array_equal(got["l2"], np.linalg.norm(delta, axis=1))
    assert np.array_equal(got["mae"], np.abs(delta).mean(1))
