"""Files on disk, one place each: atomic writes, the model cache folder, checksums.

Every file unified-adv writes goes through :func:`atomic_write` (a temp file beside the
target, renamed over it), so a run killed at any point, or a full disk, never leaves a
half-written file where a result is expected.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: errno values that mean the output folder cannot take more data (the run stops, cleanly).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def cache_dir() -> Path:
    """$UNIFIED_ADV_CACHE, else $XDG_CACHE_HOME/unified-adv, else ~/.cache/unified-adv."""
    env = os.environ.get("UNIFIED_ADV_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unified-adv"


def temp_path(path: Path) -> Path:
    """The temp file beside ``path`` this process writes before renaming it into place."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a temp file beside ``path``, then rename it over ``path``. The temp
    file never outlives a failure (a full disk leaves no 0-byte file behind)."""
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # os.write names no file: say which one filled the disk
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """``data`` into ``path`` atomically, through ``os.write`` (a short write is retried; a
    full disk raises OSError ENOSPC and leaves nothing behind)."""

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    atomic_write(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) into ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files (``.NAME.tmpPID``) of a killed run: never read as results; removed once
    the process that wrote them is gone."""
    if not folder.is_dir():
        return
    for path in folder.glob(".*.tmp*"):
        pid = path.name.rpartition(".tmp")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # alive under another user, or not ours to judge: leave it


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def json_checksum(doc: dict[str, Any], *, skip: str = "checksum") -> str:
    """sha256 of a JSON record in canonical form, without its own checksum field ``skip``."""
    body = {k: v for k, v in doc.items() if k != skip}
    return sha256_bytes(json.dumps(body, sort_keys=True, default=str).encode())
