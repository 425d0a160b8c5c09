"""Units of work: one attack × one ε × one backend × one shard of the data.

A unit is plain data (hashable, picklable, JSON-serialisable). Its key covers
everything its result depends on, so a stored result can be trusted on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unified_adv.files import atomic_write_bytes, json_checksum, sha256_bytes, sha256_file

UNIT_FORMAT = 2


@dataclass(frozen=True)
class Unit:
    attack_index: int
    attack_id: str
    attack: str
    backend: str
    norm: str
    eps_index: int
    eps: float | None
    params: tuple[tuple[str, Any], ...]
    target: str
    shard_index: int
    start: int  # positions [start, stop) in the attack's list of attacked samples
    stop: int
    seed: int
    context: str  # fingerprint of model, data and target choice
    #: "" for the model itself, else the id of the defence in front of it (scenario defences).
    defence: str = ""
    #: False: the adversarial examples made against the undefended model, scored through the
    #: defence (derived from the undefended unit, never run). True: the attack saw the defence.
    adaptive: bool = True

    @property
    def name(self) -> str:
        base = (
            f"{self.attack_index:02d}-{self.attack_id}-eps{self.eps_index}"
            f"-{self.backend}-shard{self.shard_index:03d}"
        )
        if not self.defence:
            return base
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.defence)
        return f"{base}-{'vs' if self.adaptive else 'via'}-{safe}"

    @property
    def evaluation(self) -> str:
        if not self.defence:
            return "undefended"
        return "adaptive" if self.adaptive else "non-adaptive"

    @property
    def key(self) -> str:
        blob = json.dumps({"format": UNIT_FORMAT, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)


def unit_seed(scenario_seed: int, attack_index: int, eps_index: int, shard_index: int) -> int:
    """One seed per (attack, ε, shard), shared by all backends of that unit."""
    seq = np.random.SeedSequence([scenario_seed, attack_index, eps_index, shard_index])
    return int(seq.generate_state(1)[0])


class UnitLike(Protocol):
    """Any unit of work: plain data with a readable name and a content key."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


#: Arrays that grow with the image size (one image per sample): kept on disk, not in memory,
#: once a unit is stored (:class:`StoredArrays`).
ON_DISK = ("x_adv",)


class StoredArrays(Mapping[str, np.ndarray]):
    """A stored unit's arrays: the per-sample scalars and logits in memory, the adversarial
    examples read back from the unit's .npz each time they are asked for, after checking the
    file still has the sha256 its record gives. A run therefore holds the examples of the
    units it is working on, never those of every unit (memory flat in the number of units).

    Read ``arrays["x_adv"]`` once per use, not inside a loop over samples."""

    def __init__(
        self, path: Path, sha256: str, in_memory: Mapping[str, np.ndarray], names: tuple[str, ...]
    ):
        self.path, self.sha256 = path, sha256
        self._memory = {k: v for k, v in in_memory.items() if k not in ON_DISK}
        self._names = names

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._memory:
            return self._memory[key]
        if key not in self._names:
            raise KeyError(key)
        blob = self.path.read_bytes()
        if sha256_bytes(blob) != self.sha256:
            raise RuntimeError(
                f"{self.path}: the stored examples changed on disk during the run (sha256 "
                "differs from the unit's record); rerun with --resume to recompute the unit"
            )
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            value: np.ndarray = npz[key]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def replace(self, **new: np.ndarray) -> StoredArrays:
        """The same stored unit with some in-memory arrays replaced (e.g. logits rescored)."""
        assert not set(new) & set(ON_DISK), "only in-memory arrays can be replaced"
        return StoredArrays(self.path, self.sha256, {**self._memory, **new}, self._names)


def replace_arrays(arrays: Mapping[str, np.ndarray], **new: np.ndarray) -> Mapping[str, np.ndarray]:
    """``arrays`` with some replaced, without reading stored examples into memory."""
    if isinstance(arrays, StoredArrays):
        return arrays.replace(**new)
    return {**arrays, **new}


