"""Zingade's catalogue as analyses: universal perturbations against random controls, and
black-box transfer between several models. Each is saved as analysis units and resumed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from unified_adv.analyses.monitor import AnalysisUnit
from unified_adv.errors import InputError
from unified_adv.run.prepared import Prepared
from unified_adv.run.units import load_unit, save_unit, unit_seed
from unified_adv.sources.builtin.digits import digits_split
from unified_adv.sources.data import scale_into

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


def run_uap(
    prep: Prepared, a_i: int, spec: Any, folder: Path, resume: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    from unified_adv.analyses.uap import uap_study

    scenario = prep.scenario
    seed = spec.seed if spec.seed is not None else scenario.seed
    norms = spec.norms or ("l2", "linf")
    zetas = spec.zetas or (0.04,)
    every = spec.targets == "all"
    targets = tuple(range(prep.num_classes)) if every else tuple(spec.targets or ())
    # Targets beyond the model's classes were refused by prepare().
    x_fit, y_fit, x_eval, y_eval, fit_from = fit_and_eval_split(prep, spec.fit_images, seed)
    attacker: str = spec.attacker or "fgsm"
    max_iter: int = spec.max_iter or 10
    delta: float = spec.delta if spec.delta is not None else 0.2
    settings: dict[str, Any] = {
        "norms": list(norms),
        "zetas": list(zetas),
        "targets": list(targets),
        "attacker": attacker,
        "max_iter": max_iter,
        "delta": delta,
        "success_over": spec.success_over or "other_classes",
    }
    unit = AnalysisUnit(
        a_i,
        spec.label,
        "uap",
        "final",
        "art",
        tuple(sorted((k, str(v)) for k, v in settings.items())),
        seed,
        f"{prep.model.fingerprint}:{prep.data.fingerprint}:{len(x_fit)}",
    )
    stored = load_unit(folder, unit) if resume else None
    if stored is not None:
        arrays, meta = stored
        result = meta["study"]
        perturbations = list(arrays["perturbations"])
        elapsed = float(meta.get("time_s", 0.0))
    else:
        t0 = time.perf_counter()
        study = uap_study(
            prep.model.wrapper,
            x_fit,
            y_fit,
            x_eval,
            y_eval,
            norms=norms,
            zetas=zetas,
            targets=targets,
            attacker=attacker,
            max_iter=max_iter,
            delta=delta,
            seed=seed,
            success_over=settings["success_over"],
        )
        elapsed = time.perf_counter() - t0
        result = study.to_dict()
        perturbations = list(study.perturbations)
        save_unit(
            folder,
            unit,
            {"perturbations": np.stack(perturbations).astype(np.float32)},
            {"status": "ok", "time_s": elapsed, "study": result},
        )
    return {
        "id": spec.label,
        "name": "uap",
        "backend": "art",
        "fit_images": int(len(x_fit)),
        "fit_from": fit_from,
        "eval_images": int(len(x_eval)),
        "time_s": elapsed,
        **result,
    }, {"perturbations": perturbations}


def run_transfer(
    prep: Prepared, a_i: int, spec: Any, folder: Path, resume: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    from unified_adv.analyses.transfer import transfer_matrix
    from unified_adv.catalogue.attacks import ATTACKS

    scenario = prep.scenario
    norm = spec.norm or "linf"
    eps = float(spec.eps)
    given = {"steps": spec.steps, "step_size": spec.step_size}
    params = ATTACKS["pgd"].resolve(eps, {k: v for k, v in given.items() if v is not None})
    models = {}
    fingerprints = []
    for j, m in enumerate(spec.models):
        loaded = prep.other_models[f"transfer:{a_i}:{j}"]  # loaded and checked by prepare()
        models[m.id] = loaded.wrapper
        fingerprints.append(loaded.fingerprint)
    backends = _transfer_backends(spec.backends, norm)
    seed = unit_seed(scenario.seed, 3000 + a_i, 0, 0)
    per_backend: dict[str, Any] = {}
    images: dict[str, Any] = {}
    for backend in backends:
        unit = AnalysisUnit(
            a_i,
            spec.label,
            "transfer",
            "final",
            backend,
            (("eps", eps), ("norm", norm), *sorted(params.items())),
            seed,
            f"{':'.join(fingerprints)}:{prep.data.fingerprint}",
        )
        stored = load_unit(folder, unit) if resume else None
        if stored is not None:
            arrays, meta = stored
            entry = meta["result"]
            images[backend] = {k[4:]: v for k, v in arrays.items() if k.startswith("adv_")}
            images[backend]["_positions"] = arrays["positions"]
        else:
            result = transfer_matrix(
                models,
                prep.data.x,
                prep.data.y,
                backend=backend,
                norm=norm,
                eps=eps,
                params=params,
                seed=seed,
            )
            entry = result.to_dict()
            arrays = {f"adv_{k}": np.asarray(v) for k, v in result.x_adv.items()}
            arrays["positions"] = np.asarray(result.index)
            save_unit(
                folder, unit, arrays, {"status": "ok", "time_s": result.time_s, "result": entry}
            )
            images[backend] = {k: np.asarray(v) for k, v in result.x_adv.items()}
            images[backend]["_positions"] = np.asarray(result.index)
        per_backend[backend] = entry
    return {
        "id": spec.label,
        "name": "transfer",
        "models": [
            {"id": m.id, "description": m.describe(), "fingerprint": fp}
            for m, fp in zip(spec.models, fingerprints, strict=True)
        ],
        "norm": norm,
        "eps": eps,
        "params": params,
        "backends": per_backend,
    }, {"images": images, "models": models}


def _transfer_backends(given: tuple[str, ...] | None, norm: str) -> tuple[str, ...]:
    from unified_adv.adapters import adapter_class, backend_names

    names = given if given and given != ("all",) else backend_names()
    return tuple(
        b
        for b in names
        if "pgd" in adapter_class(b).capabilities
        and norm in adapter_class(b).capabilities["pgd"].norms
    )
