"""Run a scenario through the Python API and print its wall time and peak RSS.

    python scripts/run_with_peak_rss.py scenarios/cifar_shapes.yaml [OUT]

Peak RSS is this process's high-water mark (resource.getrusage, ru_maxrss: KiB on Linux),
so it covers loading the model and data, every unit and the report.
"""

from __future__ import annotations

import resource
import sys
import time

import unified_adv


def main() -> None:
    scenario = unified_adv.load_scenario(sys.argv[1])
    t0 = time.perf_counter()
    result = unified_adv.run(scenario, sys.argv[2] if len(sys.argv) > 2 else None, force=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{result.report}: {len(result.summary['units'])} units in {wall:.0f} s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
