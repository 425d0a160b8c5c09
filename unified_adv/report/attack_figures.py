"""Per-attack figures: distance distributions per backend and the security curve over ε."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from unified_adv.report import PALETTE, plain_text, png_uri, pyplot


def _metric(norm: str, threat_ball: bool) -> tuple[str, str]:
    # An L∞-bounded attack mostly moves every pixel by ε: its L∞ distance says nothing;
    # the L2 distance shows how much of the image it really changed.
    return "l2", "L2 distance of the adversarial example"


@plain_text
def distance_figure(
    rows: pd.DataFrame, norm: str, threat_ball: bool, eps: float | None
) -> str | None:
    """Histogram of the distance each backend's successful examples moved, per backend."""
    ok = rows[rows["success"]]
    if ok.empty:
        return None
    plt = pyplot()
    col, label = _metric(norm, threat_ball)
    fig, ax = plt.subplots(figsize=(6.2, 2.6))
    values_by_backend = {}
    for backend, group in ok.groupby("backend", sort=True):
        values_by_backend[str(backend)] = group[col].to_numpy(dtype=float)
    everything = np.concatenate(list(values_by_backend.values()))
    hi = float(everything.max()) if everything.size else 1.0
    bins = np.linspace(0.0, hi * 1.02 + 1e-9, 30)
    for k, (backend, values) in enumerate(values_by_backend.items()):
        ax.hist(
            values,
            bins=bins,
            histtype="step",
            linewidth=1.6,
            color=PALETTE[k % len(PALETTE)],
            label=f"{backend} (n={len(values)}, median {np.median(values):.3g})",
        )
    if eps is not None and threat_ball and norm == "l2":
        ax.axvline(eps, color="#555555", linestyle=":", linewidth=1, label=f"ε = {eps:.3g}")
    ax.set_xlabel(label + " (successful samples)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def security_curve(entries: list[dict[str, Any]], worst: list[dict[str, Any]]) -> str | None:
    """Robust accuracy against ε per backend, and the worst case across backends."""
    eps_values = sorted({e["eps"] for e in entries if e["eps"] is not None})
    if len(eps_values) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    backends = sorted({e["backend"] for e in entries})
    markers = "osD^v"
    for k, backend in enumerate(backends):
        pts = sorted(
            (e["eps"], e["robust_accuracy"])
            for e in entries
            if e["backend"] == backend and e["robust_accuracy"] is not None and e["eps"] is not None
        )
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(
                xs,
                [100 * y for y in ys],
                marker=markers[k % len(markers)],
                color=PALETTE[k % len(PALETTE)],
                label=backend,
            )
    wpts = sorted(
        (w["eps"], w["robust_accuracy_worst_case"]) for w in worst if w["eps"] is not None
    )
    if wpts:
        xs, ys = zip(*wpts, strict=True)
        ax.plot(xs, [100 * y for y in ys], linestyle="--", color="black", label="worst case")
    ax.set_xlabel("ε")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out
