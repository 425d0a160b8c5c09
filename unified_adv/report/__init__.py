"""The self-contained HTML report: Jinja2 (autoescape on), inline CSS, PNGs as data URIs."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import numpy as np
from scipy.special import softmax

from unified_adv.files import atomic_write_bytes
from unified_adv.run.prepared import Prepared, UnitOutcome

# Okabe–Ito: a colour-blind-safe palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("unified_adv.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f} %"
    env.filters["num"] = lambda v, d=4: "–" if v is None else f"{v:.{d}g}"
    env.filters["enumerate_pairs"] = lambda pairs: [(str(i), p) for i, p in enumerate(pairs)]
    return env


#: Text in figures is shown as written: a class name such as ``$\\foo$`` (user data) is never
#: parsed as a mathtext formula or handed to LaTeX, which would fail the whole report.
F = TypeVar("F", bound=Callable[..., Any])
PLAIN_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}


def plain_text(make: F) -> F:
    """Make a figure function draw every text as written (no mathtext, no LaTeX), from the
    moment each text is created (``tight_layout`` draws before ``png_uri`` does)."""

    @functools.wraps(make)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(PLAIN_TEXT):
            return make(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: A figure showing an image larger than this (pixels per side) is encoded as JPEG: photos
#: (224x224 and up) and their perturbations compress badly as PNG (a 224x224 triptych of
#: three backends was 1.4 MB of PNG for two images); 8x8 digits stay crisp PNGs.
JPEG_ABOVE = 64
JPEG_QUALITY = 85


def png_uri(fig: Any) -> str:
    """The figure as a PNG data URI (JPEG when it shows images over ``JPEG_ABOVE`` pixels a
    side); every text in it drawn as plain text."""
    import matplotlib
    from matplotlib.image import AxesImage
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)
    photo = any(max(im.get_array().shape[:2]) > JPEG_ABOVE for im in fig.findobj(AxesImage))
    kind, extra = ("jpeg", {"pil_kwargs": {"quality": JPEG_QUALITY}}) if photo else ("png", {})
    buf = io.BytesIO()
    with matplotlib.rc_context(PLAIN_TEXT):  # texts made while drawing (ticks) too
        fig.savefig(buf, format=kind, dpi=110, bbox_inches="tight", **extra)
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def show_image(ax: Any, img: np.ndarray, lo: float, hi: float, **kw: Any) -> None:
    if img.shape[0] == 1:
        ax.imshow(
            img[0], cmap=kw.pop("cmap", "gray"), vmin=kw.pop("vmin", lo), vmax=kw.pop("vmax", hi)
        )
    else:
        ax.imshow(np.clip((np.transpose(img, (1, 2, 0)) - lo) / (hi - lo), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


#: Per backend, per data position: (the unit, its row), the prediction and its confidence.
_Slots = dict[str, dict[int, tuple[tuple[UnitOutcome, int], int, float]]]


def _top_eps_rows(plan: Any, outcomes: list[UnitOutcome]) -> _Slots:
    """Where each backend's examples of ``plan`` at its largest ε are (not the examples: a
    unit's are read from disk once, for the samples shown, by :func:`_examples`)."""
    per_backend: _Slots = {}
    e_top = int(np.argmax(plan.spec.eps)) if plan.spec.eps else 0
    for o in outcomes:
        if not (o.ok and o.unit.attack_index == plan.index and o.unit.eps_index == e_top):
            continue
        assert o.arrays is not None
        logits = o.arrays["adv_logits"]
        conf = softmax(logits, axis=1).max(1)
        slot = per_backend.setdefault(o.unit.backend, {})
        for j, p in enumerate(o.arrays["positions"]):
            slot[int(p)] = ((o, j), int(logits[j].argmax()), float(conf[j]))
    return per_backend


