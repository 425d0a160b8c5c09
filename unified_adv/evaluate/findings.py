"""Reliability findings, in the spirit of AutoAttack's ``checks.py``: signs that the
evaluation itself may be unreliable, as structured records shown in the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.evaluate.ensemble import autoattack_checks
from unified_adv.evaluate.results import RowsOf, row_chunks, success_mask
from unified_adv.run.prepared import Prepared, UnitOutcome
from unified_adv.sources.models import error_gist

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
    out = [Finding("warning", code, message) for code, message in prep.setup_warnings]
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
    batch = prep.scenario.execution.batch_size or len(pos)
    try:
        out += _probe_findings(prep, pos, batch)
    except Exception as exc:  # noqa: BLE001 - the user's model raised (e.g. out of memory)
        out.append(
            Finding(
                "warning",
                "probe_failed",
                f"The post-run model checks (a second forward pass and one loss gradient on "
                f"{len(pos)} attacked samples, in batches of {batch}) raised "
                f"{type(exc).__name__}: {error_gist(exc)}. The randomised-model and "
                "zero-gradient checks did not run; a smaller execution.batch_size may help.",
            )
        )
    return out + autoattack_model_findings(prep, out)


def _probe_findings(prep: Prepared, pos: np.ndarray, batch: int) -> list[Finding]:
    """Is the model randomised, and where is its loss gradient exactly zero? In batches of
    ``execution.batch_size``, as the units ran."""
    out = []
    x = prep.data.x[pos]
    wrapper = prep.model.wrapper
    again = wrapper.logits(x, batch_size=batch)
    if not np.array_equal(again, prep.clean_logits[pos]):
        out.append(
            Finding(
                "warning",
                "randomised_model",
                "Two forward passes on the same inputs differ: the model is randomised. "
                "Use an adaptive attack (expectation over transformation) before trusting robustness.",
            )
        )
    zero = np.concatenate(
        [
            _zero_gradient(wrapper, x[lo : lo + batch], prep.data.y[pos[lo : lo + batch]])
            for lo in range(0, len(pos), batch)
        ]
    )
    if zero.any():
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


def _zero_gradient(wrapper: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: the cross-entropy gradient with respect to the input is exactly zero."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(wrapper.device).requires_grad_(True)
    yt = torch.from_numpy(np.ascontiguousarray(y)).to(wrapper.device)
    loss = torch.nn.functional.cross_entropy(wrapper(xt), yt, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    zero: np.ndarray = (grad.reshape(len(x), -1).abs().amax(1) == 0).cpu().numpy()
    return zero


def _eps(entry: dict[str, Any]) -> str:
    """An entry's eps as the scenario wrote it (8/255)."""
    return str(entry.get("eps_text") or f"{entry['eps']:g}")


def result_findings(
    prep: Prepared,
    attacks: list[dict[str, Any]],
    crosscheck: dict[str, Any],
    outcomes: list[UnitOutcome],
    autoattack: dict[str, Any] | None = None,
) -> list[Finding]:
    """What the results say about themselves: in this order, success falling as eps grows,
    a black-box attack beating the white-box ones, divergent backends, absurd
    perturbations, units that did not reproduce, and the AutoAttack checks (``autoattack``:
    :func:`~unified_adv.evaluate.ensemble.autoattack_checks`, computed here when not given)."""
    ok = [a for a in attacks if a["status"] == "ok" and a["success_rate"] is not None]
    return (
        _non_monotonic(ok)
        + _black_box_beats_white_box(ok)
        + _divergent(crosscheck["pairs"], prep.scenario.crosscheck.alpha)
        + absurd_perturbations(prep, outcomes)
        + _not_reproducible(outcomes)
        + autoattack_result_findings(
            prep,
            outcomes,
            autoattack if autoattack is not None else autoattack_checks(prep, outcomes),
        )
    )


def _non_monotonic(ok: list[dict[str, Any]]) -> list[Finding]:
    """Success must not fall as eps grows (same attack, same backend)."""
    out: list[Finding] = []
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
                        f"Success rate falls from {lo['success_rate']:.1%} at eps {_eps(lo)} to "
                        f"{hi['success_rate']:.1%} at eps {_eps(hi)}: the attack is not converging "
                        "(too few steps or a poor step size).",
                        attack_id,
                        backend,
                    )
                )
    return out


