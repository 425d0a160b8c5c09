"""Figures for Zingade's catalogue: universal perturbations and the transfer matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_adv.report import PALETTE, plain_text, png_uri, pyplot, show_image
from unified_adv.run.prepared import Prepared


def _row_title(row: dict[str, Any]) -> str:
    what = "R_f" if row["kind"] == "untargeted" else f"R_s→{row['target']}"
    if row.get("empty") or row["rate"] is None:
        return f"{row['norm']} ζ={row['zeta']:g}\n{what}: empty UAP"
    return (
        f"{row['norm']} ζ={row['zeta']:g}\n{what} {100 * row['rate']:.0f} % "
        f"({100 * row['control_rate']:.0f} %)"
    )


def _perturbations(rows: list[dict[str, Any]], perts: list[Any]) -> str:
    plt = pyplot()
    cols = min(len(rows), 6)
    lines = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(1.9 * cols, 2.2 * lines), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(rows):
            ax.axis("off")
            continue
        p = np.asarray(perts[k])
        p = p.reshape(tuple(p.shape)[-3:])
        m = float(np.abs(p).max()) or 1.0
        show_image(ax, p[:1] if p.shape[0] != 3 else p, -m, m, cmap="PuOr", vmin=-m, vmax=m)
        ax.set_title(_row_title(rows[k]), fontsize=7)
    fig.suptitle(
        "universal perturbations (rate on held-out images; random control in brackets)", fontsize=8
    )
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


def _rates(rows: list[dict[str, Any]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(rows) + 1.5), 3.0))
    xs = np.arange(len(rows))
    # An empty UAP has no rate: no bar (its tick label says so).
    ax.bar(xs - 0.2, [100 * (r["rate"] or 0.0) for r in rows], 0.4, color=PALETTE[0], label="UAP")
    ax.bar(
        xs + 0.2,
        [100 * r["control_rate"] for r in rows],
        0.4,
        color=PALETTE[1],
        label="random control, same norm",
    )
    labels = [
        f"{r['norm']} ζ={r['zeta']:g}\n"
        + ("R_f" if r["kind"] == "untargeted" else f"R_s→{r['target']}")
        + ("\n(empty)" if r.get("empty") else "")
        for r in rows
    ]
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("rate on held-out images (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


def _examples(prep: Prepared, rows: list[dict[str, Any]], perts: list[Any]) -> str:
    """The strongest UAP on four held-out images, with the model's predictions."""
    plt = pyplot()
    best = max(
        range(len(rows)),
        key=lambda k: (rows[k]["kind"] == "untargeted", rows[k]["rate"] or -1.0),
    )
    lo, hi = prep.model.wrapper.input_range
    x = prep.data.x[:4]
    p = np.asarray(perts[best]).reshape((1, *x.shape[1:]))
    x_adv = np.clip(x + p, lo, hi).astype(np.float32)
    clean = prep.model.wrapper.logits(x).argmax(1)
    adv = prep.model.wrapper.logits(x_adv).argmax(1)
    fig, axes = plt.subplots(2, len(x), figsize=(1.5 * len(x), 3.3), squeeze=False)
    for j in range(len(x)):
        show_image(axes[0][j], x[j], lo, hi)
        axes[0][j].set_title(f"clean: {clean[j]}", fontsize=7)
        show_image(axes[1][j], x_adv[j], lo, hi)
        axes[1][j].set_title(
            f"+ UAP: {adv[j]}", fontsize=7, color="#D55E00" if adv[j] != clean[j] else "black"
        )
    fig.suptitle(_row_title(rows[best]).replace("\n", ", "), fontsize=8)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def uap_figures(prep: Prepared, entry: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The perturbations (diverging colour scale, ± their own largest value), the rates
    against the random controls, and a few held-out images with the first UAP applied."""
    rows, perts = entry["rows"], extra["perturbations"]
    if not rows:
        return {}
    return {
        "perturbations": _perturbations(rows, perts),
        "rates": _rates(rows),
        "examples": _examples(prep, rows, perts),
    }


@plain_text
def transfer_figures(
    prep: Prepared, entry: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """Per backend: the surrogate × target heat map of transfer success (diagonal: white box),
    and one sample attacked on each surrogate, as every target model classifies it."""
    plt = pyplot()
    out: dict[str, Any] = {"matrices": {}, "examples": {}}
    for backend, result in entry["backends"].items():
        names = result["models"]
        m = np.array(result["matrix"], dtype=float) * 100
        n = len(names)
        fig, ax = plt.subplots(figsize=(1.2 * n + 2.2, 1.0 * n + 1.6))
        im = ax.imshow(m, cmap="cividis", vmin=0, vmax=100)
        ax.set_xticks(range(n), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        ax.set_xlabel("target model (success measured here)")
        ax.set_ylabel("surrogate model (PGD run here)")
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.1f} %",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if m[i, j] > 50 else "white",
                    fontweight="bold" if i == j else "normal",
                )
        fig.colorbar(im, ax=ax, shrink=0.8, label="success rate (%)")
        ax.set_title(f"transfer success, {backend} (diagonal: white box)", fontsize=9)
        fig.tight_layout()
        out["matrices"][backend] = png_uri(fig)
        plt.close(fig)

    first = next(iter(extra["images"]), None)
    if first is None:
        return out
    images = extra["images"][first]
    models = extra["models"]
    positions = np.asarray(images["_positions"])
    if not len(positions):
        return out
    lo, hi = prep.model.wrapper.input_range
    pos = int(positions[0])
    names = [k for k in images if k != "_positions"]
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(1.7 * (len(names) + 1), 2.4))
    show_image(axes[0], prep.data.x[pos], lo, hi)
    axes[0].set_title(f"original, label {prep.data.y[pos]}", fontsize=7)
    for k, name in enumerate(names):
        adv = np.asarray(images[name])[:1]
        preds = [f"{t}:{int(w.logits(adv).argmax(1)[0])}" for t, w in models.items()]
        show_image(axes[k + 1], adv[0], lo, hi)
        axes[k + 1].set_title(f"PGD on {name}\n" + " ".join(preds), fontsize=6)
    fig.tight_layout()
    out["examples"][first] = png_uri(fig)
    plt.close(fig)
    return out
