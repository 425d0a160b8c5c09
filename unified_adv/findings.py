"""Reliability findings, in the spirit of AutoAttack's ``checks.py``: signs that the
evaluation itself may be unreliable, as structured records shown in the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .attacks import ATTACKS
from .runner import Prepared, UnitOutcome

PROBE_SAMPLES = 512


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    code: str
    message: str
    attack_id: str | None = None
    backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_positions(prep: Prepared) -> np.ndarray:
    pos = (
        np.unique(np.concatenate([p.positions for p in prep.plans])) if prep.plans else np.arange(0)
    )
    return pos[:PROBE_SAMPLES]


def model_findings(prep: Prepared) -> list[Finding]:
    out = []
    logits = prep.clean_logits
    if (logits >= 0).all() and np.allclose(logits.sum(1), 1.0, atol=1e-3):
        out.append(
            Finding(
                "warning",
                "probabilities",
                "The model's outputs are non-negative and sum to 1: it returns probabilities, not logits. "
                "Cross-entropy on probabilities gives weak gradients; attack the logits instead.",
            )
        )
    pos = _probe_positions(prep)
    if not len(pos):
        return out
    x = prep.data.x[pos]
    again = prep.model.wrapper.logits(x)
    if not np.array_equal(again, logits[pos]):
        out.append(
            Finding(
                "warning",
                "randomised_model",
                "Two forward passes on the same inputs differ: the model is randomised. "
                "Use an adaptive attack (expectation over transformation) before trusting robustness.",
            )
        )
    wrapper = prep.model.wrapper
    xt = torch.from_numpy(x).to(wrapper.device).requires_grad_(True)
    yt = torch.from_numpy(prep.data.y[pos]).to(wrapper.device)
    loss = torch.nn.functional.cross_entropy(wrapper(xt), yt, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    zero = (grad.reshape(len(pos), -1).abs().amax(1) == 0).cpu().numpy()
    if len(pos) and zero.any():
        share = float(zero.mean())
        out.append(
            Finding(
                "warning" if share > 0.01 else "info",
                "zero_gradients",
                f"The loss gradient is exactly zero for {zero.sum()} of {len(pos)} attacked samples "
                f"({share:.1%}): gradient-based attacks cannot move them (gradient masking or saturated "
                "softmax); their robustness is not evidence.",
            )
        )
    return out


def result_findings(
    prep: Prepared,
    attacks: list[dict[str, Any]],
    crosscheck: dict[str, Any],
    outcomes: list[UnitOutcome],
) -> list[Finding]:
    out: list[Finding] = []
    ok = [a for a in attacks if a["status"] == "ok" and a["success_rate"] is not None]
    # Success must not fall as eps grows (same attack, same backend).
    by_series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in ok:
        if a["eps"] is not None:
            by_series.setdefault((a["attack_id"], a["backend"]), []).append(a)
    for (attack_id, backend), series in by_series.items():
        series.sort(key=lambda a: a["eps"])
        for lo, hi in zip(series, series[1:], strict=False):
            if hi["success_rate"] + 1e-12 < lo["success_rate"]:
                out.append(
                    Finding(
                        "warning",
                        "non_monotonic_eps",
                        f"Success rate falls from {lo['success_rate']:.1%} at eps {lo['eps']:g} to "
                        f"{hi['success_rate']:.1%} at eps {hi['eps']:g}: the attack is not converging "
                        "(too few steps or a poor step size).",
                        attack_id,
                        backend,
                    )
                )
    # A black-box attack beating every white-box attack at the same norm and eps.
    for bb in ok:
        if not (ATTACKS[bb["attack"]].black_box and bb["eps"] is not None):
            continue
        white = [
            a
            for a in ok
            if not ATTACKS[a["attack"]].black_box
            and a["norm"] == bb["norm"]
            and a["eps"] == bb["eps"]
            and a["target"] == bb["target"]
        ]
        if white:
            best = max(white, key=lambda a: a["success_rate"])
            if bb["success_rate"] > best["success_rate"] + 0.05:
                out.append(
                    Finding(
                        "warning",
                        "black_box_beats_white_box",
                        f"{bb['attack_id']} ({bb['backend']}, black-box) fools {bb['success_rate']:.1%} "
                        f"but the best white-box attack at the same eps, {best['attack_id']} "
                        f"({best['backend']}), only {best['success_rate']:.1%}: gradients may be masked.",
                        bb["attack_id"],
                        bb["backend"],
                    )
                )
    for pair in crosscheck["pairs"]:
        if pair["verdict"] == "divergent":
            explained = bool(pair.get("explained"))
            out.append(
                Finding(
                    "warning" if explained else "error",
                    "divergent_backends",
                    f"{pair['attack_id']}: {pair['backends'][0]} and {pair['backends'][1]} diverge "
                    f"(success {pair['success_rates'][0]:.1%} vs {pair['success_rates'][1]:.1%}, "
                    f"largest pixel difference {pair['max_pixel_diff']:.3g})"
                    + (
                        "; explained by recorded differences"
                        if explained
                        else "; nothing recorded explains it"
                    ),
                    pair["attack_id"],
                    f"{pair['backends'][0]} vs {pair['backends'][1]}",
                )
            )
    for o in outcomes:
        if o.meta.get("repeat_identical") is False:
            out.append(
                Finding(
                    "warning",
                    "not_reproducible",
                    f"Run twice with the same seed, {o.unit.backend} gave different results for "
                    f"{o.unit.attack_id} ({o.unit.name}).",
                    o.unit.attack_id,
                    o.unit.backend,
                )
            )
    return out