def _examples(per_backend: _Slots, chosen: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per backend, the examples of the chosen samples (by data position), each unit's
    examples read once."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for b, slot in per_backend.items():
        by_unit: dict[int, list[int]] = {}
        for p in chosen:
            by_unit.setdefault(id(slot[p][0][0]), []).append(p)
        out[b] = {}
        for positions in by_unit.values():
            unit = slot[positions[0]][0][0]
            assert unit.arrays is not None
            x_adv = unit.arrays["x_adv"]
            out[b].update({p: x_adv[slot[p][0][1]].copy() for p in positions})
    return out


@plain_text
def triptychs(prep: Prepared, outcomes: list[UnitOutcome], count: int) -> list[dict[str, Any]]:
    """Per attack (largest ε): original / perturbation / adversarial for each backend."""
    if count <= 0:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = prep.model.wrapper.input_range
    names = prep.data.class_names
    label = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
    figures = []
    for plan in prep.plans:
        per_backend = _top_eps_rows(plan, outcomes)
        if not per_backend:
            continue
        backends = sorted(per_backend)
        common = sorted(set.intersection(*(set(v) for v in per_backend.values())))
        # Prefer samples that some backend fooled: they are the ones worth looking at.
        fooled = [
            p for p in common if any(per_backend[b][p][1] != prep.data.y[p] for b in backends)
        ]
        chosen = (fooled + [p for p in common if p not in fooled])[:count]
        if not chosen:
            continue
        examples = _examples(per_backend, chosen)
        cols = 1 + 2 * len(backends)
        fig, axes = plt.subplots(
            len(chosen), cols, figsize=(1.6 * cols, 1.75 * len(chosen)), squeeze=False
        )
        for r, p in enumerate(chosen):
            x = prep.data.x[p]
            show_image(axes[r, 0], x, lo, hi)
            axes[r, 0].set_title(
                f"#{prep.data.index[p]} true {label(int(prep.data.y[p]))}\n"
                f"pred {label(int(prep.clean_pred[p]))} ({prep.clean_conf[p]:.0%})",
                fontsize=7,
            )
            for c, b in enumerate(backends):
                _, pred, conf = per_backend[b][p]
                x_adv = examples[b][p]
                delta = x_adv - x
                span = float(np.abs(delta).max()) or 1.0
                show_image(
                    axes[r, 1 + 2 * c],
                    delta.mean(0, keepdims=True),
                    lo,
                    hi,
                    cmap="PuOr",
                    vmin=-span,
                    vmax=span,
                )
                axes[r, 1 + 2 * c].set_title(f"{b}\nδ (±{span:.3g})", fontsize=7)
                show_image(axes[r, 2 + 2 * c], x_adv, lo, hi)
                colour = "#D55E00" if pred != prep.data.y[p] else "black"
                axes[r, 2 + 2 * c].set_title(
                    f"{b}\npred {label(pred)} ({conf:.0%})", fontsize=7, color=colour
                )
        fig.tight_layout()
        figures.append(
            {
                "attack_id": plan.spec.label,
                "eps": max(plan.spec.eps) if plan.spec.eps else None,
                "image": png_uri(fig),
            }
        )
        plt.close(fig)
    return figures


def _matrices(pairs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    backends = sorted({b for p in pairs for b in p["backends"]})
    grouped: dict[tuple[str, Any], dict[tuple[str, str], str]] = {}
    for p in pairs:
        grouped.setdefault((p["attack_id"], p["eps"]), {})[tuple(p["backends"])] = p["verdict"]  # type: ignore[index]
    return backends, [
        {"attack_id": a, "eps": e, "cells": cells} for (a, e), cells in grouped.items()
    ]


def render(out_dir: Path, context: dict[str, Any]) -> Path:
    backends, matrices = _matrices(context["crosscheck"]["pairs"])
    html = (
        _env()
        .get_template("index.html.j2")
        .render(**context, palette=PALETTE, matrix_backends=backends, matrices=matrices)
    )
    path = out_dir / "index.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path


def _lookup(
    outcomes: list[UnitOutcome], a_i: int, e_i: int, backend: str
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    table: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for o in outcomes:
        u = o.unit
        if o.ok and (u.attack_index, u.eps_index, u.backend) == (a_i, e_i, backend):
            assert o.arrays is not None
            x_adv = o.arrays["x_adv"]  # read once: a stored unit's come from disk
            for j, (p, t) in enumerate(zip(o.arrays["positions"], o.arrays["target"], strict=True)):
                table[(int(p), int(t))] = (x_adv[j], o.arrays["adv_logits"][j])
    return table


@plain_text
def disagreement_figures(
    prep: Prepared, outcomes: list[UnitOutcome], checks: dict[str, Any], rows: int = 3
) -> dict[str, str]:
    """For each pair that is neither identical nor equivalent: the worst disagreements,
    as original / first backend / second backend / their difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = prep.model.wrapper.input_range
    index = {plan.spec.label: plan for plan in prep.plans}
    figures: dict[str, str] = {}
    for k, pair in enumerate(checks["pairs"]):
        if pair["verdict"] in ("identical", "equivalent") or not pair["disagreements"]:
            continue
        plan = index[pair["attack_id"]]
        e_i = plan.spec.eps_values.index(pair["eps"])
        first, second = pair["backends"]
        ta = _lookup(outcomes, plan.index, e_i, first)
        tb = _lookup(outcomes, plan.index, e_i, second)
        chosen = pair["disagreements"][:rows]
        fig, axes = plt.subplots(len(chosen), 4, figsize=(6.8, 1.8 * len(chosen)), squeeze=False)
        for r, d in enumerate(chosen):
            key = (d["position"], d["target"])
            (xa, la), (xb, lb) = ta[key], tb[key]
            x = prep.data.x[d["position"]]
            show_image(axes[r, 0], x, lo, hi)
            axes[r, 0].set_title(f"#{d['sample']} label {d['label']}", fontsize=7)
            show_image(axes[r, 1], xa, lo, hi)
            axes[r, 1].set_title(f"{first}: pred {int(la.argmax())}", fontsize=7)
            show_image(axes[r, 2], xb, lo, hi)
            axes[r, 2].set_title(f"{second}: pred {int(lb.argmax())}", fontsize=7)
            gap = (xa - xb).mean(0, keepdims=True)
            span = float(np.abs(gap).max()) or 1.0
            show_image(axes[r, 3], gap, lo, hi, cmap="PuOr", vmin=-span, vmax=span)
            axes[r, 3].set_title(f"{first} − {second} (±{span:.2g})", fontsize=7)
        fig.tight_layout()
        figures[str(k)] = png_uri(fig)
        plt.close(fig)
    return figures
