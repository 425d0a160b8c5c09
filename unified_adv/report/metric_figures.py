"""Figures for the reviewer's numbers: robust accuracy against ε from a minimal attack's
distances (per backend, best across backends, with the bounded attacks' points on the same
axes) and the per-class robust accuracy heat map."""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_adv.report import PALETTE, plain_text, png_uri, pyplot

NORM_NAMES = {"linf": "L∞", "l2": "L2"}


def _bounded_marks(ax: Any, points: list[dict[str, Any]], norm: str) -> None:
    """The bounded attacks of this norm: worst case across backends at their ε, with the
    95 % interval as an error bar."""
    mine = [p for p in points if p["norm"] == norm]
    for k, label in enumerate(sorted({p["attack_id"] for p in mine})):
        pts = sorted((p for p in mine if p["attack_id"] == label), key=lambda p: p["eps"])
        xs = [p["eps"] for p in pts]
        ys = np.array([100 * p["robust_accuracy"] for p in pts])
        ci = np.array([[100 * c for c in (p["robust_accuracy_ci"] or [0, 0])] for p in pts])
        err = np.vstack([ys - ci[:, 0], ci[:, 1] - ys]).clip(min=0)
        ax.errorbar(
            xs,
            ys,
            yerr=err,
            fmt="osD^v"[k % 5],
            color="#555555",
            markerfacecolor="white",
            capsize=3,
            linestyle="none",
            label=f"{label} (worst case, 95 % CI)",
        )


@plain_text
def eps_curves(entry: dict[str, Any], points: list[dict[str, Any]]) -> str:
    """One panel per norm: each backend's robust accuracy against ε from its minimal
    distances, the best across backends (black) and the bounded attacks' points."""
    plt = pyplot()
    norms = list(entry["curves"])
    fig, axes = plt.subplots(1, len(norms), figsize=(5.0 * len(norms), 3.1), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=True):
        curves = entry["curves"][norm]
        top = 0.0
        for k, (backend, c) in enumerate(sorted(curves["backends"].items())):
            ax.step(
                c["eps"],
                [100 * v for v in c["robust_accuracy"]],
                where="post",
                color=PALETTE[k % len(PALETTE)],
                label=backend,
                linewidth=1.3,
            )
            top = max(top, max(c["eps"]))
        best = curves["best"]
        ax.step(
            best["eps"],
            [100 * v for v in best["robust_accuracy"]],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1.6,
            label="best across backends",
        )
        _bounded_marks(ax, points, norm)
        top = max([top] + [p["eps"] for p in points if p["norm"] == norm])
        ax.set_xlim(0, top * 1.05 or 1.0)
        ax.set_ylim(0, 101)
        ax.set_xlabel(f"ε ({NORM_NAMES.get(norm, norm)} norm of the perturbation)")
        ax.set_ylabel("robust accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, frameon=False)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def per_class_heatmap(rows: list[dict[str, Any]], eps_label: Any) -> str | None:
    """Attack × ε (rows) by true class (columns): worst-case robust accuracy, each cell
    annotated robust / samples."""
    if not rows:
        return None
    plt = pyplot()
    classes = rows[0]["classes"]
    values = np.array(
        [
            [
                np.nan if c["robust_accuracy"] is None else 100 * c["robust_accuracy"]
                for c in r["classes"]
            ]
            for r in rows
        ]
    )
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(classes), 0.9 + 0.36 * len(rows)))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(r["classes"]):
            v = values[i, j]
            ax.text(
                j,
                i,
                f"{c['n_robust']}/{c['n']}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if np.isnan(v) or v < 55 else "black",
            )
    ax.set_xticks(range(len(classes)), [str(c["name"])[:12] for c in classes], fontsize=7)
    ax.set_yticks(
        range(len(rows)),
        [f"{r['attack_id']} ε={eps_label(r['attack_id'], r['eps'])}" for r in rows],
        fontsize=7,
    )
    ax.set_xlabel("true class")
    fig.colorbar(image, ax=ax, label="robust accuracy (%)", fraction=0.04)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out
