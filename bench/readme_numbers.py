"""Regenerate README.md's numbers from runs of their scenarios and `make bench`'s results.

Each generated block lives between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->``
(a scenario's numbers: the scenario is re-run, its summary.json formatted) or between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (a benchmark's: bench/results_*.json as
the last `make bench` wrote it, read, never re-run). TABLES names each block's source and
formatter; blocks of one scenario share one run. ``--check`` rewrites nothing, prints a diff
and exits 1 when the README differs. The numbers are formatted here, not computed: whatever
summary.json or the results file says is what the README shows. Each scenario summary the
README quotes is kept in bench/readme_summaries/ (gzip), so that the tests and ``--stored``
compare the README with it without a run.

Usage:
    python bench/readme_numbers.py                 # re-run every scenario, rewrite (make readme-numbers)
    python bench/readme_numbers.py --check         # compare only (exit 1 and a diff if stale)
    python bench/readme_numbers.py --stored --check  # compare with the stored summaries (seconds)
    python bench/readme_numbers.py --only lim --summary lim=reports/lim/summary.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The backends bench/speed.py measured (its table has no other columns).
BACKENDS = ("art", "foolbox", "torchattacks")
#: The quickstart table's columns: every backend that runs one of its attacks.
QUICKSTART_BACKENDS = (*BACKENDS, "adv-lib", "secml-torch")
NAMES = {
    "art": "ART",
    "foolbox": "Foolbox",
    "torchattacks": "torchattacks",
    "adv-lib": "adv-lib",
    "secml-torch": "secml-torch",
}

Summary = dict[str, Any]


def _entries(summary: Summary, attack: str, norm: str | None = None) -> list[dict[str, Any]]:
    return [
        a
        for a in summary["attacks"]
        if a["attack"] == attack and (norm is None or a["norm"] == norm)
    ]


def _one(summary: Summary, attack: str, norm: str | None, eps: float | None, backend: str) -> dict[str, Any]:
    for a in _entries(summary, attack, norm):
        if a["backend"] == backend and (eps is None or _same(a["eps"], eps)):
            return a
    raise KeyError(f"summary.json has no {attack} {norm} eps={eps} on {backend}")


def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(float(a) - b) < 1e-9


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _verdict(summary: Summary, attack: str, norm: str | None, eps: float | None) -> str:
    """The cross-check's verdicts for one attack × ε: one word when every pair agrees."""
    pairs = [
        p
        for p in summary["crosscheck"]["pairs"]
        if p["attack"] == attack
        and (norm is None or p["norm"] == norm)
        and (eps is None or _same(p["eps"], eps))
    ]
    verdicts = {p["verdict"] for p in pairs}
    if len(verdicts) == 1:
        return verdicts.pop()
    if len(pairs) <= 3:
        return "; ".join(f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} {p['verdict']}" for p in pairs)
    # Many pairs: how many got each verdict, and whether the divergent ones are explained.
    counts = []
    for v in ("identical", "equivalent", "statistically consistent", "divergent"):
        same = [p for p in pairs if p["verdict"] == v]
        if same:
            explained = v == "divergent" and all(p["explained"] for p in same)
            counts.append(f"{len(same)} {v}" + (" (all explained)" if explained else ""))
    return ", ".join(counts) + " pairs"


def _row(label: str, cells: list[str], agreement: str) -> str:
    return f"| {label} | " + " | ".join(cells) + f" | {agreement} |"


def _ran(summary: Summary, attack: str, norm: str | None, backend: str) -> bool:
    return any(a["backend"] == backend for a in _entries(summary, attack, norm))


def quickstart_table(summary: Summary) -> str:
    """The opening table of README.md, from scenarios/quickstart.yaml's summary.json
    ("—" where a backend does not have the attack)."""
    columns = QUICKSTART_BACKENDS
    lines = [
        "| attack | " + " | ".join(NAMES[b] for b in columns) + " | cross-check verdict |",
        "|" + "---|" * (len(columns) + 2),
    ]
    fgsm = [
        pct(_one(summary, "fgsm", "linf", 0.1, b)["robust_accuracy"]) if _ran(summary, "fgsm", "linf", b) else "—"
        for b in columns
    ]
    lines.append(_row("FGSM L∞ ε=0.1, robust accuracy", fgsm, _verdict(summary, "fgsm", "linf", 0.1)))
    steps = (0.05, 0.1, 0.2)
    pgd = [
        " / ".join(f"{100 * _one(summary, 'pgd', 'linf', e, b)['robust_accuracy']:.1f}" for e in steps) + " %"
        if _ran(summary, "pgd", "linf", b)
        else "—"
        for b in columns
    ]
    verdicts = {_verdict(summary, "pgd", "linf", e) for e in steps}
    lines.append(
        _row(
            "PGD L∞ ε=0.05 / 0.1 / 0.2, robust accuracy",
            pgd,
            verdicts.pop() if len(verdicts) == 1 else " / ".join(_verdict(summary, "pgd", "linf", e) for e in steps),
        )
    )
    l2 = [
        pct(_one(summary, "pgd", "l2", 1.0, b)["robust_accuracy"]) if _ran(summary, "pgd", "l2", b) else "—"
        for b in columns
    ]
    lines.append(_row("PGD L2 ε=1, robust accuracy", l2, _verdict(summary, "pgd", "l2", 1.0)))
    for attack, label in (
        ("deepfool", "DeepFool, success / median L2"),
        ("cw_l2", "C&W L2 (100 steps, lr 0.05, c 1), success / median L2"),
    ):
        cells = []
        for b in columns:
            if not _ran(summary, attack, None, b):
                cells.append("—")
                continue
            a = _one(summary, attack, None, None, b)
            ties = a.get("n_ties", 0)
            cells.append(
                f"{pct(a['success_rate'])} / {_num(a['median_l2_fooled'])}"
                + (f" ({ties} ties)" if ties else "")
            )
        lines.append(_row(label, cells, _verdict(summary, attack, None, None)))
    return "\n".join(lines) + "\n\n" + pixel_line(summary) + "\n\n" + fingerprint_line(summary)


