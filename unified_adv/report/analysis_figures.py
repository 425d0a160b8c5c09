"""Figures for the Ding & Möller analyses: heat maps, probability curves, morph strips, trends."""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_adv.analyses.base import ResultKey
from unified_adv.analyses.morph import MorphResult, threshold_sums
from unified_adv.catalogue.analyses import analysis_figures as figures_of
from unified_adv.report import PALETTE, plain_text, png_uri, pyplot, show_image
from unified_adv.run.prepared import Prepared


@plain_text
def heatmap(
    matrix: list[list[float | None]],
    title: str,
    fmt: str,
    names: list[str],
    *,
    xlabel: str = "target class (B)",
    ylabel: str = "source class (A)",
    vmin: float | None = None,
    vmax: float | None = None,
) -> str:
    plt = pyplot()
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(m, cmap="cividis", vmin=vmin, vmax=vmax)
    n = len(m)
    ax.set_xticks(range(n), names[:n] if len(names) >= n else range(n))
    ax.set_yticks(range(n), names[:n] if len(names) >= n else range(n))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(n):
        for j in range(n):
            if np.isfinite(m[i, j]):
                ax.text(
                    j,
                    i,
                    format(m[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if m[i, j] > mid else "white",
                )
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


def _example_pair(res: MorphResult) -> int | None:
    """A pair with a pop-up before the switch whose reverse exists (like the paper's Fig. 5)."""
    index = {(int(i), int(j)): k for k, (i, j) in enumerate(res.pairs)}
    for k, (i, j) in enumerate(res.pairs):
        if res.popup_before_switch[k] and (int(j), int(i)) in index:
            return k
    for k, (i, j) in enumerate(res.pairs):
        if (int(j), int(i)) in index:
            return k
    return None


@plain_text
def probability_curves(
    res: MorphResult, labels: np.ndarray, names: list[str]
) -> tuple[str, dict[str, Any]] | None:
    plt = pyplot()
    k = _example_pair(res)
    if k is None:
        return None
    i, j = (int(v) for v in res.pairs[k])
    rev = next(r for r, (a, b) in enumerate(res.pairs) if (int(a), int(b)) == (j, i))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2), sharey=True)
    info: dict[str, Any] = {}
    for ax, idx, title in ((axes[0], k, "forward"), (axes[1], rev, "reverse")):
        a, b = int(labels[res.pairs[idx, 0]]), int(labels[res.pairs[idx, 1]])
        probs = res.probs[idx].astype(np.float32)
        for c in range(probs.shape[1]):
            if c == a:
                ax.plot(
                    res.t,
                    probs[:, c],
                    marker="o",
                    markersize=3,
                    color=PALETTE[0],
                    label=f"{names[c]} (A)",
                )
            elif c == b:
                ax.plot(
                    res.t,
                    probs[:, c],
                    marker="*",
                    markersize=4,
                    color=PALETTE[1],
                    label=f"{names[c]} (B)",
                )
            elif probs[:, c].max() > 0.05:
                ax.plot(
                    res.t,
                    probs[:, c],
                    color=PALETTE[2 + c % 4],
                    linewidth=1.2,
                    label=f"{names[c]} (pop-up)",
                )
        thr = res.thresholds[idx]
        if np.isfinite(thr):
            ax.axvline(thr, color="black", linestyle="--", linewidth=1)
            ax.annotate(f"T = {thr:.2f}", (thr, 0.95), fontsize=8, ha="left")
        ax.set_title(f"{title}: {names[a]} → {names[b]}", fontsize=9)
        ax.set_xlabel("T")
        ax.legend(fontsize=7, loc="center right")
        info[title] = float(thr)
    axes[0].set_ylabel("probability")
    info["sum"] = info["forward"] + info["reverse"]
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out, info


@plain_text
def morph_strip(
    prep: Prepared, res: MorphResult, images: np.ndarray, names: list[str], frames: int = 11
) -> str | None:
    plt = pyplot()
    k = _example_pair(res)
    if k is None:
        return None
    lo, hi = prep.model.wrapper.input_range
    i, j = (int(v) for v in res.pairs[k])
    x1, x2 = prep.data.x[images[i]], prep.data.x[images[j]]
    picks = np.linspace(0, len(res.t) - 1, frames).round().astype(int)
    fig, axes = plt.subplots(1, frames, figsize=(1.05 * frames, 1.5))
    for ax, s in zip(axes, picks, strict=True):
        t = res.t[s]
        show_image(ax, ((1 - t) * x1 + t * x2).astype(np.float32), lo, hi)
        ax.set_title(f"T={t:.2f}\n{names[int(res.preds[k, s])]}", fontsize=7)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def histogram(values: list[float], title: str, xlabel: str, marker: float | None = None) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    ax.hist([v for v in values if np.isfinite(v)], bins=30, color=PALETTE[0])
    if marker is not None:
        ax.axvline(marker, color=PALETTE[5], linestyle="--", label=f"ideal {marker:.3f}")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def trend(monitor: list[dict[str, Any]]) -> str:
    plt = pyplot()
    labels = [m["checkpoint"] for m in monitor]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.plot(
        labels,
        [m["accuracy"] for m in monitor],
        marker="o",
        color=PALETTE[0],
        label="clean accuracy",
    )
    ax.set_ylabel("clean accuracy", color=PALETTE[0])
    ax.set_xlabel("checkpoint (epoch)")
    ax2 = ax.twinx()
    ri = [m.get("robustness_index") for m in monitor]
    ax2.plot(
        labels,
        [np.nan if v is None else v for v in ri],
        marker="s",
        color=PALETTE[1],
        label="robustness index",
    )
    ax2.set_ylabel("robustness index", color=PALETTE[1])
    ax.set_title("Training-state monitor", fontsize=10)
    fig.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


