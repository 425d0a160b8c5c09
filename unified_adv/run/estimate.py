"""The cost of a run, estimated before it starts: its units and their expected time.

Per unit: samples x the attack's seconds per sample on that backend from the measured
speed table (``catalogue/speed_table.json``, the digits CNN on 8x8 images), scaled by the
unit's iterations over the table's (``steps``, ``queries`` or ``max_iter``) and by how much
slower one gradient is on this model than on the digits CNN: both timed here, on this
machine, a few forward+backward passes on two images each (well under a second for a
ResNet-18 at 224x224). A rough figure (the table is from another machine and model size
does not scale every attack alike), meant to tell minutes from hours.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from unified_adv.catalogue.speed import speed_table
from unified_adv.run.prepared import Prepared, Unit
from unified_adv.sources.builtin.digits import DigitsCNN

__all__ = ["Estimate", "estimate_run", "human_seconds"]

#: The iteration counts an attack's time is proportional to.
ITERATIONS = ("steps", "queries", "max_iter")
#: A run expected to take at least this long is announced at INFO (shorter ones at DEBUG).
LONG_RUN_S = 60.0


@dataclass(frozen=True)
class Estimate:
    units: int
    seconds: float
    #: Units whose attack has no row in the speed table and no ``steps`` to time it as PGD
    #: (not counted in ``seconds``).
    unmeasured: int
    #: Time of one gradient on this model over one on the digits CNN.
    model_factor: float

    def line(self) -> str:
        """e.g. "48 units, about 3 min on this machine's speed table"."""
        return f"{self.units} units, {self.time_text()}"

    def time_text(self) -> str:
        text = f"about {human_seconds(self.seconds)} on this machine's speed table"
        if self.model_factor >= 1.5:
            text += f" (this model: {self.model_factor:.0f}x the digits CNN per gradient)"
        if self.unmeasured:
            text += f"; {self.unmeasured} unit(s) of attacks with no measured speed not counted"
        return text

    @property
    def long(self) -> bool:
        return self.seconds >= LONG_RUN_S


def human_seconds(s: float) -> str:
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _gradient_seconds(net: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    """Median time of one forward+backward (input gradient) per image."""
    times = []
    for _ in range(repeats + 1):  # the first pass warms up (allocations, kernel choice)
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = net(xi)
        out.sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / len(x)


def model_factor(prep: Prepared) -> float:
    """How much slower one input gradient is on this model than on the digits CNN (which the
    speed table was measured on), both timed now, on two images each."""
    wrapper = prep.model.wrapper
    x = torch.from_numpy(np.array(prep.data.x[:2], dtype=np.float32)).to(wrapper.device)
    try:
        ours = _gradient_seconds(wrapper, x)
        torch.manual_seed(0)
        ref = _gradient_seconds(DigitsCNN().eval(), torch.rand(2, 1, 8, 8))
    except Exception:  # noqa: BLE001 - an estimate never stops a run; the run says why
        return 1.0
    return max(ours / ref, 1e-3) if ref > 0 else 1.0


#: An attack missing from the table that takes ``steps`` is timed as this one (a gradient
#: step each), scaled by its steps.
STAND_IN = "pgd"


def _unit_seconds(unit: Unit, table: dict[str, Any], factor: float) -> float | None:
    stand_in = STAND_IN if "steps" in unit.param_dict else None
    rows = table.get(unit.attack) or table.get(stand_in or "", {})
    row = rows.get(unit.backend) or next(iter(rows.values()), None)
    if row is None or row.get("seconds_per_sample") is None:
        return None
    params, measured = unit.param_dict, row.get("params", {})
    scale = 1.0
    for name in ITERATIONS:
        if params.get(name) and measured.get(name):
            scale *= params[name] / measured[name]
            break
    return (unit.stop - unit.start) * row["seconds_per_sample"] * scale * factor


def estimate_run(prep: Prepared, units: list[Unit]) -> Estimate:
    """Units and expected seconds for ``units`` on this machine (analyses not counted)."""
    table = speed_table()
    factor = model_factor(prep) if units else 1.0
    times = [_unit_seconds(u, table, factor) for u in units]
    known = [t for t in times if t is not None]
    return Estimate(len(units), float(sum(known)), len(times) - len(known), factor)
