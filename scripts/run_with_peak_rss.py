"""Run ``unified-adv ARGS...`` as a child process and print its wall time and peak RSS.

    python scripts/run_with_peak_rss.py run scenarios/cifar_shapes.yaml --out reports/cifar_shapes

Peak RSS is the child's high-water mark as the kernel reports it when the child ends
(``os.wait4``'s ``ru_maxrss``): the whole ``unified-adv`` process, from importing the
libraries and loading the model and data through every unit to the report. Exits with the
child's exit status. ``bench/shapes_example.py`` and ``tests/test_byo.py`` measure with
``run_measured``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, NamedTuple

#: ru_maxrss's unit: KiB on Linux, bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


class Measured(NamedTuple):
    returncode: int
    seconds: float
    peak_rss_bytes: int


def run_measured(args: list[str], **popen: Any) -> Measured:
    """``python -m unified_adv ARGS`` (the ``unified-adv`` command) in a child process;
    ``popen`` goes to subprocess.Popen (env, stdout, stderr, cwd)."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "unified_adv", *args], **popen)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Measured(child.returncode, seconds, usage.ru_maxrss * _RSS_UNIT)


def main() -> None:
    m = run_measured(sys.argv[1:])
    print(f"unified-adv {' '.join(sys.argv[1:])}: exit {m.returncode} in {m.seconds:.0f} s, "
          f"peak RSS {m.peak_rss_bytes / 2**30:.2f} GiB", file=sys.stderr)
    raise SystemExit(m.returncode)


if __name__ == "__main__":
    main()
