"""Universal adversarial perturbations (UAPs) measured against random controls.

Follows Hirano & Takemoto (2020) and Hirano, Minagi & Takemoto (2021), as summarised in
Zingade et al.'s review: one perturbation for all images, its size given as the magnitude
``zeta = ||UAP||_p / mean_i ||x_i||_p`` (a share of the data's average norm), the
non-targeted fooling rate R_f and the targeted success rate R_s, each next to the rate of a
random perturbation of the same norm. Without that control a high R_f could be mere noise
sensitivity; the UAP is only "universal adversarial" where it beats the control clearly.

The UAPs themselves come from ART (``UniversalPerturbation`` and, for targeted UAPs, Hirano
& Takemoto's ``TargetedUniversalPerturbation``) through the ART adapter, so the library call
is recorded and checked like every other attack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.analyses.base import AnalysisContext, AnalysisOutput, AnalysisUnit, ResultKey
from unified_adv.catalogue.threats import L2_RTOL, LINF_TOL  # slack on ||UAP|| <= radius
from unified_adv.errors import InputError
from unified_adv.run.prepared import Prepared
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.data import scale_into
from unified_adv.sources.models import ModelWrapper

UAP_NORMS = ("l2", "linf")


class Classifier(Protocol):
    """Anything with batched numpy logits (``ModelWrapper`` is one)."""

    def logits(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray: ...


#: R_s conventions: over the images of other classes (ours), over all images (the review's).
SUCCESS_OVER = ("other_classes", "all_images")
#: A UAP of norm at most this share of its radius is empty (ART found no update).
EMPTY_RTOL = 1e-6

# --------------------------------------------------------------------------- norms


def _check_norm(norm: str) -> None:
    if norm not in UAP_NORMS:
        raise ValueError(f"norm must be one of {UAP_NORMS}, got {norm!r}")


def _norms(x: np.ndarray, norm: str) -> np.ndarray:
    """Per-image p-norms of the flattened images, in float64."""
    _check_norm(norm)
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if norm == "l2":
        return np.asarray(np.linalg.norm(flat, axis=1))
    return np.asarray(np.abs(flat).max(axis=1, initial=0.0))


def perturbation_norm(delta: np.ndarray, norm: str) -> float:
    """||delta||_p over all its values (one perturbation, any shape)."""
    return float(_norms(np.asarray(delta).reshape(1, -1), norm)[0])


def data_norm(x: np.ndarray, norm: str) -> float:
    """Mean over images of ||x_i||_p: the denominator of Hirano's magnitude zeta."""
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"data_norm needs a non-empty batch of images, got shape {x.shape}")
    return float(_norms(x, norm).mean())


