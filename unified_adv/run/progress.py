"""Progress and log messages of a run, for a terminal, a notebook and a CI log alike.

Messages go through the ``logging`` module (logger ``unified_adv``); the level comes from
the caller (``--quiet``/``--verbose``), else ``$UNIFIED_ADV_LOG_LEVEL``, else INFO.
Progress takes one of three forms:

* ``bar``: tqdm bars (``tqdm.auto``: a widget in a notebook) on stderr, one over the units
  and, for a unit cut into batches (``execution.batch_size``), one over its batches;
* ``lines``: plain log lines, at most one every ``PLAIN_EVERY_S`` seconds, each with the
  time left (for the run, and inside the current unit): what a CI log or a pipe can show;
* ``off``.

Inside a unit the executor's batches report through :func:`batch_done` (a context
variable, so executors need no extra argument); units run on Dask workers report as they
finish only.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from tqdm.auto import tqdm

from unified_adv.run.units import Unit

__all__ = ["LOG", "LEVEL_ENV", "Progress", "batch_done", "configure_logging", "progress_mode"]

LOG = logging.getLogger("unified_adv")
LEVEL_ENV = "UNIFIED_ADV_LOG_LEVEL"
#: Plain progress lines: at most one every this many seconds (the first and last always).
PLAIN_EVERY_S = 10.0

Mode = Literal["bar", "lines", "off"]
BatchHook = Callable[[Unit, int, int, float], None]
_HOOK: contextvars.ContextVar[BatchHook | None] = contextvars.ContextVar(
    "unified_adv_batch_hook", default=None
)


def configure_logging(level: str | int | None = None) -> int:
    """Set the ``unified_adv`` logger's level (``level``, else ``$UNIFIED_ADV_LOG_LEVEL``,
    else INFO) and, unless the application set up logging itself (the root logger has a
    handler), give it one plain stderr handler. Returns the level; an unknown name is an
    error naming the accepted ones."""
    given = level if level is not None else os.environ.get(LEVEL_ENV) or "INFO"
    value = given if isinstance(given, int) else logging.getLevelName(str(given).upper())
    if not isinstance(value, int):
        names = "DEBUG, INFO, WARNING, ERROR"
        raise ValueError(f"unknown log level {given!r} (${LEVEL_ENV} or --log-level): {names}")
    LOG.setLevel(value)
    if not logging.getLogger().handlers and not LOG.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(handler)
        LOG.propagate = False
    return value


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a message comes (a notebook or a test may
    replace it after the handler was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def progress_mode(show: bool | str | None) -> Mode:
    """``None``: bars on a terminal or in a notebook, plain lines otherwise (a pipe, a CI
    log), nothing when the log level is above INFO; ``True``: bars; ``False``: nothing."""
    if show is False or (show is None and not LOG.isEnabledFor(logging.INFO)):
        return "off"
    if show in ("bar", "lines", "off"):
        return show  # type: ignore[return-value]
    if show is True or sys.stderr.isatty() or "ipykernel" in sys.modules:
        return "bar"
    return "lines"


def batch_done(unit: Unit, done: int, total: int, seconds: float) -> None:
    """Called by the executor after each batch of a unit: ``done`` of ``total`` batches
    took ``seconds`` so far."""
    hook = _HOOK.get()
    if hook is not None:
        hook(unit, done, total, seconds)


def human(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class Progress:
    """Progress of one run over ``units`` (weighted by their samples for the time left)."""

    def __init__(self, units: list[Unit], mode: Mode) -> None:
        self.mode = mode
        self.total = len(units)
        self.samples = sum(u.stop - u.start for u in units) or 1
        self.done = self.done_samples = 0
        self.t0 = time.perf_counter()
        self.last_line = -math.inf
        disable = mode != "bar"
        self.bar = tqdm(
            total=self.total, desc="units", unit="unit", disable=disable, file=sys.stderr
        )
        self.inner: tqdm | None = None

    def _left(self) -> float:
        elapsed = time.perf_counter() - self.t0
        if not self.done_samples:
            return math.inf
        return elapsed / self.done_samples * (self.samples - self.done_samples)

    def _due(self, final: bool = False) -> bool:
        now = time.perf_counter()
        if final or now - self.last_line >= PLAIN_EVERY_S:
            self.last_line = now
            return True
        return False

    def unit_done(self, unit: Unit) -> None:
        self.done += 1
        self.done_samples += unit.stop - unit.start
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        self.bar.set_postfix_str(unit.name, refresh=False)
        self.bar.update(1)
        if self.mode == "lines" and self._due(final=self.done in (1, self.total)):
            elapsed = time.perf_counter() - self.t0
            LOG.info(
                "units %d/%d (%.0f %%), %s elapsed, about %s left",
                self.done, self.total, 100 * self.done / max(self.total, 1),
                human(elapsed), human(self._left()),
            )  # fmt: skip

    def batch(self, unit: Unit, done: int, total: int, seconds: float) -> None:
        left = seconds / done * (total - done)
        if self.mode == "bar":
            if self.inner is None:
                self.inner = tqdm(
                    total=total, desc=f"  {unit.name}", unit="batch", leave=False, file=sys.stderr
                )
            self.inner.update(done - self.inner.n)
        elif self.mode == "lines" and done < total and self._due():
            LOG.info(
                "unit %d/%d %s: batch %d/%d, about %s left in this unit",
                self.done + 1, self.total, unit.name, done, total, human(left),
            )  # fmt: skip

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.bar.close()


@contextmanager
def run_progress(units: list[Unit], mode: Mode) -> Iterator[Progress]:
    """A :class:`Progress` whose batches are reported by :func:`batch_done` meanwhile."""
    progress = Progress(units, mode)
    token = _HOOK.set(progress.batch)
    try:
        yield progress
    finally:
        _HOOK.reset(token)
        progress.close()