def pixel_line(summary: Summary) -> str:
    """The largest per-pixel gap of each backend pair on PGD L2 ε=1 (the cross-check's figure)."""
    gaps = [
        f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} {p['max_pixel_diff']:.3g}"
        for p in summary["crosscheck"]["pairs"]
        if p["attack"] == "pgd" and p["norm"] == "l2" and _same(p["eps"], 1.0)
    ]
    return "Largest per-pixel difference between backends on PGD L2 ε=1: " + ", ".join(gaps) + "."


def fingerprint_line(summary: Summary) -> str:
    model, data = summary["model"], summary["data"]
    held_out = model.get("held_out_accuracy")
    acc = f", held-out accuracy {100 * held_out:.1f} %" if held_out is not None else ""
    scoring = summary["provenance"].get("scoring", {})
    return (
        f"*{model['description']}{acc}; model fingerprint `{model['fingerprint'][:16]}` "
        f"(summary.json `model.fingerprint`); {data['n_evaluated']} images, clean accuracy "
        f"{pct(data['clean_accuracy'])}; torch {summary['provenance']['versions']['torch'].split('+')[0]}, "
        f"scoring in batches of {scoring.get('batch_size', '?')} on "
        f"{scoring.get('torch_threads', '?')} thread. Generated by `make readme-numbers`.*"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the one helper every generated table goes through."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def _pair(a: float | None, b: float | None, fmt: Callable[[float | None], str] = pct) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def _analysis(summary: Summary, name: str, mode: str | None = None) -> dict[str, Any]:
    for a in summary["analyses"]:
        if a["name"] == name and (mode is None or a.get("mode") == mode):
            return a
    raise KeyError(f"summary.json has no {name} analysis")


def _backends(names: list[str] | set[str]) -> str:
    return ", ".join(NAMES.get(b, b) for b in sorted(names))


# --- Lim (scenarios/lim.yaml): summary["defences"] -------------------------------------


def _lim_label(summary: Summary, row: dict[str, Any]) -> str:
    if row["attack"] == "gaussian_noise":
        params = next(a["params"] for a in summary["attacks"] if a["attack_id"] == row["attack_id"])
        return f"Gaussian noise, std {params['std']}"
    return f"{row['attack'].upper()}, ε = {row['eps_text']}"


def _lim_cell(cell: dict[str, Any]) -> str:
    adaptive = cell["adaptive"]
    text = _pair(cell["non_adaptive"]["accuracy"], adaptive and adaptive["accuracy"])
    eot = adaptive and adaptive.get("eot_samples", 1)
    return text + (f" (EOT {eot})" if eot and eot > 1 else "")


def lim_table(summary: Summary) -> str:
    """Lim's mitigation table: per attack × ε, clean, attacked, then per defence both ways."""
    d = summary["defences"]
    ids = [v["id"] for v in d["variants"]]
    rows = [
        [_lim_label(summary, r), pct(r["clean"]), pct(r["attacked"]["accuracy"])]
        + [_lim_cell(r["defences"][i]) for i in ids]
        for r in d["table"]
    ]
    header = ["attack", "(a) clean", "(b) attacked"] + [
        f"({'cdefgh'[k]}) + {i}: non-adaptive / adaptive" for k, i in enumerate(ids)
    ]
    clean = ", ".join(f"{v['id']} {pct(v['clean_accuracy'])}" for v in d["variants"])
    fgsm = [r for r in d["table"] if r["attack"] == "fgsm"]
    per_backend = "; ".join(
        f"{e['defence']} FGSM ε {e['eps_text']}: " + ", ".join(
            f"{NAMES[x['backend']]} {pct(x['accuracy'])}" for x in d["entries"]
            if x["evaluation"] == "adaptive" and x["defence"] == e["defence"] and x["eps_text"] == e["eps_text"]
        )
        for e in d["entries"]
        if e["evaluation"] == "adaptive" and e["backend"] == "art" and e["defence"] == "randomization"
    )
    return (
        table(header, rows)
        + f"\n\n{summary['data']['n_evaluated']} images. Clean accuracy behind each defence: {clean}"
        + f" (undefended {pct(fgsm[0]['clean'])}). Adaptive attack alone, per backend: {per_backend}."
        + "\n\n" + fingerprint_line(summary)
    )


# --- Zingade (scenarios/zingade.yaml): the uap and transfer analyses -------------------


def _uap_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if row["empty"]:
        return "empty UAP"
    return f"{pct(row['rate'])} ({pct(row['control_rate'])})"


def uap_table(summary: Summary) -> str:
    """R_f and R_s per norm × ζ, random control in brackets (ART's UAPs)."""
    uap = _analysis(summary, "uap")
    targets = sorted({r["target"] for r in uap["rows"] if r["kind"] == "targeted"})
    keys = list(dict.fromkeys((r["norm"], r["zeta"]) for r in uap["rows"]))
    cell = {(r["norm"], r["zeta"], r["target"]): r for r in uap["rows"]}
    rows = [
        [{"l2": "L2", "linf": "L∞"}[n], f"{z:g}"] + [_uap_cell(cell.get((n, z, t))) for t in (None, *targets)]
        for n, z in keys
    ]
    both = "; ".join(
        f"{r['norm']} ζ {r['zeta']:g} → {r['target']}: {pct(r['rate_other_classes'])} ours, "
        f"{pct(r['rate_all_images'])} the review's"
        for r in uap["rows"] if r["kind"] == "targeted" and not r["empty"]
    )
    header = ["norm", "ζ", "R_f (random control)"] + [f"R_s → {t}" for t in targets]
    return (
        f"{uap['eval_images']} held-out digits; fit on {uap['fit_images']} training digits; "
        f"R_s over {uap['settings']['success_over'].replace('_', ' ')}.\n\n" + table(header, rows)
        + f"\n\nR_s both ways: {both}.\n\n" + fingerprint_line(summary)
    )


def transfer_table(summary: Summary) -> str:
    """The surrogate × target success matrix (diagonal: white box), with the backends' agreement."""
    t = _analysis(summary, "transfer")
    runs = list(t["backends"].values())
    first = runs[0]
    same = [r["backend"] for r in runs if r["matrix"] == first["matrix"]]
    rows = [
        [s] + [f"**{pct(v)}**" if s == m else pct(v) for m, v in zip(first["models"], row)]
        for s, row in zip(first["models"], first["matrix"])
    ]
    agree = "identical on " + _backends(same) if len(same) == len(runs) else f"shown: {NAMES[first['backend']]}"
    norm = {"l2": "L2", "linf": "L∞"}[t["norm"]]
    return (
        f"{norm} ε = {t['eps']:g}, {first['n_samples']} samples; {agree}:\n\n"
        + table(["surrogate \\ target", *first["models"]], rows)
    )


# --- Ding & Möller (scenarios/ding_moller.yaml): morph, walks, RI per checkpoint -----


def _num_or_dash(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def ding_moller_table(summary: Summary) -> str:
    """Per checkpoint: accuracy, valid pairs, pop-ups, B, E and RI (summary["monitor"])."""
    morph = {c["checkpoint"]: c for c in _analysis(summary, "morph")["checkpoints"]}
    walk = {c["checkpoint"]: c for c in _analysis(summary, "targeted_walk")["checkpoints"]}
    rows = []
    for m in summary["monitor"]:
        c = morph[m["checkpoint"]]
        rows.append([
            m["checkpoint"], pct(m["accuracy"]), f"{c['valid_pairs']:,} / {c['pairs_total']:,}",
            _pair(c["popup_share"], c["all_pairs"]["popup_share"]),
            _pair(c["morph_balance"], c["all_pairs"]["morph_balance"], _num_or_dash),
            _num_or_dash(m["walk_effort"]), _num_or_dash(m["robustness_index"], ".1f"),
        ])
    final, fw = morph["final"], walk["final"]
    backends = fw["backends"]
    w = backends[summary["monitor"][-1]["walk_backend"]]
    identical = all(a["identical"] for a in fw["agreement"])
    header = ["checkpoint (epoch)", "accuracy", "valid pairs", "pop-up share (valid / all pairs)",
              "morph balance B (valid / all)", "walk effort E", "RI = 100·E·B"]
    return (
        f"Final model: pop-ups on {pct(final['popup_share'])} of {final['valid_pairs']:,} pairs, mean "
        f"forward + reverse threshold {final['threshold_sum']['mean']:.3f} (grid ideal "
        f"{final['threshold_sum']['grid_ideal']:.3f}), mean threshold {final['mean_threshold']:.3f}; "
        f"{w['walks']:,} targeted walks, {w['failures']} failures, reached in "
        f"{w['mean_iterations_reached']:.1f} steps on average (MAE {w['mean_mae_reached']:.3f}), "
        f"{'bit-identical on ' + _backends(backends) if identical else 'backends differ (see the report)'}. "
        "Per checkpoint, on the pairs and walks valid for it:\n\n" + table(header, rows)
        + "\n\n" + fingerprint_line(summary)
    )


# --- Possas (scenarios/possas.yaml): the quantile-bucket table -------------------------


def possas_table(summary: Summary) -> str:
    """Top-1 / top-5 error per confidence bucket and method (the primary backend's table)."""
    q = _analysis(summary, "confidence_buckets", "quantile")
    paper = _analysis(summary, "confidence_buckets", "paper")
    names = q["bucket_names"]
    rows = [
        [f"{t['method']} {t['gradient'].replace('_', ' ')}"]
        + [_pair(t["buckets"][b]["top1"], t["buckets"][b]["top5"]) for b in names]
        for t in q["tables"][q["primary_backend"]]
    ]
    counts = " / ".join(str(q["bucket_counts"][b]) for b in names)
    paper_counts = ", ".join(f"{paper['bucket_counts'].get(b, 0)} {b}" for b in paper["bucket_names"])
    return (
        f"{q['n_samples']} samples; median top-1 confidence {q['confidence_quantiles']['0.5']:.6f}; "
        f"paper thresholds: {paper_counts}; quantile buckets of {counts} samples, edges "
        + " and ".join(f"{e:.7f}" for e in q["edges"])
        + f" ({q['ranking']}); ε = {q['eps']:g}, BIM {q['steps']} steps of {q['step_size']:g}; "
        f"largest difference between backends {q['backend_spread']:.3g}. Top-1 / top-5 error "
        f"({NAMES.get(q['primary_backend'], q['primary_backend'])}):\n\n"
        + table(["method", *names], rows) + "\n\n" + fingerprint_line(summary)
    )


# --- Kügler (scenarios/kugler.yaml): the pixel-flip study ------------------------------


def kugler_table(summary: Summary) -> str:
    """Per D × angle step: adversarial share, its range over models, images with a flip, away-from-X."""
    study = _analysis(summary, "pixel_flip_study")
    rows = [
        [f"{c['size']}×{c['size']} @ {c['angle_step']:g}°", str(c["images"]), pct2(c["adversarial_share"]),
         f"{pct2(min(c['adversarial_share_per_model']))[:-2]}–{pct2(max(c['adversarial_share_per_model']))}",
         pct(c["images_with_adversarial_flip"]),
         f"{'holds' if c['away_from_x']['holds'] else 'does not hold'} "
         f"({100 * c['away_from_x']['top_share_on_x']:.0f} % of top cells on X)"]
        for c in study["configs"]
    ]
    header = ["configuration", "images", "adversarial share", "per model",
              "images with an adversarial flip", "flips away from the X"]
    searches = "; ".join(
        f"{NAMES[s['backend']]} `{s['attack_id']}` ({s['pixels']} px) {pct(s['success_rate'])} of {s['n']} "
        f"images (exhaustive one-pixel flips on those: {pct(s['exhaustive_upper_bound'])})"
        for s in study["search_comparison"]
    )
    ub = study["upper_bound"]
    return (
        table(header, rows) + f"\n\nOn the {ub['images']} images of the scenario's own data and model, "
        f"exhaustive search finds a one-pixel adversarial flip for {pct(ub['share_with_adversarial_flip'])} "
        f"of images. Differential evolution: {searches}.\n\n"
        + fingerprint_line(summary)
    )


def pct2(x: float) -> str:
    return f"{100 * x:.2f} %"


# --- Performance (bench/results_*.json, written by `make bench`; nothing is re-run) ----


def _ms(x: float) -> str:
    return f"{1000 * x:.2f}"


def overhead_table(res: Summary) -> str:
    rows = [
        [f"{r['attack']} ({r['samples']})", NAMES[r["backend"]], f"{r['ours_s']:.3f} s",
         f"{r['direct_s']:.3f} s", f"{r['ratio']:.3f}",
         f"{r['fixed_cost_ms']:.1f} ms" if r["fixed_cost_ms"] > 0 else "< 0"]
        for r in res["rows"]
    ]
    long = [r["ratio"] for r in res["rows"] if r["ours_s"] >= 0.1]
    return (
        table(["attack (samples)", "backend", "unified-adv", "direct", "ratio", "fixed cost"], rows)
        + f"\n\nEvery unit of ≥ 100 ms is within {max(long):.3f} of the library; identical adversarial "
        f"examples on {sum(r['identical'] for r in res['rows'])} of {len(res['rows'])} rows; forward limit "
        f"in this run {res['forward_images_per_s']:,.0f} images/s. {_machine(res)}"
    )


def _machine(res: Summary) -> str:
    m = res["machine"]
    text = m if isinstance(m, str) else f"{m['machine']}, {m['cpu_count']} CPUs, torch {m['torch']}, {m['torch_threads']} threads"
    return f"*`{res.get('_path', 'bench')}`: {text}.*"


def speed_table(res: Summary) -> str:
    attacks = res["attacks"]
    rows = []
    for name, per in attacks.items():
        cells = []
        for b in BACKENDS:
            r = per.get(b)
            slow = r is not None and r["ratio_to_fastest"] >= 10
            ms = r and _ms(r["seconds_per_sample"])
            cells.append("—" if r is None else (f"**{ms}**" if slow else ms) + f" / {100 * r['success_rate']:.0f} %"
                         + (f" ({r['ratio_to_fastest']:.0f}×)" if slow else ""))
        rows.append([name, *cells])
    return table(["attack", *(NAMES[b] for b in BACKENDS)], rows) + "\n\n" + _machine(res)


def scaling_line(res: Summary) -> str:
    rows = res["rows"]
    col = lambda key, fmt: " / ".join(format(r[key], fmt) for r in rows)  # noqa: E731
    return (
        f"{col('samples', ',')} samples take {col('run_seconds', '.1f')} s with a peak resident memory of "
        f"{col('peak_rss_mib', '.0f')} MiB. Time grows linearly: {res['slope_ms_per_sample']:.1f} ms per "
        f"sample (R² {res['r2']:.3f}) on top of {res['intercept_s']:.1f} s of fixed cost. {_machine(res)}"
    )


def pixelflip_table(res: Summary) -> str:
    engines = ("forward", "bruteforce", "generic", "fast")
    rows = [
        [str(s["size"])] + [
            f"{s['candidates_per_s'][e]:,.0f} cand/s ({s['ratio_to_forward'][e]:.3g}×)" for e in engines
        ]
        for s in res["speeds"]
    ]
    de = res["de_comparison"]
    m = de["methods"]
    found = ", ".join(
        f"{NAMES.get(k, k)} {round(v['success_rate'] * de['images'])} / {de['images_with_adversarial_flip']} "
        f"in {v['seconds']:.2f} s"
        for k, v in m.items()
    )
    return (
        table(["D", "forward limit", "brute force", "generic", "fast"], rows)
        + f"\n\nSearch-based one-pixel attacks vs the exhaustive upper bound (D = {de['size']}, "
        f"{de['angle_step']:g}°, {de['images']} images, {de['images_with_adversarial_flip']} with an "
        f"adversarial flip; DE with {de['params']['pixels']} pixel, {de['params']['steps']} steps, popsize "
        f"{de['params']['popsize']}): {found}. {_machine(res)}"
    )


def engines_table(res: Summary) -> str:
    morph, flip = res["morph"], res["pixelflip"]["speeds"]
    fast = " / ".join(f"{s['candidates_per_s']['fast']:,.0f}" for s in flip)
    fwd = " / ".join(f"{s['candidates_per_s']['forward']:,.0f}" for s in flip)
    ratio = " / ".join(f"{s['ratio_to_forward']['fast']:.3g}" for s in flip)
    sizes = " / ".join(str(s["size"]) for s in flip)
    rows = [
        [f"morph sweep ({morph['pairs']:,} pairs × {morph['steps']} steps = {morph['images']:,} images) vs the "
         "model's batched forward pass on as many images", f"{morph['sweep_images_per_s']:,.0f} images/s",
         f"{morph['forward_images_per_s']:,.0f} images/s", f"{morph['ratio_sweep_to_forward']:.2f}"],
        [f"exhaustive one-pixel flips, fast engine, LineCNN at D = {sizes} vs brute-force forward limit",
         f"{fast} cand/s", f"{fwd} cand/s", ratio],
    ]
    return table(["benchmark", "ours", "reference", "ratio"], rows) + f"\n\n*`make bench` total: {res['total_seconds'] / 60:.1f} min.*"


def scaleout_table(res: Summary) -> str:
    label = {"in_process": "in process (1 thread)", "workers_1": "1 worker", "workers_2": "2 workers"}
    rows = [
        [label.get(r["run"], r["run"]), f"{r['median_s']:.2f} s", f"{r['candidates_per_s']:,.0f}",
         "—" if r["speedup_vs_1_worker"] is None else f"{r['speedup_vs_1_worker']:.2f}×"]
        for r in res["rows"]
    ]
    busy = [t for run in res["worker_busy_s"]["workers_2"] for t in run.values()]
    one = next(r["median_s"] for r in res["rows"] if r["run"] == "workers_1")
    return (
        f"{res['images']:,} images, {res['candidates']:,} candidates, {res['tasks']} tasks of "
        f"{res['shard_images']} images, {res['repeats']} repetitions; every run's result equals the "
        f"in-process one: {res['all_equal']}.\n\n" + table(["run", "median", "candidates/s", "speed-up vs 1 worker"], rows)
        + f"\n\nWith 2 workers each was busy {min(busy):.1f}–{max(busy):.1f} s against an ideal {one / 2:.1f} s "
        f"(half the 1-worker median). {_machine(res)}"
    )


def _components_line(backend: str, c: dict[str, Any]) -> str:
    """One library's components run alone, in its order, against its own ensemble."""
    alone = ", ".join(f"{k} {v}" for k, v in c["alone"].items())
    first = ", ".join(f"{k} {v}" for k, v in c["first_fooled_by"].items())
    line = (
        f"{NAMES[backend]} ({' → '.join(c['order'])}): alone {alone}; first to fool: {first}; "
        f"recomputed ensemble {c['own_fooled']}, the library's {c['library_fooled']} "
        f"({c['only_own']} only by the components, {c['only_library']} only by the library's "
        f"ensemble, McNemar p = {c['p']:.2g}); Square alone fools {c['square_only']} that no "
        f"white-box component does"
    )
    won = c.get("library_fooled_first_by")
    if won:
        line += (
            f"; ART's own record (its targeted pass counted under the same component) gives "
            f"Square {won['square']} first, APGD-CE {won['apgd-ce']}, APGD-DLR {won['apgd-dlr']}"
        )
    return line


def autoattack_table(res: Summary) -> str:
    """bench/autoattack.py: AutoAttack standard per backend (time, robust accuracy, ratio to
    torchattacks called directly), PGD-40 beside it, and the per-sample comparisons."""
    n, t, pgd = res["samples"], res["timing"], res.get("versus_pgd", {})
    label = {"art": "ART", "torchattacks": "torchattacks", "torchattacks_direct": "torchattacks, called directly"}
    rows = [
        [
            label[k],
            f"{r['median_cpu_s']:.1f} s",
            f"{r['median_s']:.1f} s",
            pct(r["median_robust"]),
            f"{r['ratio_to_direct']:.3f}",
            f"{pgd[k]['pgd_robust']} / {n}" if k in pgd else "—",
        ]
        for k, r in t.items()
    ]
    parts = [_components_line(b, c) for b, c in res.get("components", {}).items()]
    between = res["between_libraries"]
    return (
        table(["backend", "median CPU time", "median wall time", "robust accuracy", "CPU time ÷ direct", "robust under PGD-40"], rows)
        + f"\n\n{n} digits, L∞ eps {res['eps']:g}, median of {res['runs']} runs (ART: "
        f"{res['art_runs']}), one torch thread, the ratio of CPU times (the machine was shared: wall "
        f"times are inflated by the other processes, CPU times much less); unified-adv's torchattacks "
        f"run gave the direct call's adversarial examples bit for bit in "
        f"{sum(t['torchattacks_direct']['identical'])} of {res['runs']} runs; PGD-40: step 1/100, "
        f"no random start. Per sample (run 0): ART's and torchattacks' AutoAttack both fool "
        f"{between['both']}, only ART {between['only_art']}, only torchattacks "
        f"{between['only_torchattacks']} (McNemar p = {between['mcnemar_p']:.2g}). Components run alone "
        f"(the first two on every sample, the rest on the samples those left): "
        + "; ".join(parts)
        + f". {_machine(res)}"
    )


# --- README prose figures (bench/results_audit.json, written by bench/audit_figures.py) -----


def _g(x: float | None, digits: int = 2) -> str:
    """A small measured quantity: 2 significant digits, below 0.01 as 4.2e-3."""
    if x is None:
        return "—"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.1e}".replace("e-0", "e-")
    return f"{x:.{digits}g}"


def _audit_note(res: Summary) -> str:
    return (
        f"*`bench/audit_figures.py` (its steps: {res['total_seconds'] / 60:.1f} min wall on a shared machine, "
        f"{res['total_cpu_seconds'] / 60:.1f} min of CPU), {_machine(res)[1:]}"
    )


def audit_lbfgs_line(res: Summary) -> str:
    r = res["lbfgs"]
    return (
        f"On {r['n']} digits it reaches {r['reached']}/{r['n']} targets (median L2 {r['median_l2']:.2f} "
        f"for target (y+1) mod 10) in {r['seconds']:.0f} s ({r['cpu_seconds']:.0f} s of CPU). {_audit_note(res)}"
    )


def audit_scoring_line(res: Summary) -> str:
    cw, sq = res["scoring"]["cw_l2"], res["scoring"]["square"]
    return (
        f"On {res['scoring']['n']} digits (C&W, 10 steps; `only_correct`) Foolbox's robust accuracy "
        f"computed on its returned images would be {cw['robust_accuracy_on_returned']:.3f}; it is "
        f"{cw['robust_accuracy']:.3f}, as its own per-sample successes ({pct(cw['success_rate'])}) say, "
        f"and its median L2 is {cw['median_l2_fooled']:.3f} over the fooled samples instead of "
        f"{cw['median_l2_all']:.3f} (zero images included). torchattacks' Square (L∞ ε 0.1, 100 queries, "
        f"{pct(sq['success_rate'])} success) has a median L∞ of {_g(sq['median_linf_all'])} over all samples "
        f"(the unchanged failed ones included) and {_g(sq['median_linf_fooled'])} over the fooled ones."
    )


def audit_ties_line(res: Summary) -> str:
    t = res["deepfool_ties"]
    closest = ", ".join(
        f"{NAMES[b]}'s by {_g(t[b]['closest_success_above_margin'])}" for b in ("foolbox", "art")
    )
    return (
        f"Measured on the quickstart's {t['n']} DeepFool digits: torchattacks' DeepFool leaves "
        f"{t['torchattacks']['ties']} samples below the margin (ART {t['art']['ties']}, Foolbox "
        f"{t['foolbox']['ties']}); the closest successes lie above it, {closest}."
    )


def audit_noise_line(res: Summary) -> str:
    n = res["noise_scale"]
    pooled, q = n["pooled_std"], n["per_image_std"]
    share = lambda std, of: f"{100 * std / of:.0f} %"  # noqa: E731
    return (
        f"On the {n['images']} held-out digits in [0, 1] the std 0.1 is {share(0.1, pooled)} of the pooled "
        f"pixel std ({pooled:.3f}), {share(0.1, q['q95'])[:-2]}–{share(0.1, q['q05'])} of the per-image std "
        f"(5–95 % of images), {share(0.1, n['per_position_std_median'])} of the per-position std of the "
        f"{n['inked_positions']} inked positions; the std 0.3 is {share(0.3, pooled)} of the pooled std."
    )


def audit_builtin_line(res: Summary) -> str:
    r, s = res["retrain"], res["scoring_spread"]
    return (
        f"`digits-mlp` retrained on seeds {r['seeds'][0]}–{r['seeds'][-1]} reaches "
        f"{100 * min(r['accuracy']):.1f}–{pct(max(r['accuracy']))} held-out accuracy (the shipped seed 0: "
        f"{pct(r['shipped'])}). The same 10 digits scored in a batch of 10 or 120, on 1 or 2 threads, give "
        f"logits differing by up to {_g(s['max_abs_diff'])}. {_audit_note(res)}"
    )


def _df_range(r: Summary) -> str:
    return (
        f"**DeepFool at [0, 255]** ({r['n']} digits): plain ART median L2 {r['plain_255_median_l2']:,.0f}, "
        f"{r['plain_inflation']:.1f} times 255 × its {r['plain_01_median_l2']:.3f} at [0, 1]; through the "
        f"adapters, [0, 255] vs [0, 1]: ART {r['art_l2_255']:.2f} vs {r['art_l2_01']:.4f}, Foolbox "
        f"{r['foolbox_l2_255']:.2f} vs {r['foolbox_l2_01']:.4f}."
    )


def _df_candidates(c: Summary) -> str:
    return (
        f"**DeepFool, 3 candidates**: plain ART leaves {c['plain_unattacked']} of {c['n']} digits "
        f"unattacked, median L2 {c['plain_median_l2']:.2f} vs Foolbox's {c['foolbox_median_l2']:.2f}; "
        f"through the adapter {c['art_median_l2']:.3f}."
    )


def _df_clipping(g: Summary) -> str:
    return (
        f"**DeepFool, clipping and offset**: median per-sample L2 gap ART–Foolbox {_g(g['clipped'])}, "
        f"{_g(g['unclipped'])} without the clipping, {_g(g['no_offset'])} without Foolbox's offset too."
    )


def _cw_stall(c: Summary) -> str:
    cols = lambda d: " / ".join(f"{v:.3f}" for v in d.values())  # noqa: E731
    its = lambda d: " / ".join(d)  # noqa: E731
    return (
        f"**C&W** ({c['n']} digits, lr 0.05, c 1): ART median L2 {cols(c['art'])} at "
        f"{its(c['art'])} iterations, Foolbox {cols(c['foolbox'])} at {its(c['foolbox'])}; ART with the "
        f"hinge gradient {cols(c['hinge'])} at {its(c['hinge'])}; median per-sample L2 gap to Foolbox at "
        f"100 iterations {c['gap_before']:.3f}, {c['gap_after']:.3f} with the hinge gradient."
    )


def _cw_rule(rule: Summary) -> str:
    return (
        f"**C&W binary search** (from c = 0.01, 4 search steps of 20 iterations): Foolbox fools "
        f"{rule['x10']['fooled']} of {rule['x10']['n']} digits with its ×10 (c up to "
        f"{rule['x10']['c_max']:g}), {rule['x2']['fooled']} with ×2 (c up to {rule['x2']['c_max']:g})."
    )


def _boundary(b: Summary) -> str:
    runs = ", ".join(
        f"{v['median_l2']:.2f} with {k.replace('x', ' × ')} ({v['queries']:,} queries)" for k, v in b.items()
    )
    return f"**Boundary** (ART alone, 20 steps, {next(iter(b.values()))['n']} digits): median L2 {runs}."


def _mifgsm(m: Summary) -> str:
    return (
        f"**MI-FGSM** (L∞ ε 0.2, 10 steps, {m['n']} digits): largest pixel difference ART–Foolbox "
        f"{m['art_foolbox']:.2f}, ART–torchattacks {_g(m['art_torchattacks'])}."
    )


def _pgd_l2(p: Summary) -> str:
    return (
        f"**L2 PGD** (ε 1, 20 steps of 1/8, {p['n']} digits): largest pixel difference ART–Foolbox "
        f"{_g(p['order_gap'])}, {_g(p['order_gone'])} on a range the attack never reaches; torchattacks–Foolbox "
        f"{p['batch_gap']:.3f} in a batch of {p['batch']} copies, {p['single_gap']:.3f} one digit per call."
    )


#: The experiments of bench/audit_figures.py behind "Known differences between the backends".
DIFFERENCES: dict[str, Callable[[Summary], str]] = {
    "mifgsm": _mifgsm, "deepfool_range": _df_range, "deepfool_candidates": _df_candidates,
    "deepfool_clipping": _df_clipping, "cw_stall": _cw_stall, "cw_search_rule": _cw_rule,
    "boundary": _boundary, "pgd_l2": _pgd_l2,
}


def audit_differences(res: Summary) -> str:
    """The figures of "Known differences between the backends", one bullet per experiment; an
    experiment missing from the results file is named, not guessed."""
    bullets = [fmt(res[k]) for k, fmt in DIFFERENCES.items() if k in res]
    missing = [k for k in DIFFERENCES if k not in res]
    if missing:
        bullets.append(f"Not measured yet: {', '.join(missing)} (`python bench/audit_figures.py --only "
                       f"{' '.join(missing)}`).")
    return "\n".join(f"- {x}" for x in bullets) + "\n\n" + _audit_note(res)


def lim_eot_line(summary: Summary) -> str:
    """Success of the adaptive (EOT) FGSM on the randomization defence per backend, and the pairs' verdicts."""
    d = summary["defences"]
    adaptive = [e for e in d["entries"] if e["defence"] == "randomization" and e["evaluation"] == "adaptive"]
    parts = []
    for eps in dict.fromkeys(e["eps_text"] for e in adaptive):
        rates = ", ".join(f"{NAMES[e['backend']]} {pct(e['success_rate'])}" for e in adaptive if e["eps_text"] == eps)
        verdicts = "; ".join(
            f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} `{p['verdict']}`"
            + ("" if p["explained"] is None else " (explained)" if p["explained"] else " (unexplained)")
            for p in d["crosscheck"] if p["defence"] == "randomization" and p["eps_text"] == eps
        )
        parts.append(f"ε {eps}: success {rates}; {verdicts}")
    eot = adaptive[0]["eot_samples"]
    return f"`lim.yaml`, randomization, FGSM with EOT {eot}, {summary['data']['n_evaluated']} images — " + ". ".join(parts) + "."