def class_names(prep: Prepared) -> list[str]:
    names = prep.data.class_names or [str(c) for c in range(prep.num_classes)]
    if len(names) < prep.num_classes:
        names = [str(c) for c in range(prep.num_classes)]
    return list(names)


@plain_text
def morph_figures(prep: Prepared, entry: dict[str, Any], res: MorphResult) -> dict[str, Any]:
    """The final checkpoint's threshold map, an example pair's curves and strip, the sums."""
    names = class_names(prep)
    final = entry["checkpoints"][-1]
    images = np.array([np.flatnonzero(prep.data.index == s)[0] for s in entry["image_samples"]])
    labels = prep.data.y[images]
    out: dict[str, Any] = {
        "thresholds": heatmap(
            final["threshold_matrix"], "mean class-switch threshold T", ".2f", names
        )
    }
    curves = probability_curves(res, labels, names)
    if curves:
        out["curves"], out["curves_info"] = curves
    out["strip"] = morph_strip(prep, res, images, names)
    out["sums"] = histogram(
        threshold_sums(res.pairs, res.thresholds).tolist(),
        "forward + reverse threshold",
        "T(A→B) + T(B→A)",
        final["threshold_sum"]["grid_ideal"],
    )
    return out


@plain_text
def walk_figures(prep: Prepared, entry: dict[str, Any], _result: Any = None) -> dict[str, Any]:
    """The final checkpoint's MAE and iteration maps of the first backend (they agree: see
    the agreement table, so one set of maps suffices)."""
    names = class_names(prep)
    out: dict[str, Any] = {}
    for backend, summary in entry["checkpoints"][-1]["backends"].items():
        out["mae"] = {
            backend: heatmap(
                summary["mae_matrix"], f"mean MAE to reach the target ({backend})", ".3f", names
            )
        }
        out["iterations"] = {
            backend: heatmap(
                summary["iterations_matrix"], f"mean iterations ({backend})", ".0f", names
            )
        }
        break
    return out


@plain_text
def pixel_flip_figures(
    prep: Prepared, entry: dict[str, Any], study: dict[str, Any]
) -> dict[str, Any]:
    """Kügler et al.'s Figures 4 and 5 for every configuration."""
    return {
        "by_angle": by_angle_plot(study),
        "heatmaps": {key: flip_heatmap(v["heatmap"], key) for key, v in study.items()},
    }


@plain_text
def analysis_figures(prep: Prepared, analysis: dict[str, Any]) -> dict[str, Any]:
    """Figures per analysis (final checkpoint), each from its registry entry, and the trend."""
    figs: dict[str, Any] = {"per_analysis": {}, "trend": None}
    for index, entry in enumerate(analysis["analyses"]):
        make = figures_of(entry["name"])
        result = analysis["results"].get(ResultKey(index))
        figs["per_analysis"][index] = make(prep, entry, result) if make else {}
    if len(analysis["monitor"]) > 1 and any(
        m.get("robustness_index") is not None for m in analysis["monitor"]
    ):
        figs["trend"] = trend(analysis["monitor"])
    return figs


@plain_text
def by_angle_plot(study: dict[str, Any]) -> str:
    """Kügler et al.'s Figure 4: adversarial share by line angle, per configuration."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for k, (key, v) in enumerate(study.items()):
        rows = v["by_angle"]
        ax.plot(
            [r["angle"] for r in rows],
            [r["share"] for r in rows],
            linewidth=1.1,
            color=PALETTE[k % len(PALETTE)],
            label=key,
        )
    for boundary in (0, 40, 180):
        ax.axvline(boundary, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("line angle α (°); decision boundaries at 0°/180° and 40°")
    ax.set_ylabel("adversarial flips / candidates")
    ax.set_title("one-pixel flips that change the class, by angle", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def flip_heatmap(heat: np.ndarray, key: str) -> str:
    """Kügler et al.'s Figure 5: where a flip succeeds, as a share of images (and models)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    im = ax.imshow(heat, cmap="cividis")
    ax.set_title(key, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out
