"""Figures for the defences section: accuracy bars and Lim-style image strips."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from unified_adv.defences.randomness import reseed
from unified_adv.report import PALETTE, plain_text, png_uri, pyplot, show_image
from unified_adv.run.prepared import AttackPlan, Prepared, UnitOutcome


@plain_text
def _bars(summary: dict[str, Any]) -> str | None:
    """Accuracy per attack row: attacked, then each defence non-adaptive (light) and
    adaptive (dark); the gap between a pair is what an adaptive attacker wins back."""
    rows = summary.get("table") or []
    variants = summary.get("variants") or []
    if not rows or not variants:
        return None
    plt = pyplot()
    labels = [
        r["attack_id"] + (f"\nε={r['eps']:.3g}" if r["eps"] is not None else "") for r in rows
    ]
    groups = 1 + 2 * len(variants)
    width = 0.8 / groups
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) * groups / 3), 3.6))
    xs = np.arange(len(rows))

    def value(cell: dict[str, Any] | None) -> float:
        return np.nan if not cell or cell.get("accuracy") is None else 100 * cell["accuracy"]

    ax.bar(
        xs - 0.4 + width / 2,
        [value(r["attacked"]) for r in rows],
        width,
        color="#777777",
        label="no defence",
    )
    for k, v in enumerate(variants):
        colour = PALETTE[k % len(PALETTE)]
        base = xs - 0.4 + width * (1 + 2 * k) + width / 2
        ax.bar(
            base,
            [value(r["defences"][v["id"]]["non_adaptive"]) for r in rows],
            width,
            color=colour,
            alpha=0.45,
            label=f"{v['id']}, non-adaptive",
        )
        ax.bar(
            base + width,
            [value(r["defences"][v["id"]]["adaptive"]) for r in rows],
            width,
            color=colour,
            label=f"{v['id']}, adaptive",
        )
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = png_uri(fig)
    plt.close(fig)
    return out


@plain_text
def _strip_source(
    prep: Prepared, outcomes: list[UnitOutcome], plan: AttackPlan, count: int
) -> tuple[UnitOutcome, list[int], int] | None:
    """The unit a strip shows (largest eps, first backend, first shard), its rows (fooled
    samples first) and the eps index; None when there is nothing to show."""
    e_top = int(np.argmax(plan.spec.eps)) if plan.spec.eps else 0
    mine = [
        o
        for o in outcomes
        if o.ok
        and not o.unit.defence
        and o.unit.attack_index == plan.index
        and o.unit.eps_index == e_top
    ]
    if not mine:
        return None
    backend = sorted({o.unit.backend for o in mine})[0]
    first = next(
        o for o in sorted(mine, key=lambda o: o.unit.shard_index) if o.unit.backend == backend
    )
    assert first.arrays is not None
    pred = first.arrays["adv_logits"].argmax(1)
    pos = first.arrays["positions"]
    # Correctly classified samples the attack fooled: the ones a defence has to rescue.
    fooled = np.flatnonzero((pred != prep.data.y[pos]) & prep.correct[pos])
    rows = (
        list(fooled[:count])
        + [i for i in range(len(pos)) if i not in set(fooled)][: max(0, count - len(fooled))]
    )[:count]
    return (first, rows, e_top) if rows else None


def _through_defences(prep: Prepared, x_adv: np.ndarray) -> list[tuple[str, Any, np.ndarray]]:
    """Each defence's view of ``x_adv`` (one draw) and the undefended model's logits on it."""
    seen = []
    for v in prep.variants.values():
        reseed(v.wrapper, v.score_seed)
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x_adv))
            inner = v.wrapper.pre(xt) if v.wrapper.pre is not None else xt
        # What follows the defence is the undefended wrapper: one draw, shown and scored.
        logits = prep.model.wrapper.logits(inner.numpy())
        seen.append((v.id, inner.numpy(), logits))
    return seen


def _strip(prep: Prepared, first: UnitOutcome, rows: list[int]) -> Any:
    """One figure: a row per sample, original | attacked | after each defence."""
    plt = pyplot()
    assert first.arrays is not None
    lo, hi = prep.model.wrapper.input_range
    names = prep.data.class_names
    name = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
    pos = first.arrays["positions"]
    x = prep.data.x[pos[rows]]
    x_adv = first.arrays["x_adv"][rows]
    seen = _through_defences(prep, x_adv)
    cols = 2 + len(seen)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.5 * cols, 1.6 * len(rows) + 0.3), squeeze=False
    )
    clean_logits = prep.clean_logits[pos[rows]]
    for r in range(len(rows)):
        label = int(prep.data.y[pos[rows[r]]])
        panels = [
            (f"(a) original, label {name(label)}", x[r], clean_logits[r]),
            ("(b) attacked", x_adv[r], first.arrays["adv_logits"][rows[r]]),
        ]
        panels += [
            (f"({'cdefghij'[k]}) {vid}", img[r], lg[r]) for k, (vid, img, lg) in enumerate(seen)
        ]
        for c, (title, img, lg) in enumerate(panels):
            ax = axes[r][c]
            show_image(ax, img, lo, hi)
            p = int(np.argmax(lg))
            conf = float(softmax(lg)[p])
            colour = "#D55E00" if p != label else "black"
            ax.set_title(
                (f"{title}\n" if r == 0 else "") + f"{name(p)} ({100 * conf:.0f} %)",
                fontsize=7,
                color=colour,
            )
    fig.tight_layout()
    return fig


def _strips(prep: Prepared, outcomes: list[UnitOutcome], count: int = 3) -> list[dict[str, Any]]:
    """Per attack (largest ε, first backend): original, attacked, and the attacked image after
    each defence, as the classifier behind the defence receives it (one draw)."""
    plt = pyplot()
    figures = []
    for plan in prep.plans:
        source = _strip_source(prep, outcomes, plan, count)
        if source is None:
            continue
        first, rows, e_top = source
        fig = _strip(prep, first, rows)
        figures.append(
            {
                "attack_id": plan.spec.label,
                "eps": plan.spec.eps_values[e_top],
                "backend": first.unit.backend,
                "image": png_uri(fig),
            }
        )
        plt.close(fig)
    return figures


@plain_text
def defence_figures(
    prep: Prepared, summary: dict[str, Any], outcomes: list[UnitOutcome]
) -> dict[str, Any]:
    if not prep.variants:
        return {"bars": None, "strips": []}
    return {"bars": _bars(summary), "strips": _strips(prep, outcomes)}