def at_size_table(res: Summary) -> str:
    """bench/at_size.py: unified-adv vs the library called directly vs the f+b limit."""
    rows = []
    for key in ("at_32", "at_224"):
        for r in res.get(key, {}).get("rows", []):
            rows.append([
                f"{r['attack']} ({r['steps']} step{'s' if r['steps'] > 1 else ''})",
                f"{r['images']} × {r['side']}²", NAMES[r["backend"]], f"{r['ours_s']:.2f} s",
                f"{r['direct_s']:.2f} s", f"{r['ratio']:.3f}", f"{r['limit_s']:.2f} s",
                f"{r['ratio_to_limit']:.1f}×",
            ])  # fmt: skip
    long = [r for k in ("at_32", "at_224") for r in res.get(k, {}).get("rows", []) if r["ours_s"] >= 1]
    worst = max(long, key=lambda r: r["ratio"]) if long else None
    tail = (
        f"\n\nEvery unit of ≥ 1 s is within {worst['ratio']:.3f}× of the library "
        f"({worst['attack']}, {NAMES[worst['backend']]}, {worst['images']} × {worst['side']}²). "
        if worst else "\n\n"
    )
    clock = next((r.get("clock", "wall") for k in ("at_32", "at_224") for r in res.get(k, {}).get("rows", [])), "wall")
    unit = " (CPU)" if clock == "cpu" else ""
    note = (
        "Times are the CPU seconds of the bench's process (one torch thread: its work; other "
        "processes on the shared machine inflate wall time, which the results file also "
        "records), medians of the repetitions. " if clock == "cpu" else ""
    )
    return (
        table(["attack", "images", "backend", f"unified-adv{unit}", f"direct{unit}", "ratio", "f+b limit", "× limit"], rows)
        + tail + note + "Commands (each run kept the parts it did not redo): "
        + "; ".join(f"`python bench/at_size.py {c.strip()}`" for c in res.get("command", "").split(";"))
        + ". " + _machine(res)
    )


