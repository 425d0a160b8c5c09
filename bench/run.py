"""`make bench`: every benchmark in turn, one summary table, bench/results.json.

Each benchmark measures its ratios side by side in one process (interleaved, medians
after a warm-up); this runner only sequences them with budgets that keep the whole run
under 10 minutes on the 2-core machine, and gathers their JSON.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("overhead", ["overhead.py"]),
    ("speed", ["speed.py"]),
    ("scaling", ["scaling.py"]),
    ("morph", ["morph.py", "--repeats", "3"]),
    ("pixelflip", ["pixelflip.py", "--repeats", "3", "--de-every", "4"]),
    ("scaleout", ["scaleout.py", "--repeats", "3"]),
    ("autoattack", ["autoattack.py", "--runs", "3", "--art-runs", "1"]),
]


def main() -> None:
    only = set(sys.argv[1:])
    results: dict[str, object] = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}"
    }
    started = time.perf_counter()
    for name, cmd in BENCHES:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        print(f"== {name} ==", flush=True)
        subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], check=True)
        path = HERE / f"results_{name}.json"
        results[name] = json.loads(path.read_text()) if path.exists() else None
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    results["total_seconds"] = time.perf_counter() - started
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(f"all benchmarks: {results['total_seconds']:.0f} s -> bench/results.json")


if __name__ == "__main__":
    main()