def save_unit(
    folder: Path, unit: UnitLike, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]
) -> StoredArrays:
    """Arrays first, then the JSON that marks the unit done; each written atomically. The
    JSON, written last, records the sha256 of the npz bytes and a checksum of itself, both
    verified by :func:`load_unit`. Returns the arrays as stored (:class:`StoredArrays`)."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    blob = buf.getbuffer()  # a view: no second copy of the compressed bytes
    npz_path = folder / f"{unit.name}.npz"
    atomic_write_bytes(npz_path, blob)
    doc = {"key": unit.key, "unit": asdict(unit), **meta}  # type: ignore[call-overload]
    # Through JSON once: the checksum is of what load_unit will read back.
    doc = json.loads(json.dumps(doc, default=str))
    doc["npz_sha256"] = sha256_bytes(blob)
    doc["checksum"] = json_checksum(doc)
    text = json.dumps(doc, indent=1)
    atomic_write_bytes(folder / f"{unit.name}.json", text.encode("utf-8"))
    return StoredArrays(npz_path, doc["npz_sha256"], arrays, tuple(arrays))


#: A check of a stored unit's arrays and record: the problem in words, or None when it fits.
Check = Callable[[dict[str, np.ndarray], dict[str, Any]], "str | None"]


def load_unit(
    folder: Path, unit: UnitLike, check: Check | None = None
) -> tuple[StoredArrays, dict[str, Any]] | None:
    """The stored result of ``unit`` if it is complete, was made for this exact unit and
    passes verification; else None (recompute it).

    A result made for another unit (another key: the scenario, model or samples changed) is
    silently not reused. A result that fails verification (checksums, unreadable npz, the
    arrays ``check`` expects) is reported in one warning line on stderr, and never used.
    """
    meta_path, npz_path = folder / f"{unit.name}.json", folder / f"{unit.name}.npz"
    if not (meta_path.is_file() and npz_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        _corrupt(unit, "its record (.json) cannot be read")
        return None
    if not isinstance(meta, dict):
        _corrupt(unit, "its record (.json) is not a JSON object")
        return None
    if meta.get("key") != unit.key:
        return None  # made for another unit: stale, not corrupt
    problem = _verify(meta, npz_path)
    if problem is not None:
        _corrupt(unit, problem)
        return None
    try:
        with np.load(io.BytesIO(npz_path.read_bytes()), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception:  # noqa: BLE001 - a damaged archive raises anything (zip, zlib, EOF)
        _corrupt(unit, "its arrays (.npz) cannot be read")
        return None
    problem = check(arrays, meta) if check is not None else None
    if problem is not None:
        _corrupt(unit, problem)
        return None
    return StoredArrays(npz_path, meta["npz_sha256"], arrays, tuple(arrays)), meta


def _verify(meta: dict[str, Any], npz_path: Path) -> str | None:
    if meta.get("checksum") != json_checksum(meta):
        return "its record (.json) does not match its checksum"
    try:
        digest = sha256_file(npz_path)
    except OSError as exc:
        return f"its arrays (.npz) cannot be read ({exc.strerror})"
    if meta.get("npz_sha256") != digest:
        return "its arrays (.npz) do not match the checksum in its record"
    return None


def _corrupt(unit: UnitLike, problem: str) -> None:
    print(
        f"warning: unit {unit.name}: stored result fails verification ({problem}); recomputing it",
        file=sys.stderr,
    )


def expect_arrays(**lengths: int) -> Check:
    """A check that the stored arrays are these, each of this many rows."""

    def check(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str | None:
        for name, n in lengths.items():
            if name not in arrays:
                return f"array '{name}' is missing"
            if arrays[name].ndim == 0 or len(arrays[name]) != n:
                return f"array '{name}' has shape {arrays[name].shape}, expected {n} rows"
        return None

    return check