def at_size_memory_line(res: Summary) -> str:
    """bench/at_size.py: peak RSS as images grow; the 224x224 report's time and size."""
    mem, rep = res.get("memory"), res.get("report")
    if mem is None or rep is None:
        return f"Memory and report: not measured in this run. {_machine(res)}"
    rows = mem["rows"]
    col = lambda key, fmt: " / ".join(format(r[key], fmt) for r in rows)  # noqa: E731
    backends = ", ".join(NAMES[b] for b in mem.get("backends", ["torchattacks"]))
    return (
        f"FGSM on {backends} through `unified_adv.run` at 32×32×3 (cross-check and report "
        f"included), `execution.batch_size` {rows[0]['batch_size']}, shards of "
        f"{mem.get('shard_size', 512)}, each size in its own process: {col('images', ',')} images "
        f"take {col('run_seconds', '.0f')} s with a peak resident memory of "
        f"{col('peak_rss_mib', '.0f')} MiB, of which the run itself (above the loaded libraries, "
        f"model and images) {col('run_increment_mib', '.0f')} MiB: "
        f"{mem['run_increment_mib_per_1000_images']:.1f} MiB more per 1,000 images, while the "
        f"images themselves are {mem['data_mib_per_1000_images']:.1f} MiB per 1,000. The report "
        f"of a 224×224×3 run ({rep['images']} images, FGSM on three backends) takes "
        f"{rep['report_seconds']:.1f} s to evaluate, write and render; its index.html is "
        f"{rep['index_html_bytes'] / 1024:.0f} KiB. " + _machine(res)
    )


