"""`backends: fastest`: the quickest backend that gives the same result.

The choice comes from a measured table (``speed_table.json``, written by
``bench/speed.py`` on the digits CNN and copied here): among the backends that can run
the attack as asked, those whose success rate is within ``TOLERANCE`` of the best one
count as equivalent, and the one with the least time per sample wins. An attack missing
from the table falls back to the first capable backend in registry order.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

TOLERANCE = 0.05


@cache
def speed_table() -> dict[str, Any]:
    try:
        text = (
            resources.files("unified_adv.catalogue").joinpath("speed_table.json").read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        return {}
    data: dict[str, Any] = json.loads(text)
    return data.get("attacks", {})


def fastest_backend(
    attack: str, capable: tuple[str, ...], table: dict[str, Any] | None = None
) -> str:
    if not capable:
        raise ValueError(f"no backend can run {attack}")
    rows = (table if table is not None else speed_table()).get(attack, {})
    measured = {
        b: rows[b] for b in capable if b in rows and rows[b].get("seconds_per_sample") is not None
    }
    if not measured:
        return capable[0]
    best = max(r.get("success_rate") or 0.0 for r in measured.values())
    equivalent = {
        b: r for b, r in measured.items() if (r.get("success_rate") or 0.0) >= best - TOLERANCE
    }
    return min(equivalent, key=lambda b: equivalent[b]["seconds_per_sample"])
