"""Black-box transfer by PGD: attack a surrogate white-box, count success on other models.

The pipeline of the black-box study in Zingade's review: craft PGD examples on one
"base" network, hand them to a target network it knows nothing about, and repeat for
every (surrogate, target) pair. The diagonal of the matrix is the white-box success
rate; the off-diagonal entries are what an attacker without the target's weights gets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from numbers import Real
from typing import Any

import numpy as np

from unified_adv.adapters import AttackRequest, adapter_class, backend_names, backends_with
from unified_adv.adapters.base import seed_everything
from unified_adv.analyses.base import AnalysisContext, AnalysisOutput, AnalysisUnit, ResultKey
from unified_adv.catalogue.attacks import ATTACKS
from unified_adv.run.prepared import Prepared
from unified_adv.run.units import unit_seed
from unified_adv.scenario.schema import AnalysisSpec
from unified_adv.sources.models import ModelWrapper

#: Norms PGD is defined for in the catalogue.
TRANSFER_NORMS = ATTACKS["pgd"].norms


@dataclass
class TransferResult:
    """Every (surrogate, target) success rate of one PGD configuration.

    Row ``i`` of ``matrix`` and ``success`` is surrogate ``names[i]``, column ``j``
    target ``names[j]``.
    """

    names: list[str]
    #: (S, S) success rates: share of kept samples whose target prediction became wrong.
    matrix: np.ndarray
    #: (S, S, N) per-sample successes, so intervals and per-image views need no re-run.
    success: np.ndarray
    n_samples: int
    #: Samples left out before attacking, and why.
    dropped: dict[str, Any]
    #: Surrogate name -> its adversarial examples (N, C, H, W), for report images.
    x_adv: dict[str, np.ndarray]
    #: Surrogate name -> the recorded library call of its PGD run.
    library_calls: dict[str, dict[str, Any]]
    time_s: float
    #: (N,) positions in the given ``x`` of the kept samples.
    index: np.ndarray
    #: Surrogate name -> seconds its PGD run took.
    attack_time_s: dict[str, float]
    backend: str
    norm: str
    eps: float
    #: The fully resolved PGD parameters every surrogate was attacked with.
    params: dict[str, Any]
    seed: int

    @property
    def white_box(self) -> dict[str, float]:
        """The diagonal: each model attacked with its own gradients."""
        return {n: float(self.matrix[i, i]) for i, n in enumerate(self.names)}

    def _off_diagonal(self) -> np.ndarray:
        return ~np.eye(len(self.names), dtype=bool)

    def transfer_by_surrogate(self) -> dict[str, float]:
        """Mean success of each surrogate's examples on the other models."""
        off = self._off_diagonal()
        return {n: float(self.matrix[i][off[i]].mean()) for i, n in enumerate(self.names)}

    def transfer_by_target(self) -> dict[str, float]:
        """Mean success of the other models' examples on each target."""
        off = self._off_diagonal()
        return {n: float(self.matrix[:, j][off[:, j]].mean()) for j, n in enumerate(self.names)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (no per-sample arrays): counts too, for the report's intervals."""
        counts = self.success.sum(axis=-1)
        rows = [
            {
                "surrogate": s,
                "white_box": float(self.matrix[i, i]),
                "targets": {t: float(self.matrix[i, j]) for j, t in enumerate(self.names)},
                "successes": {t: int(counts[i, j]) for j, t in enumerate(self.names)},
            }
            for i, s in enumerate(self.names)
        ]
        return {
            "attack": "pgd",
            "backend": self.backend,
            "norm": self.norm,
            "eps": self.eps,
            "params": _jsonable(self.params),
            "seed": self.seed,
            "models": list(self.names),
            "n_samples": self.n_samples,
            "dropped": _jsonable(self.dropped),
            "matrix": self.matrix.tolist(),
            "successes": counts.astype(int).tolist(),
            "rows": rows,
            "white_box": self.white_box,
            "transfer_by_surrogate": self.transfer_by_surrogate(),
            "transfer_by_target": self.transfer_by_target(),
            "mean_transfer": float(self.matrix[self._off_diagonal()].mean()),
            "attack_time_s": dict(self.attack_time_s),
            "time_s": self.time_s,
            "library_calls": _jsonable(self.library_calls),
        }


def _jsonable(value: Any) -> Any:
    """Library call records hold numpy scalars, tuples and the odd object: make them JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _resolve_pgd(eps: float, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check the given PGD parameters by name and fill in the catalogue's defaults."""
    pgd = ATTACKS["pgd"]
    unknown = sorted(set(params) - set(pgd.param_names))
    if unknown:
        raise ValueError(
            f"unknown pgd parameter(s) {', '.join(unknown)}; pgd takes {', '.join(pgd.param_names)}"
        )
    for p in pgd.params:
        if params.get(p.name) is not None:
            try:
                p.check(params[p.name])
            except ValueError as exc:
                raise ValueError(f"pgd {p.name}: {exc}") from None
    return pgd.resolve(eps, params)


def _describe(a: object) -> str:
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


def _predict(model: ModelWrapper, x: np.ndarray, seed: int) -> np.ndarray:
    # Seeded, so a randomised defence in front of a model predicts the same way every run.
    seed_everything(seed)
    return np.asarray(model.logits(x).argmax(1), dtype=np.int64)


def _check_inputs(
    models: Mapping[str, ModelWrapper], x: np.ndarray, y: np.ndarray, backend: str,
    norm: str, eps: float,
) -> Any:  # fmt: skip
    """Refuse bad inputs in one ValueError each; the backend's adapter class when they fit."""
    names = list(models)
    if len(names) < 2:
        raise ValueError(
            f"transfer needs at least two models (surrogates and targets), got {names}"
        )
    if backend not in backend_names():
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(backend_names())}")
    if norm not in TRANSFER_NORMS:
        raise ValueError(f"pgd norm must be one of {', '.join(TRANSFER_NORMS)}, got {norm!r}")
    if isinstance(eps, bool) or not isinstance(eps, Real) or not float(eps) > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype != np.float32:
        raise ValueError(f"x must be a float32 array (N, C, H, W), got {_describe(x)}")
    if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),):
        raise ValueError(f"y must be int64 labels of shape ({len(x)},), got {_describe(y)}")
    if len(x) == 0:
        raise ValueError("no samples given")
    ranges = {n: m.input_range for n, m in models.items()}
    if len(set(ranges.values())) > 1:
        raise ValueError(
            "every model must take the same input range (the same examples go to all): got "
            + ", ".join(f"{n} [{lo:g}, {hi:g}]" for n, (lo, hi) in ranges.items())
        )
    cls = adapter_class(backend)
    cap = cls.capabilities.get("pgd")
    if cap is None or norm not in cap.norms:
        raise ValueError(f"backend '{backend}' cannot run pgd with norm {norm}")
    if not cap.last_point:
        raise ValueError(
            f"backend '{backend}': its pgd does not return the point after its last step, "
            "which transfer sends to the other models"
        )
    if cls.requires_unit_range and ranges[names[0]] != (0.0, 1.0):
        raise ValueError(f"backend '{backend}' needs models with input range [0, 1]")
    return cls


