"""Units of work: one attack × one ε × one backend × one shard of the data.

A unit is plain data (hashable, picklable, JSON-serialisable). Its key covers
everything its result depends on, so a stored result can be trusted on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

UNIT_FORMAT = 1


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


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class UnitLike(Protocol):
    """Any unit of work: plain data with a readable name and a content key."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


def save_unit(
    folder: Path, unit: UnitLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    """Arrays first, then the JSON that marks the unit done; each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    npz_path = folder / f"{unit.name}.npz"

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    _atomic_write(npz_path, write_npz)
    doc = {"key": unit.key, "unit": asdict(unit), **meta}  # type: ignore[call-overload]
    _atomic_write(
        folder / f"{unit.name}.json",
        lambda tmp: tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8"),
    )


def load_unit(folder: Path, unit: UnitLike) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The stored result of ``unit`` if it is complete and was made for this exact unit."""
    meta_path, npz_path = folder / f"{unit.name}.json", folder / f"{unit.name}.npz"
    if not (meta_path.is_file() and npz_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != unit.key:
            return None
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return arrays, meta
