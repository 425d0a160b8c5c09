"""AutoAttack's ensemble logic, recomputed by unified-adv from its components' own runs.

AutoAttack counts a sample as fooled when any of its components fooled it (each component
runs on the samples the earlier ones left). unified-adv recomputes that worst case per
sample from the scenario's separate runs of the components on the same backend, norm and
eps (``apgd`` with loss ce / dlr_targeted / dlr, ``fab``, ``square``), and compares it with
the library's ensemble sample by sample. The components draw random starts, so the two can
differ by chance on a few samples; a library ensemble that loses significantly many samples
its own components fool has broken ensemble logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unified_adv.evaluate.crosscheck import mcnemar_exact
from unified_adv.evaluate.results import RowsOf, perturbation_sizes, success_mask
from unified_adv.run.prepared import Prepared, UnitOutcome

#: AutoAttack's components as catalogue runs: name -> (attack, the parameters that make it).
COMPONENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "apgd-ce": ("apgd", {"loss": "ce"}),
    "apgd-t": ("apgd", {"loss": "dlr_targeted"}),
    "apgd-dlr": ("apgd", {"loss": "dlr"}),
    "fab-t": ("fab", {}),
    "square": ("square", {}),
}
#: The components of each version, in the original's order.
ORDER = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
#: Component attacks without an eps: fooled at the ensemble's eps by their distance.
_MINIMAL = ("fab",)
#: Components that only query the model's outputs.
BLACK_BOX = ("square",)
ALPHA = 0.05


def first_success(fooled: Mapping[str, np.ndarray], order: tuple[str, ...]) -> np.ndarray:
    """Per sample, the index in ``order`` of the first component that fooled it (-1: none):
    the ensemble's per-sample worst case, as AutoAttack composes it."""
    present = [name for name in order if name in fooled]
    n = len(next(iter(fooled.values()))) if fooled else 0
    first = np.full(n, -1, dtype=np.int64)
    for name in reversed(present):
        first[fooled[name]] = order.index(name)
    return first


def compare(library: np.ndarray, own: np.ndarray) -> dict[str, Any]:
    """The library's ensemble against the recomputed one, sample by sample (both boolean
    "fooled" masks over the same samples): counts and McNemar's exact p."""
    only_library = int((library & ~own).sum())
    only_own = int((own & ~library).sum())
    return {
        "n": len(library),
        "library_fooled": int(library.sum()),
        "own_fooled": int(own.sum()),
        "only_library": only_library,
        "only_own": only_own,
        "p": mcnemar_exact(only_library, only_own),
    }


#: A minimal-perturbation component (FAB-T) fools a sample at eps when its distance is at
#: most eps, to float32 rounding (FAB's own test inside AutoAttack is ``||δ|| <= eps``).
AT_EPS_RTOL = 1e-5


def _series(prep: Prepared, outcomes: list[UnitOutcome]) -> dict[tuple[Any, ...], dict[int, Any]]:
    """Undefended, untargeted runs: (attack, norm, eps, backend, params) -> position -> fooled
    (a bool); for a minimal-perturbation run (eps None), position -> the distance it found in
    its norm (infinity where it failed)."""
    out: dict[tuple[Any, ...], dict[int, Any]] = {}
    for o in outcomes:
        u = o.unit
        if not o.ok or u.defence or u.target != "untargeted":
            continue
        if u.eps is None and (u.attack not in _MINIMAL or u.norm not in ("linf", "l2")):
            continue
        assert o.arrays is not None
        pos = o.arrays["positions"]
        fooled = success_mask(prep.data.y[pos], o.arrays)
        values: Any = fooled.tolist()
        if u.eps is None:
            size = perturbation_sizes(o.arrays["x_adv"], RowsOf(prep.data.x, pos))[u.norm]
            values = np.where(fooled, size, np.inf).tolist()
        key = (
            u.attack_id,
            u.attack,
            u.norm,
            None if u.eps is None else float(u.eps),
            u.backend,
            u.params,
        )
        out.setdefault(key, {}).update(zip(pos.tolist(), values, strict=True))
    return out