def _kept(
    models: Mapping[str, ModelWrapper], x: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Positions of the samples every model classifies correctly, and why the rest left."""
    correct = {n: _predict(m, x, seed) == y for n, m in models.items()}
    keep = np.logical_and.reduce(list(correct.values()))
    index = np.flatnonzero(keep).astype(np.int64)
    dropped: dict[str, Any] = {
        "total": int(len(x) - len(index)),
        "reason": "misclassified by at least one model before the attack",
        "misclassified_by": {n: int((~c).sum()) for n, c in correct.items()},
    }
    if not len(index):
        raise ValueError(
            f"no sample of {len(x)} is classified correctly by every model "
            f"(misclassified: {dropped['misclassified_by']})"
        )
    return index, dropped


def transfer_matrix(
    models: Mapping[str, ModelWrapper],
    x: np.ndarray,
    y: np.ndarray,
    *,
    backend: str,
    norm: str,
    eps: float,
    params: Mapping[str, Any],
    seed: int,
) -> TransferResult:
    """Run untargeted PGD once per surrogate through ``backend``; score it on every model.

    Only samples every model classifies correctly are attacked, so a success on any target
    means a correct prediction was turned into a wrong one (not a clean mistake counted).
    """
    start = time.perf_counter()
    cls = _check_inputs(models, x, y, backend, norm, eps)
    names = list(models)
    resolved = _resolve_pgd(float(eps), params)
    index, dropped = _kept(models, x, y, seed)
    xk, yk = np.ascontiguousarray(x[index]), np.ascontiguousarray(y[index])
    request = AttackRequest(
        attack="pgd", norm=norm, eps=float(eps), params=resolved, targeted=False
    )
    success = np.zeros((len(names), len(names), len(index)), dtype=bool)
    x_adv: dict[str, np.ndarray] = {}
    calls: dict[str, dict[str, Any]] = {}
    attack_time: dict[str, float] = {}
    for i, surrogate in enumerate(names):
        t0 = time.perf_counter()
        out = cls(model=models[surrogate]).generate(request, xk, yk, None, seed=seed)
        attack_time[surrogate] = time.perf_counter() - t0
        x_adv[surrogate], calls[surrogate] = out.x_adv, out.library_call
        # A sample the library reports as failed (sentinel output) never counts as a success.
        failed = out.backend_failed if out.backend_failed is not None else np.zeros(len(yk), bool)
        for j, target in enumerate(names):
            success[i, j] = (_predict(models[target], out.x_adv, seed) != yk) & ~failed
    return TransferResult(
        names=names,
        matrix=success.mean(axis=-1),
        success=success,
        n_samples=int(len(index)),
        dropped=dropped,
        x_adv=x_adv,
        library_calls=calls,
        time_s=time.perf_counter() - start,
        index=index,
        attack_time_s=attack_time,
        backend=backend,
        norm=norm,
        eps=float(eps),
        params=resolved,
        seed=seed,
    )


# --------------------------------------------------------------------------- the analysis


def transfer_backends(given: tuple[str, ...] | None, norm: str) -> tuple[str, ...]:
    """The backends asked for (all by default) that can run PGD in ``norm`` and return the
    point after its last step (the one sent to the other models; adv-lib's PGD returns the
    input where the surrogate was not fooled)."""
    return backends_with("pgd", norm, among=given, last_point=True)


def _attack(
    prep: Prepared, models: dict[str, ModelWrapper], backend: str, norm: str, eps: float,
    params: dict[str, Any], seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # fmt: skip
    result = transfer_matrix(
        models, prep.data.x, prep.data.y,
        backend=backend, norm=norm, eps=eps, params=params, seed=seed,
    )  # fmt: skip
    arrays = {f"adv_{k}": np.asarray(v) for k, v in result.x_adv.items()}
    arrays["positions"] = np.asarray(result.index)
    return arrays, {"time_s": result.time_s, "result": result.to_dict()}


def run(ctx: AnalysisContext, index: int, spec: AnalysisSpec) -> AnalysisOutput:
    """PGD on each surrogate, success on each target, per backend (the ``transfer`` analysis)."""
    prep = ctx.prep
    norm = spec.norm or "linf"
    eps = float(spec.eps or 0.0)  # required by the schema for transfer
    given = {"steps": spec.steps, "step_size": spec.step_size}
    params = ATTACKS["pgd"].resolve(eps, {k: v for k, v in given.items() if v is not None})
    loaded = [prep.analysis_models[index, j] for j in range(len(spec.models or ()))]
    models = {m.id: lm.wrapper for m, lm in zip(spec.models or (), loaded, strict=True)}
    fingerprints = [lm.fingerprint for lm in loaded]
    seed = unit_seed(prep.scenario.seed, 3000 + index, 0, 0)
    context = f"{':'.join(fingerprints)}:{prep.data.fingerprint}"
    per_backend: dict[str, Any] = {}
    images: dict[str, Any] = {}
    for backend in transfer_backends(spec.backends, norm):
        unit = AnalysisUnit(
            index, spec.label, "transfer", "final", backend,
            (("eps", eps), ("norm", norm), *sorted(params.items())), seed, context,
        )  # fmt: skip
        arrays, meta = ctx.store.cached(
            unit, partial(_attack, prep, models, backend, norm, eps, params, seed)
        )
        per_backend[backend] = meta["result"]
        images[backend] = {k[4:]: v for k, v in arrays.items() if k.startswith("adv_")}
        images[backend]["_positions"] = arrays["positions"]
    entry = {
        "id": spec.label,
        "name": "transfer",
        "models": [
            {"id": m.id, "description": m.describe(), "fingerprint": fp}
            for m, fp in zip(spec.models or (), fingerprints, strict=True)
        ],
        "norm": norm,
        "eps": eps,
        "params": params,
        "backends": per_backend,
    }
    return AnalysisOutput(entry, {ResultKey(index): {"images": images, "models": models}})
