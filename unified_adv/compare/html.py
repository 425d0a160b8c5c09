"""The comparison report: the run report's template family (Jinja2, autoescape on, inline CSS,
the figure as a data URI), written with ``comparison.json`` into one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unified_adv import __version__
from unified_adv.errors import InputError
from unified_adv.evaluate.summary import strict_json
from unified_adv.files import atomic_write_bytes, atomic_write_text
from unified_adv.report import PALETTE, _env, plain_text, png_uri, pyplot


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _defence(row: dict[str, Any]) -> str:
    return "" if row["defence"] == "none" else f" [{row['defence']}, {row['evaluation']}]"


@plain_text
def worst_case_figure(worst: list[dict[str, Any]], a_name: str, b_name: str) -> str | None:
    """Worst-case robust accuracy of A and B per attack × ε, with each side's interval."""
    shown = [r for r in worst if r["difference"] is not None]
    if not shown:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(shown) + 1.2))
    for i, r in enumerate(shown):
        for side, colour, dy in (("a", PALETTE[0], -0.12), ("b", PALETTE[1], 0.12)):
            value, ci = r[side]["robust_accuracy"], r[side]["ci"]
            xerr = [[100 * (value - ci[0])], [100 * (ci[1] - value)]] if ci else None
            name = a_name if side == "a" else b_name
            label = _short(f"{side.upper()}: {name}") if i == 0 else None
            ax.errorbar(
                100 * value, i + dy, xerr=xerr, fmt="o", color=colour, capsize=3, label=label
            )
    labels = [_short(f"{r['attack_id']} @ {r['eps_text']}{_defence(r)}") for r in shown]
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("worst-case robust accuracy across backends (%), 95 % interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    uri = png_uri(fig)
    plt.close(fig)
    return uri


def write_comparison(out: Path, comparison: dict[str, Any]) -> Path:
    """``comparison.json`` and ``index.html`` in ``out``; the report's path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "comparison.json", strict_json(comparison))
    except OSError as exc:
        raise InputError.one(
            str(out), "--out", f"cannot write there: {exc.strerror or exc}"
        ) from None
    worst = [r for r in comparison["rows"] if r["worst_case"]]
    a, b = comparison["a"], comparison["b"]
    html = (
        _env()
        .get_template("compare.html.j2")
        .render(
            **comparison,
            title=f"{a['scenario']} vs {b['scenario']}",
            worst=worst,
            drops=sum(1 for r in worst if r.get("significant") and (r["difference"] or 0) < 0),
            figure=worst_case_figure(worst, a["scenario"], b["scenario"]),
            palette=PALETTE,
            version=__version__,
        )
    )
    path = out / "index.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