def _at(run: dict[int, Any], eps: float) -> dict[int, bool]:
    """A component's run as fooled-or-not at ``eps`` (a minimal run: distance within eps)."""
    if not run or isinstance(next(iter(run.values())), bool):
        return run
    return {p: d <= eps * (1 + AT_EPS_RTOL) for p, d in run.items()}


def _component(key: tuple[Any, ...], name: str) -> bool:
    attack, needs = COMPONENTS[name]
    params = dict(key[5])
    return key[1] == attack and all(params.get(k) == v for k, v in needs.items())


def ensemble_checks(prep: Prepared, outcomes: list[UnitOutcome]) -> list[dict[str, Any]]:
    """One record per AutoAttack series (attack × eps × backend) whose backend also ran at
    least one component at the same norm and eps: the recomputed ensemble against the
    library's, on the samples every run shares."""
    series = _series(prep, outcomes)
    records = []
    for key, aa in series.items():
        if key[1] != "autoattack":
            continue
        order = ORDER[dict(key[5])["version"]]
        runs = {
            name: _at(series[k], key[3])
            for name in order
            for k in series
            if k[2] == key[2] and k[3] in (key[3], None) and k[4] == key[4] and _component(k, name)
        }
        if not runs:
            continue
        shared = sorted(set(aa).intersection(*runs.values()))
        fooled = {name: np.array([r[p] for p in shared], dtype=bool) for name, r in runs.items()}
        first = first_success(fooled, order)
        library = np.array([aa[p] for p in shared], dtype=bool)
        records.append(
            {
                "attack_id": key[0],
                "backend": key[4],
                "norm": key[2],
                "eps": key[3],
                "components": [n for n in order if n in runs],
                "missing": [n for n in order if n not in runs],
                "first_fooled_by": {n: int((first == order.index(n)).sum()) for n in runs},
                **compare(library, first >= 0),
            }
        )
    return records


def pgd_comparisons(prep: Prepared, outcomes: list[UnitOutcome]) -> list[dict[str, Any]]:
    """Every AutoAttack series against every PGD series at the same norm and eps (any
    backends), on the samples both attacked and the model classified correctly: robust
    counts under each. AutoAttack contains a stronger PGD; more robust samples under it
    mean a broken evaluation (too few steps, a wrong loss, a lost sample)."""
    series = _series(prep, outcomes)
    correct = prep.clean_logits.argmax(1) == prep.data.y
    out = []
    for aa_key, aa in series.items():
        for pgd_key, pgd in series.items():
            if aa_key[1] != "autoattack" or pgd_key[1] != "pgd" or aa_key[2:4] != pgd_key[2:4]:
                continue
            shared = [p for p in sorted(set(aa) & set(pgd)) if correct[p]]
            out.append(
                {
                    "attack_id": aa_key[0],
                    "backend": aa_key[4],
                    "pgd_id": pgd_key[0],
                    "pgd_backend": pgd_key[4],
                    "norm": aa_key[2],
                    "eps": aa_key[3],
                    "n": len(shared),
                    "robust": sum(not aa[p] for p in shared),
                    "pgd_robust": sum(not pgd[p] for p in shared),
                }
            )
    return out


def autoattack_checks(prep: Prepared, outcomes: list[UnitOutcome]) -> dict[str, Any] | None:
    """With an AutoAttack in the scenario: each library's ensemble against the recomputed one
    (:func:`ensemble_checks`) and AutoAttack against PGD (:func:`pgd_comparisons`), computed
    once for the summary and the findings; None without one."""
    if not outcomes or not any(p.spec.name == "autoattack" for p in prep.plans):
        return None
    return {
        "ensembles": ensemble_checks(prep, outcomes),
        "versus_pgd": pgd_comparisons(prep, outcomes),
    }
