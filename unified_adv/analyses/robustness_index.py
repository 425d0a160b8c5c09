"""The robustness index of the training-state monitor: this project's combination of Ding &
Möller's walk effort and morph balance, per checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np

RI_DEFINITION = (
    "RI = 100·E·B is this project's definition (the paper gives no formula): E = mean MAE of "
    "the targeted walks in units of the input range, B = 1 − 2·mean|T − 0.5| over the morph "
    "pairs; each over the pairs and walks valid for the checkpoint"
)


def robustness_index(walk_effort: float | None, morph_balance: float | None) -> float | None:
    """RI = 100 · E · B, higher is more robust — this project's definition: Ding & Möller
    propose monitoring the training state with the morph thresholds and the walk effort
    but give no formula for combining them.

    E (walk effort): mean MAE of the targeted walks to every other class, in units of the
    input range — how far, on average, an image must move to become any other class.
    B (morph balance): 1 − 2·mean|T − 0.5| over the morph pairs — 1 when every class switch
    lies midway between the two images, 0 when it sits at one of them.
    With only one of the two analyses, the index is 100·E or 100·B alone.
    """
    parts = [v for v in (walk_effort, morph_balance) if v is not None]
    if not parts:
        return None
    return float(100 * np.prod(parts))


def with_robustness_index(row: dict[str, Any]) -> dict[str, Any]:
    """One monitor row with its definition and index added (from the columns it has)."""
    row["robustness_index_definition"] = RI_DEFINITION
    row["robustness_index"] = robustness_index(row.get("walk_effort"), row.get("morph_balance"))
    return row
