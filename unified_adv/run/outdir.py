"""The output folder: checked before any work, marked as a run, and a full disk said clearly.

``check_out_dir`` runs before the model loads: ``--out`` must name a folder this process can
create or write, with room for the results, and an existing non-empty folder must be an
earlier run (it holds :data:`MARKER`) unless the user passes ``--force``. Nothing is created
here; :func:`make_out_dir` creates the folder and its marker once the scenario is known good.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unified_adv import __version__
from unified_adv.errors import InputError
from unified_adv.files import STORAGE_ERRNOS, atomic_write_bytes

#: A small file that marks a folder as a unified-adv run (so --out may write into it).
MARKER = ".unified-adv-run"
#: Free space a run needs before it starts (unit results, tables, report): refused below.
MIN_FREE_BYTES = 64 * 2**20
FIELD = "--out"


def _refuse(out: str | Path, message: str) -> InputError:
    return InputError.one(str(out), FIELD, message)


def is_run_folder(folder: Path) -> bool:
    """A folder an earlier run wrote: it has the marker (or, from before the marker, the
    ``units/`` folder and ``summary.json`` of a finished run)."""
    return (folder / MARKER).is_file() or (
        (folder / "units").is_dir() and (folder / "summary.json").is_file()
    )


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and not p.is_symlink():
        p = p.parent
    return p


def check_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """The output folder, if a run may write there; else an :class:`InputError` (one line).

    Refused: an empty name, an existing file (or a path under one), a folder this process
    cannot write, less than :data:`MIN_FREE_BYTES` free, and a non-empty folder that is not
    an earlier run (unless ``force``).
    """
    if isinstance(out, str) and not out.strip():
        raise InputError.one(
            "", FIELD, "is empty: give a folder, or leave --out out for reports/<name>/"
        )
    path = Path(out)
    existing = _nearest_existing(path)
    if existing != path.absolute():
        if not existing.is_dir():
            what = "a broken symbolic link" if existing.is_symlink() else "a file"
            raise _refuse(out, f"cannot create the folder: {existing} is {what}")
    elif path.is_symlink() and not path.exists():
        raise _refuse(out, f"is a broken symbolic link (to {os.readlink(path)})")
    elif not path.is_dir():
        raise _refuse(out, "is an existing file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(existing) else "permission denied"
        raise _refuse(out, f"cannot write into {existing} ({why})")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise _refuse(
            out,
            f"only {free / 2**20:.1f} MiB free on the disk of {existing}; a run needs at "
            f"least {MIN_FREE_BYTES // 2**20} MiB",
        )
    if path.is_dir() and not force and any(path.iterdir()) and not is_run_folder(path):
        raise _refuse(
            out,
            "is a non-empty folder that is not an earlier unified-adv run; choose another "
            "folder, or pass --force to write into it",
        )
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_out_dir(path: Path, scenario_name: str) -> None:
    """Create the folder and mark it as a run (before any result is written)."""
    with storage_errors(path):
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MARKER).is_file():
            doc = {"tool": "unified-adv", "version": __version__, "scenario": scenario_name}
            atomic_write_bytes(path / MARKER, json.dumps(doc).encode())


@contextmanager
def storage_errors(out: Path) -> Iterator[None]:
    """A full (or read-only) disk while writing: one line, exit 2; what was finished stays.

    Every file is written through a temp file and a rename, and the temp file is removed on
    failure, so a full disk leaves no half-written table and no unit is lost.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS and exc.errno != errno.EACCES:
            raise
        what = os.strerror(exc.errno) if exc.errno else str(exc)
        name = re.sub(r"^\.(.+)\.tmp\d+$", r"\1", Path(str(exc.filename or "")).name)
        where = f" while writing {name}" if name else ""
        raise _refuse(
            out,
            f"{what}{where}; the finished units are kept in {out / 'units'}: make room and "
            "rerun with --resume",
        ) from None
