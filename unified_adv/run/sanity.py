"""Signs that a user's model and data do not fit, which are not errors: each a (code,
message) pair, printed on stderr when the scenario is prepared and listed among the
report's findings (level warning). The mistakes behind them, as users made them: class
folders in another order than the model's classes, mean/std in [0, 1] units for a
[0, 255] model, a step size given in pixel units, a wrong image size. Every number about
the images (eps, step sizes, mean, std) is in the model's ``input_range`` units.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from unified_adv.scenario.schema import Scenario

#: Clean accuracy below chance + this share of the way from chance to 100 % is "near
#: chance": 32.5 % for 10 classes, 62.5 % for 2, 25.1 % for 1000. The mistakes above gave
#: 10-23 % on 10-class models that score over 80 % when used right.
NEAR_CHANCE = 0.25
#: A class matching (Hungarian, on the confusion matrix) must reach this accuracy and gain
#: this much, with at least this many samples per class on average, before the class order
#: is blamed: a matching of a chance-level model gains something by luck (the digits CNN on
#: wrongly cropped digits, 16 % clean, matched to 37 % on 100 images), a permuted good
#: model's matching reaches its real accuracy.
ORDER_MATCHED = 0.5
ORDER_GAIN = 0.2
ORDER_SAMPLES_PER_CLASS = 5
#: A std below this share of the input range is taken for the wrong units ([0, 1] values
#: for a [0, 255] model: 0.229 / 255 = 0.0009); real ones are 0.2-0.3 of the range.
STD_MIN_SHARE = 0.01

Warning = tuple[str, str]


def _range(s: Scenario) -> str:
    lo, hi = s.model.input_range
    return f"[{lo:g}, {hi:g}]"


def mean_std_units(s: Scenario) -> list[Warning]:
    """mean within the input range, std between 1 % of its width and its width."""
    m = s.model
    if m.mean is None or m.std is None:
        return []
    lo, hi = m.input_range
    width = hi - lo
    off = [v for v in m.mean if not lo <= v <= hi]
    odd = [v for v in m.std if not STD_MIN_SHARE * width <= v <= width]
    if not off and not odd:
        return []
    values = ", ".join(f"{v:g}" for v in (*off, *odd))
    hint = ""
    if width >= 100 and max(*m.mean, *m.std) <= 1:
        hint = f"; they look like [0, 1] units: multiply them by {width:g}"
    elif width <= 1 and max(m.mean) > 1.5 * hi:
        hint = "; they look like [0, 255] units: divide them by 255"
    return [
        (
            "mean_std_units",
            f"model.mean/std ({values}) do not fit model.input_range {_range(s)}: mean and std "
            f"are in input_range units (a mean inside the range, a std between "
            f"{STD_MIN_SHARE * width:g} and {width:g}){hint}.",
        )
    ]


def budget_at_range(s: Scenario) -> list[Warning]:
    """An L-inf eps or a step size as wide as the whole input range bounds nothing (a wider
    eps is refused by the scenario checks)."""
    lo, hi = s.model.input_range
    width = hi - lo
    out = []
    for i, a in enumerate(s.attacks):
        if a.norm == "linf" and a.eps and max(a.eps) >= width:
            out.append(
                (
                    "eps_at_range",
                    f"attacks[{i}].eps {max(a.eps):g} is as wide as the input range {_range(s)}: "
                    "every image lies in that L-inf ball; eps is in input_range units "
                    "(8/255 for a [0, 1] model is 8 for a [0, 255] one).",
                )
            )
        step = a.given_params().get("step_size")
        if a.norm == "linf" and step is not None and step >= width:
            out.append(
                (
                    "step_at_range",
                    f"attacks[{i}].step_size {step:g} is at least the whole input range "
                    f"{_range(s)}: one step jumps to the ball's corners; step sizes are in "
                    "input_range units (e.g. 2/255 for a [0, 1] model).",
                )
            )
    return out


def clean_accuracy(
    s: Scenario, y: np.ndarray, logits: np.ndarray, names: list[str]
) -> list[Warning]:
    """Clean accuracy near chance, and a better class matching when there is one."""
    n, k = logits.shape
    if n == 0:
        return []
    pred = logits.argmax(1)
    acc = float((pred == y).mean())
    chance = 1.0 / k
    if acc >= chance + NEAR_CHANCE * (1 - chance):
        return []
    out = [
        (
            "clean_near_chance",
            f"Clean accuracy is {acc:.1%} ({int((pred == y).sum())} of {n}) on {k} classes, near "
            f"chance ({chance:.1%}): the model and the data may not fit. Check the class order "
            "(data.classes), the image size (data.image_size, or resize and center_crop), "
            "mean/std and model.input_range (mean/std in input_range units).",
        )
    ]
    return out + _class_order(y, pred, k, acc, names)


def _class_order(
    y: np.ndarray, pred: np.ndarray, k: int, acc: float, names: list[str]
) -> list[Warning]:
    """The data's labels matched onto the model's classes so as to maximise accuracy."""
    n = len(y)
    if n < ORDER_SAMPLES_PER_CLASS * len(np.unique(y)) or (y >= k).any():
        return []
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    matched = float(confusion[rows, cols].sum()) / n
    if matched < max(ORDER_MATCHED, acc + ORDER_GAIN):
        return []
    moved = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if r != c and confusion[r].sum()]
    def label(r: int) -> str:
        return f"{names[r]} ({r})" if r < len(names) else str(r)

    shown = ", ".join(f"{label(r)} -> {c}" for r, c in moved[:8])
    shown += " ..." if len(moved) > 8 else ""
    return [
        (
            "class_order",
            f"Clean accuracy would be {matched:.1%} instead of {acc:.1%} if the data's labels were "
            f"mapped onto the model's classes as {shown} (data label -> model class): the "
            "data's class order is likely not the model's. Give data.classes: the class "
            "names in the model's order.",
        )
    ]


def setup_warnings(
    s: Scenario, y: np.ndarray, logits: np.ndarray, names: list[str]
) -> list[Warning]:
    """Every warning about the scenario's model and data, in a fixed order."""
    return mean_std_units(s) + budget_at_range(s) + clean_accuracy(s, y, logits, names)