def _shapes_cell(a: dict[str, Any]) -> str:
    l2 = a.get("median_l2_fooled")
    extra = f", median L2 {l2:.3f}" if a["eps"] is None and l2 is not None else ""
    n = a.get("n_ties") or 0
    ties = f" ({n} tie{'s' if n > 1 else ''})" if n else ""
    return f"{pct(a['success_rate'])}{ties}{extra}, {a['time_s']:.1f} s"


def _pairs_verdict(pairs: list[dict[str, Any]]) -> str:
    """The cross-check's verdicts of one attack × ε, each divergence explained or not."""
    said = [
        p["verdict"] + ("" if p["explained"] is None else " (explained)" if p["explained"] else " (unexplained)")
        for p in pairs
    ]
    if len(set(said)) == 1:
        return said[0]
    return "; ".join(f"{NAMES[p['backends'][0]]}–{NAMES[p['backends'][1]]} {v}" for p, v in zip(pairs, said))


def shapes_example_line(res: Summary) -> str:
    """bench/shapes_example.py: the cifar_shapes example made, trained and run as a user would."""
    t, r = res["train"], res["run"]
    rows: dict[tuple[str, float | None], list[str]] = {}
    for a in r["attacks"]:
        label = f"{a['attack']} ε {a['eps_text']}" if a["eps"] is not None else a["attack"]
        row = rows.setdefault((a["attack"], a["eps"]), [label, "—", "—", "—", "—"])
        row[1 + BACKENDS.index(a["backend"])] = _shapes_cell(a)
    for (attack, eps), row in rows.items():
        pairs = [p for p in r.get("crosscheck", []) if p["attack"] == attack and p["eps"] == eps]
        row[4] = _pairs_verdict(pairs) if pairs else "—"
    findings = ", ".join(f"`{c}`" for c in r["findings"]) or "none"
    command = f"python bench/shapes_example.py {res.get('command', '')}".strip()
    return (
        f"The data ({t['train_images']:,} training, {t['test_images']:,} test images) take "
        f"{t['data_seconds']:.0f} s to make; the ResNet-18 trains in {t['train_seconds']:.0f} s "
        f"({t['epochs']} epochs) to {pct(t['test_accuracy'])} on the held-out test split "
        f"(weights `resnet18_shapes.safetensors` SHA-256 `{t['weights_sha256'][:16]}`: a retrain "
        f"writes the same bytes; the TorchScript file's own fingerprint differs per save, as torch "
        f"writes a random serialization id into it). "
        f"`{r['command']}` on {r['n_evaluated']} test images: clean accuracy "
        f"{pct(r['clean_accuracy'])}, {r['n_attacked']} attacked, {r['units_ok']} of {r['units']} units "
        f"ok in {r['seconds']:.0f} s, peak RSS of the whole process {r['peak_rss_mib']:,.0f} MiB "
        f"({'under' if r['under_limit'] else 'over'} {r['limit_gib']} GiB), findings: {findings}. "
        f"Success rate per backend (DeepFool: median L2 of the fooled), time per unit, and the "
        f"cross-check's verdict:\n\n"
        + table(["attack", *(NAMES[b] for b in BACKENDS), "cross-check"], list(rows.values()))
        + f"\n\nCommand: `{command}`. " + _machine(res)
    )