def _black_box_beats_white_box(ok: list[dict[str, Any]]) -> list[Finding]:
    """A black-box attack beating every white-box attack at the same norm and eps."""
    out: list[Finding] = []
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
    return out


def _divergent(pairs: list[dict[str, Any]], alpha: float) -> list[Finding]:
    out: list[Finding] = []
    for pair in pairs:
        if pair["verdict"] == "divergent":
            explained = bool(pair.get("explained"))
            out.append(
                Finding(
                    "warning" if explained else "error",
                    "divergent_backends",
                    f"{pair['attack_id']}: {pair['backends'][0]} and {pair['backends'][1]} diverge "
                    f"({_rate_difference(pair, alpha)}, "
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
    return out


def _rate_difference(pair: dict[str, Any], alpha: float) -> str:
    """A pair's success rates, quoted as a difference only when McNemar's test finds one
    at ``alpha`` (over the samples tied in neither backend; the ties are counted apart);
    a minimal attack's distances likewise only when Wilcoxon's test does."""
    (a, b), p = pair["success_rates"], pair["mcnemar_p"]
    ties = pair.get("ties") or [0, 0]
    scored = pair["both_fooled"] + pair["neither"] + pair["only_first"] + pair["only_second"]
    on = f" on the {scored} samples tied in neither" if any(ties) else ""
    if p < alpha:
        text = f"success {a:.1%} vs {b:.1%}, a significant difference (McNemar p = {p:.3g}{on})"
    else:
        text = f"success rates not significantly different (McNemar p = {p:.3g}{on})"
    if any(ties):
        text += f"; ties on the decision boundary {ties[0]} vs {ties[1]}"
    dist = pair.get("distance_test")
    if dist is not None and dist["n"] and dist["p"] < alpha:
        ma, mb = dist["medians"]
        text += (
            f"; {dist['norm']} distances differ on the {dist['n']} samples both fooled "
            f"(median {ma:.3g} vs {mb:.3g}, Wilcoxon p = {dist['p']:.3g})"
        )
    return text


def _not_reproducible(outcomes: list[UnitOutcome]) -> list[Finding]:
    return [
        Finding(
            "warning",
            "not_reproducible",
            f"Run twice with the same seed, {o.unit.backend} gave different results for "
            f"{o.unit.attack_id} ({o.unit.name}).",
            o.unit.attack_id,
            o.unit.backend,
        )
        for o in outcomes
        if o.meta.get("repeat_identical") is False
    ]


def _out_of_scale(x_adv: np.ndarray, x: RowsOf, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the perturbation spans the whole input range (L∞ ≥ ``span``, to rounding);
    its L2 exceeds the image's own. Chunk by chunk (float64 copies of a chunk only)."""
    full_range, beyond = np.zeros(len(x), bool), np.zeros(len(x), bool)
    for r in row_chunks(len(x)):
        xr = x[r].reshape(r.stop - r.start, -1).astype(np.float64)
        delta = x_adv[r].reshape(r.stop - r.start, -1).astype(np.float64) - xr
        full_range[r] = np.abs(delta).max(1, initial=0.0) >= span * (1 - 1e-6)
        beyond[r] = np.linalg.norm(delta, axis=1) > np.linalg.norm(xr, axis=1)
    return full_range, beyond


def absurd_perturbations(prep: Prepared, outcomes: list[UnitOutcome]) -> list[Finding]:
    """Successful perturbations that are no longer small: an L∞ as large as the whole input
    range, or an L2 beyond the image's own L2 norm. Such an example is no longer the image
    (saturated noise, or a mistranslated scale); its success says nothing about robustness.
    Attacks bounded by changed pixels (one-pixel) may flip a pixel across the range: skipped.
    """
    if not outcomes:
        return []
    lo, hi = prep.model.wrapper.input_range
    counts: dict[tuple[str, str | None, str], np.ndarray] = {}
    for o in outcomes:
        if not o.ok or ATTACKS[o.unit.attack].threat == "l0":
            continue
        assert o.arrays is not None
        pos = o.arrays["positions"]
        fooled = success_mask(prep.data.y[pos], o.arrays)
        full_range, beyond = _out_of_scale(o.arrays["x_adv"], RowsOf(prep.data.x, pos), hi - lo)
        key = (
            o.unit.attack_id,
            prep.plans[o.unit.attack_index].spec.eps_text(o.unit.eps),
            o.unit.backend,
        )
        counts[key] = counts.get(key, np.zeros(3, int)) + [
            fooled.sum(),
            (fooled & full_range).sum(),
            (fooled & beyond).sum(),
        ]
    out = []
    for (attack_id, eps, backend), (n, n_range, n_beyond) in counts.items():
        if not (n_range or n_beyond):
            continue
        at = f" at eps {eps}" if eps is not None else ""
        out.append(
            Finding(
                "warning",
                "absurd_perturbation",
                f"{attack_id}{at} ({backend}): of {n} successful perturbations, {n_range} have an "
                f"L∞ as large as the input range ({hi - lo:g}) and {n_beyond} an L2 beyond the "
                "image's own norm: these examples are no longer the images (saturated noise or "
                "a mistranslated input scale); their success is no evidence of weakness.",
                attack_id,
                backend,
            )
        )
    return out


# AutoAttack checks, after the original's autoattack/checks.py (Croce & Hein): each a small
# function over plain inputs; ``autoattack_model_findings`` and ``autoattack_result_findings``
# feed them from a run.


def _autoattack_versions(prep: Prepared) -> list[tuple[str, str]]:
    """(attack id, version) of every AutoAttack in the scenario."""
    return [
        (p.spec.label, getattr(p.spec, "version", None) or "standard")
        for p in prep.plans
        if p.spec.name == "autoattack"
    ]


def aa_randomised_model(randomised: bool, versions: list[tuple[str, str]]) -> list[Finding]:
    """checks.py ``check_randomized``: on a randomised model, the standard version's
    single-draw gradients are noisy; the rand version averages 20 draws (EOT)."""
    if not randomised:
        return []
    return [
        Finding(
            "warning",
            "autoattack_use_rand",
            f"{attack_id}: the model is randomised (two forward passes differ), but AutoAttack "
            "ran its standard version: use version: rand (APGD-CE and APGD-DLR with EOT 20).",
            attack_id,
        )
        for attack_id, version in versions
        if version != "rand"
    ]


def aa_softmax_outputs(probabilities: bool, versions: list[tuple[str, str]]) -> list[Finding]:
    """checks.py ``check_range_output``: outputs that sum to 1 are probabilities. APGD-CE
    then takes a log of a softmax of probabilities and the DLR losses (APGD-T, APGD-DLR)
    compare probabilities, not logits: AutoAttack's numbers are not reliable."""
    if not probabilities:
        return []
    return [
        Finding(
            "warning",
            "autoattack_softmax_outputs",
            f"{attack_id}: the model's outputs sum to 1 (a softmax): AutoAttack's losses (CE, "
            "DLR) expect logits; remove the softmax before evaluating.",
            attack_id,
        )
        for attack_id, _ in versions
    ]


def aa_zero_gradients(zero: bool, versions: list[tuple[str, str]]) -> list[Finding]:
    """checks.py ``check_zero_gradients``: where the loss gradient is exactly zero, only
    AutoAttack's black-box component (Square) can move a sample."""
    if not zero:
        return []
    return [
        Finding(
            "warning",
            "autoattack_zero_gradients",
            f"{attack_id}: some attacked samples have an exactly zero loss gradient; "
            "AutoAttack's gradient components cannot move them, only Square can: their "
            "robustness under AutoAttack rests on one black-box search.",
            attack_id,
        )
        for attack_id, _ in versions
    ]


def aa_square_beats_white_box(records: list[dict[str, Any]]) -> list[Finding]:
    """checks.py ``check_square_sr``: Square (black-box) fooling samples that every white-box
    component left robust is a sign of gradient masking. ``records``: per AutoAttack series,
    ``first_fooled_by`` counts per component (recomputed, or ART's own ``best_attacks``)."""
    out = []
    for r in records:
        counts = r["first_fooled_by"]
        white = [n for n in counts if n != "square"]
        if counts.get("square", 0) > 0 and white:
            out.append(
                Finding(
                    "warning",
                    "autoattack_square_beats_white_box",
                    f"{r['attack_id']} ({r['backend']}): Square fooled {counts['square']} "
                    f"samples that the white-box components ({', '.join(white)}) left robust: "
                    "gradients may be masked.",
                    r["attack_id"],
                    r["backend"],
                )
            )
    return out


def aa_weaker_than_pgd(records: list[dict[str, Any]]) -> list[Finding]:
    """More robust samples under AutoAttack than under PGD on the same samples: AutoAttack
    contains a stronger PGD, so its evaluation is broken (too few steps, a wrong loss, a
    lost sample). ``records``: from ``ensemble.pgd_comparisons``."""
    return [
        Finding(
            "error",
            "autoattack_weaker_than_pgd",
            f"{r['attack_id']} ({r['backend']}) leaves {r['robust']} of {r['n']} samples robust "
            f"at {r['norm']} eps {r['eps']:g}, {r['pgd_id']} ({r['pgd_backend']}) only "
            f"{r['pgd_robust']}: AutoAttack must be at least as strong as PGD; the evaluation "
            "is broken.",
            r["attack_id"],
            r["backend"],
        )
        for r in records
        if r["robust"] > r["pgd_robust"]
    ]


def aa_ensemble_disagrees(records: list[dict[str, Any]], alpha: float) -> list[Finding]:
    """The library's ensemble against unified-adv's own (``ensemble.ensemble_checks``):
    samples its components fooled when run alone but the ensemble left robust. A few are
    chance (random starts); significantly many (McNemar p < alpha, the ensemble weaker)
    mean the library's ensemble logic loses samples."""
    out = []
    for r in records:
        if not (r["only_own"] or r["only_library"]):
            continue
        weaker = r["only_own"] > r["only_library"] and r["p"] < alpha
        out.append(
            Finding(
                "warning" if weaker else "info",
                "autoattack_ensemble_disagrees",
                f"{r['attack_id']} ({r['backend']}): the library's ensemble fooled "
                f"{r['library_fooled']} of {r['n']}, its components run alone "
                f"({', '.join(r['components'])}) {r['own_fooled']}; {r['only_own']} samples "
                f"fooled only by the components, {r['only_library']} only by the ensemble "
                f"(McNemar p = {r['p']:.3g})"
                + ("; the ensemble loses samples its components fool." if weaker else "."),
                r["attack_id"],
                r["backend"],
            )
        )
    return out


def autoattack_model_findings(prep: Prepared, earlier: list[Finding]) -> list[Finding]:
    """The model checks above, read for AutoAttack (from the codes of ``earlier``)."""
    versions = _autoattack_versions(prep)
    if not versions:
        return []
    codes = {f.code for f in earlier}
    return (
        aa_randomised_model("randomised_model" in codes, versions)
        + aa_softmax_outputs("probabilities" in codes, versions)
        + aa_zero_gradients("zero_gradients" in codes, versions)
    )


def autoattack_result_findings(
    prep: Prepared, outcomes: list[UnitOutcome], checks: dict[str, Any] | None
) -> list[Finding]:
    """Square beating the white-box components (from ART's own record of which component
    fooled each sample, and from the recomputed ensemble), AutoAttack weaker than PGD, and
    the library's ensemble against the recomputed one (``checks``: ``autoattack_checks``)."""
    if checks is None:
        return []
    records = checks["ensembles"]
    art = [
        {"attack_id": o.unit.attack_id, "backend": o.unit.backend, "first_fooled_by": won}
        for o in outcomes
        if o.ok and (won := o.meta.get("library_call", {}).get("fooled_first_by"))
    ]
    alpha = prep.scenario.crosscheck.alpha
    return (
        aa_square_beats_white_box(art + records)
        + aa_weaker_than_pgd(checks["versus_pgd"])
        + aa_ensemble_disagrees(records, alpha)
    )