def random_control(
    shape: Sequence[int], norm: str, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """A random perturbation whose p-norm is exactly ``radius`` (float32).

    Hirano & Takemoto's controls are random vectors of the same norm as the UAP, so a UAP
    is compared with noise of equal size, not with a smaller one inside the ball.
    L2: a Gaussian direction (uniform on the sphere) rescaled to norm ``radius``.
    L-inf: uniform in [-radius, radius] per value, then rescaled so that the largest
    |value| is ``radius`` exactly; a plain uniform draw would have norm < radius, and the
    sign vector (every value at +-radius) would be a far larger L2 perturbation.
    """
    _check_norm(norm)
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
    dims = tuple(int(s) for s in shape)
    if not dims or any(s <= 0 for s in dims):
        raise ValueError(f"shape must have positive sizes, got {tuple(shape)}")
    if norm == "l2":
        v = rng.standard_normal(dims)
        size = float(np.linalg.norm(v))
    else:
        v = rng.uniform(-1.0, 1.0, dims)
        size = float(np.abs(v).max())
    if size == 0.0:  # pragma: no cover - probability zero
        raise RuntimeError("random direction of norm 0")
    return (v * (radius / size)).astype(np.float32)


# --------------------------------------------------------------------------- rates


def _as_batch_delta(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """One perturbation, (C, H, W) or (1, C, H, W), broadcastable over the batch ``x``."""
    d = np.asarray(delta, dtype=np.float32)
    if d.size != int(np.prod(x.shape[1:])):
        raise ValueError(f"perturbation of shape {d.shape} does not fit images {x.shape[1:]}")
    return d.reshape(1, *x.shape[1:])


def _predict(model: Classifier, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.logits(x)).argmax(axis=1)


def _perturbed(x: np.ndarray, delta: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(x + _as_batch_delta(x, delta), lo, hi).astype(np.float32)


def _check_images(x: np.ndarray, what: str) -> None:
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{what} must be a non-empty (N, C, H, W) batch, got shape {x.shape}")


def fooling_rate(
    model: Classifier, x: np.ndarray, delta: np.ndarray, lo: float, hi: float
) -> float:
    """R_f: share of ALL images whose prediction on clip(x + delta) differs from that on x.

    As Hirano et al., over every image (misclassified ones included): a UAP is judged by
    how many decisions it changes, not by accuracy.
    """
    x = np.asarray(x, dtype=np.float32)
    _check_images(x, "x")
    before = _predict(model, x)
    after = _predict(model, _perturbed(x, delta, lo, hi))
    return float((before != after).mean())


def success_rate(
    model: Classifier,
    x: np.ndarray,
    delta: np.ndarray,
    target: int,
    lo: float,
    hi: float,
    *,
    y: np.ndarray | None = None,
) -> float:
    """R_s: share of images classified as ``target`` on clip(x + delta).

    With ``y`` (true labels), only images whose true label is not ``target`` count, as
    Hirano & Takemoto use inputs of the other classes: images of the target class would
    credit the UAP with the model's clean accuracy on them. Without ``y`` every image in
    ``x`` counts (the caller has already left the target class out).
    """
    x = np.asarray(x, dtype=np.float32)
    _check_images(x, "x")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise ValueError(f"y must hold one label per image ({len(x)}), got shape {y.shape}")
        x = x[y != target]
        if len(x) == 0:
            raise ValueError(f"no image of a class other than the target {target}")
    after = _predict(model, _perturbed(x, delta, lo, hi))
    return float((after == target).mean())


def predicted_share(
    model: Classifier, x: np.ndarray, delta: np.ndarray | None, lo: float, hi: float, k: int
) -> list[float]:
    """Share of images predicted as each of the ``k`` classes (with ``delta`` applied):
    Hirano's observation that a UAP sends most images to one dominant class."""
    xs = np.asarray(x, dtype=np.float32) if delta is None else _perturbed(x, delta, lo, hi)
    counts = np.bincount(_predict(model, xs), minlength=k)
    return [float(c) / len(xs) for c in counts]


# --------------------------------------------------------------------------- study


@dataclass(frozen=True)
class UapRow:
    """One UAP: its size, its rate on the evaluation split and the random control's."""

    norm: str
    zeta: float
    #: zeta x mean ||x_i||_p over the fit split: the projection radius handed to ART.
    radius: float
    kind: str  # "untargeted" or "targeted"
    target: int | None
    #: R_f (untargeted) or R_s (targeted) on the evaluation split.
    rate: float | None  # None: an empty perturbation
    #: The same rate for random perturbations of norm ``radius``: mean over the draws.
    control_rate: float
    control_rate_max: float
    #: ||UAP||_p as returned by ART (<= radius, checked) and its zeta on the fit split.
    uap_norm: float
    uap_zeta: float
    #: ART stopped because its fit-split rate reached 1 - delta (not at max_iter).
    converged: bool
    #: ART's own fooling rate on the fit split (for targeted UAPs: against the model's
    #: predictions, not the target): kept to compare with ``fit_rate``.
    art_fooling_rate: float
    #: Our rate (R_f or R_s, as ``rate``) on the fit split.
    fit_rate: float | None
    #: Predicted-class shares on the evaluation split with the UAP applied.
    predicted_share: list[float]
    dominant_class: int
    time_s: float
    #: Targeted rows: R_s both ways (``rate`` is the one ``success_over`` names):
    #: over the images of other classes (ours) and over all images (the review's).
    rate_other_classes: float | None = None
    rate_all_images: float | None = None
    success_over: str | None = None
    #: ART returned no perturbation to speak of (norm <= EMPTY_RTOL x radius): the row
    #: has no rate (``rate``, ``fit_rate`` are None), only this flag and its clean effect.
    empty: bool = False

    @property
    def key(self) -> str:
        tail = "untargeted" if self.target is None else f"target{self.target}"
        return f"{self.norm}/zeta{self.zeta:g}/{tail}"


@dataclass
class UapStudy:
    """Rows of a UAP study, the perturbations (one (C, H, W) array per row, same order)
    and the random controls' first draws, for report images."""

    rows: list[UapRow]
    perturbations: list[np.ndarray]
    controls: list[np.ndarray]
    clean_predicted_share: list[float]
    data_norms: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    def row(self, norm: str, zeta: float, target: int | None = None) -> UapRow:
        """The row for one norm, zeta and target (None: the untargeted UAP)."""
        for r in self.rows:
            if r.norm == norm and math.isclose(r.zeta, zeta) and r.target == target:
                return r
        raise KeyError(f"no row for norm={norm!r}, zeta={zeta!r}, target={target!r}")

    def to_dict(self, *, include_perturbations: bool = False) -> dict[str, Any]:
        """JSON-able; the perturbations as nested lists only when asked (they are images)."""
        out: dict[str, Any] = {
            "settings": dict(self.settings),
            "data_norms": dict(self.data_norms),
            "clean_predicted_share": list(self.clean_predicted_share),
            "rows": [asdict(r) for r in self.rows],
        }
        if include_perturbations:
            out["perturbations"] = [p.tolist() for p in self.perturbations]
            out["controls"] = [c.tolist() for c in self.controls]
        return out


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what} must be integer labels of shape ({n},), got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _check_batches(
    x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_fit = np.asarray(x_fit)
    x_eval = np.asarray(x_eval)
    for arr, what in ((x_fit, "x_fit"), (x_eval, "x_eval")):
        if arr.ndim != 4 or len(arr) == 0:
            raise ValueError(
                f"{what} must be a non-empty (N, C, H, W) batch of images, got shape {arr.shape}"
            )
    if x_fit.shape[1:] != x_eval.shape[1:]:
        raise ValueError(f"x_fit images {x_fit.shape[1:]} and x_eval {x_eval.shape[1:]} differ")
    return (
        x_fit.astype(np.float32, copy=False),
        _labels(y_fit, len(x_fit), "y_fit"),
        x_eval.astype(np.float32, copy=False),
        _labels(y_eval, len(x_eval), "y_eval"),
    )


def _check_settings(
    norms: Sequence[str],
    zetas: Sequence[float],
    seed: int,
    controls: int,
    attacker_eps: float | None,
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    norms = tuple(norms)
    if not norms:
        raise ValueError("norms must name at least one of " + ", ".join(UAP_NORMS))
    for norm in norms:
        _check_norm(norm)
    zetas = tuple(float(z) for z in zetas)
    if not zetas:
        raise ValueError("zetas must hold at least one magnitude")
    for z in zetas:
        if not (math.isfinite(z) and z > 0):
            raise ValueError(f"every zeta must be a finite number > 0, got {z!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if controls < 1:
        raise ValueError(f"controls must be >= 1, got {controls}")
    if attacker_eps is not None and not (math.isfinite(attacker_eps) and attacker_eps > 0):
        raise ValueError(f"attacker_eps must be a finite number > 0, got {attacker_eps!r}")
    return norms, zetas


def _check_targets(
    targets: Sequence[int], n_classes: int, y_eval: np.ndarray, attacker: str
) -> list[int]:
    target_list: list[int] = []
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise ValueError(f"targets must be class indices, got {t!r}")
        if not 0 <= int(t) < n_classes:
            raise ValueError(f"target {int(t)} is not a class of the model (0..{n_classes - 1})")
        if not (y_eval != int(t)).any():
            raise ValueError(f"target {int(t)}: the evaluation split has no image of another class")
        target_list.append(int(t))
    if target_list and attacker != "fgsm":
        raise ValueError(
            f"targeted UAPs need attacker 'fgsm' (ART's TargetedUniversalPerturbation), "
            f"got {attacker!r}"
        )
    return target_list


@dataclass
class _Job:
    """What every row of one study shares."""

    model: ModelWrapper
    adapter: Any
    backend: str
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    params: dict[str, Any]
    means: dict[str, float]
    attacker_eps: float | None
    controls: int
    success_over: str
    n_classes: int


def _row_seed(seed: int, norm: str, zeta: float, target: int | None) -> int:
    # Each row's seed depends on its own (norm, zeta, target) only, so adding a target
    # or a zeta to a study leaves the other rows as they were.
    key = [seed, UAP_NORMS.index(norm), round(zeta * 1e9), -1 if target is None else target]
    return int(np.random.SeedSequence([k + 1 for k in key]).generate_state(1)[0])


def _fit_uap(
    job: _Job, norm: str, radius: float, target: int | None, row_seed: int
) -> tuple[np.ndarray, dict[str, Any], float]:
    """ART's UAP for one row, checked: (perturbation, recorded call, seconds)."""
    request = AttackRequest(
        attack="universal", norm=norm, eps=radius, params=job.params, targeted=target is not None
    )
    labels = None if target is None else np.full(len(job.x_fit), target, dtype=np.int64)
    start = time.perf_counter()
    out = job.adapter.generate(request, job.x_fit, job.y_fit, labels, seed=row_seed)
    elapsed = time.perf_counter() - start
    call = out.library_call
    if job.attacker_eps is not None:
        used = call.get("kwargs", {}).get("attacker_params", {}).get("eps")
        if used is None or not math.isclose(float(used), job.attacker_eps):
            raise ValueError(
                f"the {job.backend} adapter ignored attacker_eps={job.attacker_eps:g}: it ran "
                f"the inner attack with eps={used!r}"
            )
    # The perturbation itself (ART returns it as (1, C, H, W)), beside the examples.
    raw = out.universal_noise
    if raw is None:
        raise RuntimeError(f"the {job.backend} adapter kept no universal perturbation")
    shape = job.x_fit.shape[1:]
    noise = np.asarray(raw, dtype=np.float32)
    if noise.size != int(np.prod(shape)):
        raise RuntimeError(f"ART returned a perturbation of shape {noise.shape}")
    noise = noise.reshape(shape)
    size = perturbation_norm(noise, norm)
    limit = radius + LINF_TOL if norm == "linf" else radius * (1 + L2_RTOL) + LINF_TOL
    if size > limit:
        raise RuntimeError(f"ART's {norm} UAP has norm {size:.8g} > radius {radius:.8g}")
    return noise, call, elapsed


def _rates(
    job: _Job, noise: np.ndarray, draws: list[np.ndarray], target: int | None
) -> tuple[float, float, list[float], dict[str, float]]:
    """(rate on eval, rate on fit, control rates, R_s both ways) of one perturbation."""
    model, (lo, hi) = job.model, job.model.input_range
    x_eval, x_fit = job.x_eval, job.x_fit
    by_way: dict[str, float] = {}
    if target is None:
        rate = fooling_rate(model, x_eval, noise, lo, hi)
        fit_rate = fooling_rate(model, x_fit, noise, lo, hi)
        control = [fooling_rate(model, x_eval, d, lo, hi) for d in draws]
        return rate, fit_rate, control, by_way
    y_of = {"other_classes": (job.y_eval, job.y_fit), "all_images": (None, None)}
    for way, (ye, _) in y_of.items():
        by_way[way] = success_rate(model, x_eval, noise, target, lo, hi, y=ye)
    ye, yf = y_of[job.success_over]
    rate = by_way[job.success_over]
    fit_rate = success_rate(model, x_fit, noise, target, lo, hi, y=yf)
    control = [success_rate(model, x_eval, d, target, lo, hi, y=ye) for d in draws]
    return rate, fit_rate, control, by_way


def _one_row(
    job: _Job, norm: str, zeta: float, target: int | None, seed: int
) -> tuple[UapRow, np.ndarray, np.ndarray]:
    """One UAP fitted and measured: its row, the perturbation and the first control."""
    row_seed = _row_seed(seed, norm, zeta, target)
    radius = zeta * job.means[norm]
    noise, call, elapsed = _fit_uap(job, norm, radius, target, row_seed)
    size = perturbation_norm(noise, norm)
    rng = np.random.default_rng(row_seed)
    draws = [random_control(noise.shape, norm, radius, rng) for _ in range(job.controls)]
    rate, fit_rate, control, by_way = _rates(job, noise, draws, target)
    empty = size <= EMPTY_RTOL * radius
    lo, hi = job.model.input_range
    share = predicted_share(job.model, job.x_eval, noise, lo, hi, job.n_classes)
    row = UapRow(
        norm=norm,
        zeta=zeta,
        radius=float(radius),
        kind="untargeted" if target is None else "targeted",
        target=target,
        rate=None if empty else rate,
        control_rate=float(np.mean(control)),
        control_rate_max=float(np.max(control)),
        uap_norm=size,
        uap_zeta=size / job.means[norm],
        converged=bool(call.get("converged", False)),
        art_fooling_rate=float(call.get("fooling_rate_reported_by_art", float("nan"))),
        fit_rate=None if empty else fit_rate,
        predicted_share=share,
        dominant_class=int(np.argmax(share)),
        time_s=elapsed,
        rate_other_classes=None if empty else by_way.get("other_classes"),
        rate_all_images=None if empty else by_way.get("all_images"),
        success_over=None if target is None else job.success_over,
        empty=bool(empty),
    )
    return row, noise, draws[0]


def uap_study(
    model: ModelWrapper,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    *,
    norms: Sequence[str] = ("l2", "linf"),
    zetas: Sequence[float] = (0.04,),
    targets: Sequence[int] = (),
    attacker: str = "fgsm",
    max_iter: int = 10,
    delta: float = 0.2,
    attacker_eps: float | None = None,
    controls: int = 5,
    seed: int = 0,
    backend: str = "art",
    success_over: str = "other_classes",
) -> UapStudy:
    """Fit UAPs on ``x_fit`` and measure them on ``x_eval`` against random controls.

    ``model`` is a :class:`~unified_adv.sources.models.ModelWrapper`. For each norm and zeta:
    the radius is zeta x mean ||x_i||_p of the fit split; one non-targeted UAP (R_f) and
    one targeted UAP per class in ``targets`` (R_s, fgsm attacker only, as ART's
    TargetedUniversalPerturbation). ``delta`` and ``max_iter`` are ART's: stop once the
    fit-split rate reaches 1 - delta, or after ``max_iter`` passes. Each rate is paired
    with the mean rate of ``controls`` random perturbations of norm = radius.

    ``attacker_eps`` is the inner FGSM step. The ART adapter hands ART the radius as that
    step; another value needs the adapter to pass it on, which it does not do yet: given
    one, the adapter's recorded call is checked and a ValueError raised if it was ignored.

    ``success_over`` names the R_s a targeted row reports as ``rate`` (both are kept):
    ``other_classes`` (ours: images whose label is not the target) or ``all_images`` (the
    review's, Zingade et al. after Hirano & Takemoto: every image, the target class
    included). A UAP whose norm is at most ``EMPTY_RTOL`` of its radius is reported as
    empty, with no rate: its "rate" would be the model's clean errors.
    """
    if success_over not in SUCCESS_OVER:
        raise ValueError(f"success_over must be one of {SUCCESS_OVER}, got {success_over!r}")
    x_fit, y_fit, x_eval, y_eval = _check_batches(x_fit, y_fit, x_eval, y_eval)
    norms, zetas = _check_settings(norms, zetas, seed, controls, attacker_eps)
    n_classes = int(np.asarray(model.logits(x_eval[:1])).shape[1])
    target_list = _check_targets(targets, n_classes, y_eval, attacker)

    adapter = adapter_class(backend)(model=model)
    if "universal" not in adapter.capabilities:
        raise ValueError(f"backend {backend!r} has no universal perturbation attack")
    lo, hi = model.input_range
    params: dict[str, Any] = {"attacker": attacker, "max_iter": max_iter, "delta": delta}
    if attacker_eps is not None:
        params["attacker_eps"] = attacker_eps
    job = _Job(
        model, adapter, backend, x_fit, y_fit, x_eval, y_eval, params,
        {norm: data_norm(x_fit, norm) for norm in norms},
        attacker_eps, controls, success_over, n_classes,
    )  # fmt: skip
    done = [
        _one_row(job, n, z, t, seed) for n in norms for z in zetas for t in (None, *target_list)
    ]
    settings: dict[str, Any] = {
        **{"backend": backend, **params, "attacker_eps": attacker_eps},
        **{"controls": controls, "success_over": success_over, "empty_rtol": EMPTY_RTOL},
        **{"seed": seed, "n_fit": len(x_fit), "n_eval": len(x_eval), "n_classes": n_classes},
        "input_range": [lo, hi],
    }
    return UapStudy(
        rows=[row for row, _, _ in done],
        perturbations=[noise for _, noise, _ in done],
        controls=[control for _, _, control in done],
        clean_predicted_share=predicted_share(model, x_eval, None, lo, hi, n_classes),
        data_norms=job.means,
        settings=settings,
    )


# --------------------------------------------------------------------------- the analysis

#: Fit-split size for the builtin digits when the scenario does not say (of 1,257 images).
DEFAULT_FIT_IMAGES = 500


def fit_and_eval_split(
    prep: Prepared, fit_images: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """UAPs are computed on training images and measured on test images (Hirano & Takemoto).

    builtin digits: the model's own training split (scaled to the input range) to fit, the
    scenario's held-out images to evaluate. Any other data: a seeded half of the scenario's
    images to fit, the other half to evaluate.
    """
    x, y = prep.data.x, prep.data.y
    if prep.scenario.data.builtin == "digits":
        x_train, y_train, *_ = digits_split()
        lo, hi = prep.model.wrapper.input_range
        n = min(fit_images or DEFAULT_FIT_IMAGES, len(x_train))
        fit_x = scale_into(x_train[:n], lo, hi)  # as the builtin data source scales them
        return fit_x, y_train[:n], x, y, f"the first {n} images of the digits training split"
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    if fit_images is not None:
        half = min(fit_images, len(x) - 1)
    if half < 1 or len(x) - half < 1:
        raise InputError.one(
            prep.scenario.file, "data", "the UAP analysis needs at least two images to split"
        )
    fit, rest = np.sort(order[:half]), np.sort(order[half:])
    return x[fit], y[fit], x[rest], y[rest], f"a seeded random {half} of the scenario's images"


def _settings(prep: Prepared, spec: AnalysisSpec) -> dict[str, Any]:
    every = spec.targets == "all"
    targets = tuple(range(prep.num_classes)) if every else tuple(spec.targets or ())
    # Targets beyond the model's classes were refused by prepare().
    return {
        "norms": list(spec.norms or ("l2", "linf")),
        "zetas": list(spec.zetas or (0.04,)),
        "targets": list(targets),
        "attacker": spec.attacker or "fgsm",
        "max_iter": spec.max_iter or 10,
        "delta": spec.delta if spec.delta is not None else 0.2,
        "success_over": spec.success_over or "other_classes",
    }


def _study(
    model: ModelWrapper, split: tuple[np.ndarray, ...], settings: dict[str, Any], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    study = uap_study(model, *split[:4], **settings, seed=seed)
    arrays = {"perturbations": np.stack(study.perturbations).astype(np.float32)}
    return arrays, {"study": study.to_dict()}


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """Zingade's UAP study on the final model, against random controls (the ``uap`` analysis)."""
    prep = ctx.prep
    seed = spec.seed if spec.seed is not None else prep.scenario.seed
    *split, fit_from = fit_and_eval_split(prep, spec.fit_images, seed)
    settings = _settings(prep, spec)
    unit = AnalysisUnit(
        index, spec.label, "uap", "final", "art",
        tuple(sorted((k, str(v)) for k, v in settings.items())), seed,
        f"{prep.model.fingerprint}:{prep.data.fingerprint}:{len(split[0])}",
    )  # fmt: skip
    arrays, meta = ctx.store.cached(
        unit, lambda: _study(prep.model.wrapper, tuple(split), settings, seed)
    )
    entry = {
        "id": spec.label,
        "name": "uap",
        "backend": "art",
        "fit_images": int(len(split[0])),
        "fit_from": fit_from,
        "eval_images": int(len(split[2])),
        "time_s": float(meta.get("time_s", 0.0)),
        **meta["study"],
    }
    perturbations = list(arrays["perturbations"])
    return AnalysisOutput(entry, {ResultKey(index): {"perturbations": perturbations}})