#: Every generated block: its source (a scenario that is run, or a `make bench` results file
#: that is read) and its formatter. Blocks of one scenario share one run.
TABLES: dict[str, tuple[str, Callable[[Summary], str]]] = {
    "quickstart": ("scenarios/quickstart.yaml", quickstart_table),
    "lim": ("scenarios/lim.yaml", lim_table),
    "zingade-uap": ("scenarios/zingade.yaml", uap_table),
    "zingade-transfer": ("scenarios/zingade.yaml", transfer_table),
    "ding-moller": ("scenarios/ding_moller.yaml", ding_moller_table),
    "possas": ("scenarios/possas.yaml", possas_table),
    "kugler": ("scenarios/kugler.yaml", kugler_table),
    "bench:overhead": ("bench/results_overhead.json", overhead_table),
    "bench:speed": ("bench/results_speed.json", speed_table),
    "bench:scaling": ("bench/results_scaling.json", scaling_line),
    "bench:pixelflip": ("bench/results_pixelflip.json", pixelflip_table),
    "bench:engines": ("bench/results.json", engines_table),
    "bench:scaleout": ("bench/results_scaleout.json", scaleout_table),
    "bench:autoattack": ("bench/results_autoattack.json", autoattack_table),
    "lim-eot": ("scenarios/lim.yaml", lim_eot_line),
    "bench:audit-lbfgs": ("bench/results_audit.json", audit_lbfgs_line),
    "bench:audit-scoring": ("bench/results_audit.json", audit_scoring_line),
    "bench:audit-ties": ("bench/results_audit.json", audit_ties_line),
    "bench:audit-noise": ("bench/results_audit.json", audit_noise_line),
    "bench:audit-differences": ("bench/results_audit.json", audit_differences),
    "bench:audit-builtin": ("bench/results_audit.json", audit_builtin_line),
    "bench:at-size": ("bench/results_at_size.json", at_size_table),
    "bench:at-size-memory": ("bench/results_at_size.json", at_size_memory_line),
    "bench:shapes-example": ("bench/results_shapes_example.json", shapes_example_line),
}

#: Blocks whose formatter exists but whose README section still holds the hand-typed figures:
#: their scenario run had not finished when the block was added (issue 14). A plain run skips
#: them; `--only NAME` after putting the markers in README.md generates one.
PENDING: frozenset[str] = frozenset()

#: Where `make readme-numbers` keeps each scenario's summary.json, so that CI checks the README
#: against them without re-running (tests/test_readme_numbers.py).
STORED = REPO / "bench" / "readme_summaries"


def source_name(name: str) -> str:
    """The source a --summary NAME=PATH names: the scenario's or results file's stem."""
    return Path(TABLES[name][0]).stem


def load_source(name: str, given: dict[str, str]) -> Summary:
    """The table's summary: --summary's file, the bench results file, or a fresh scenario run."""
    source = TABLES[name][0]
    path = given.get(name) or given.get(source_name(name))
    if path is None and source.endswith(".json"):
        path = str(REPO / source)
    if path is not None:
        data: Summary = json.loads(Path(path).read_text(encoding="utf-8"))
        if source.endswith(".json"):
            data["_path"] = source
        return data
    return run_summary(source)


def run_summary(source: str) -> Summary:
    """Run a scenario into a temporary folder; its summary.json."""
    import time

    import unified_adv

    start = time.perf_counter()
    scenario = unified_adv.load_scenario(REPO / source)
    with tempfile.TemporaryDirectory() as tmp:
        summary: Summary = unified_adv.run(scenario, Path(tmp) / "out").summary
    print(f"{source}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return summary


def store_summary(source: str, summary: Summary) -> None:
    """Keep the summary the README now quotes (gzip: the largest is 0.2 MB of JSON)."""
    import gzip

    STORED.mkdir(exist_ok=True)
    data = json.dumps(summary, sort_keys=True).encode()
    (STORED / f"{Path(source).stem}.json.gz").write_bytes(gzip.compress(data, mtime=0))


def marker(name: str) -> str:
    return name if ":" in name else f"numbers:{name}"


def block(name: str, summary: Summary) -> str:
    return f"<!-- {marker(name)} -->\n{TABLES[name][1](summary)}\n<!-- /{marker(name)} -->"


def replace_block(text: str, name: str, new_block: str) -> str:
    m = re.escape(marker(name))
    pattern = re.compile(rf"<!-- {m} -->.*?<!-- /{m} -->", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md: no <!-- {marker(name)} --> ... <!-- /{marker(name)} --> block")
    return pattern.sub(lambda _: new_block, text, count=1)


def stored_summary(source: str) -> Summary:
    """The summary.json that the last `make readme-numbers` stored for this scenario."""
    import gzip

    data: Summary = json.loads(gzip.decompress((STORED / f"{Path(source).stem}.json.gz").read_bytes()))
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 with a diff if stale")
    p.add_argument("--only", nargs="*", choices=sorted(TABLES), help="tables to regenerate")
    p.add_argument("--summary", action="append", default=[], metavar="NAME=PATH",
                   help="use this summary.json (NAME: a table or its source, e.g. zingade, results_speed)")
    p.add_argument("--stored", action="store_true", help=f"read the scenarios' summaries stored in {STORED.name}/")
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    given = dict(s.split("=", 1) for s in args.summary)
    old = args.readme.read_text(encoding="utf-8")
    new = old
    cache: dict[str, Summary] = {}
    for name in args.only or [n for n in TABLES if n not in PENDING]:
        source = TABLES[name][0]
        if args.stored and source.endswith(".yaml") and not ({name, source_name(name)} & set(given)):
            cache.setdefault(source, stored_summary(source))
        if source not in cache:
            cache[source] = load_source(name, given)
            # Kept only beside the real README: a check or a test's copy stores nothing.
            if source.endswith(".yaml") and not args.check and args.readme == README:
                store_summary(source, cache[source])
        new = replace_block(new, name, block(name, cache[source]))
    if new == old:
        print("README.md numbers are up to date", file=sys.stderr)
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "regenerated"))
        return 1
    args.readme.write_text(new, encoding="utf-8")
    print("README.md: number tables rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
