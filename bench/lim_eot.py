"""Why is adaptive EOT-FGSM on lim.yaml's randomization weaker than the transfer attack?

Usage: python bench/lim_eot.py art,torchattacks,foolbox 1,10,100

Measures, on all 540 held-out digits at eps 0.1: the non-adaptive FGSM (made on the
undefended model, scored through the defence); each library's EOT at several draw counts;
a hand-written EOT over the exact expectation (the layer's five possible transforms with
their probabilities); the accuracy on each transform; and other EOT objectives.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import unified_adv
from unified_adv.adapters import AttackRequest, adapter_class
from unified_adv.defences.layers import RandomizationLayer
from unified_adv.defences.randomness import reseed
from unified_adv.run.prepare import prepare

sc = unified_adv.load_scenario("scenarios/lim.yaml")
prep = prepare(sc)
v = prep.variants["randomization"]
x, y = prep.data.x, prep.data.y
eps = 0.1


def req(eot):
    return AttackRequest(
        attack="fgsm", norm="linf", eps=eps, params={"eot_samples": eot}, targeted=False
    )


def acc(xa):
    return float((v.score(xa).argmax(1) == y).mean())


layer = [m for m in v.wrapper.modules() if isinstance(m, RandomizationLayer)][0]
print("layer", layer.extra_repr())
und = (
    adapter_class("torchattacks")(model=prep.model.wrapper)
    .generate(req(1), x, y, None, seed=1)
    .x_adv
)
print("non-adaptive", acc(und))
for b in sys.argv[1].split(","):
    for eot in [int(e) for e in sys.argv[2].split(",")]:
        reseed(v.wrapper, 5)
        xa = adapter_class(b)(model=v.wrapper).generate(req(eot), x, y, None, seed=1).x_adv
        print(
            b,
            "eot",
            eot,
            "acc",
            acc(xa),
            "mean|d|",
            float(np.abs(xa - x).mean()),
            "zero-d share",
            float((xa == x).mean()),
            flush=True,
        )
# Exact expectation over every transform the layer can draw (hand-written EOT).
transforms = [(8, 0, 0, 0.5)] + [(7, t, c, 0.125) for t in (0, 1) for c in (0, 1)]


def loss_grad(size, top, left):
    orig = layer.draw
    layer.draw = lambda n: (torch.full((n,), size), torch.full((n,), top), torch.full((n,), left))
    try:
        xx = torch.from_numpy(x).clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(
            v.wrapper(xx), torch.from_numpy(y), reduction="sum"
        )
        (g,) = torch.autograd.grad(loss, xx)
        return g.numpy()
    finally:
        layer.draw = orig


def fixed_acc(xa, size, top, left):
    orig = layer.draw
    layer.draw = lambda n: (torch.full((n,), size), torch.full((n,), top), torch.full((n,), left))
    try:
        return v.wrapper.logits(xa).argmax(1) == y
    finally:
        layer.draw = orig


G = {t[:3]: loss_grad(*t[:3]) for t in transforms}
exact = sum(w * G[(s, a, b)] for s, a, b, w in transforms)
xe = np.clip(x + eps * np.sign(exact), 0, 1).astype(np.float32)
print("exact-expectation EOT FGSM", acc(xe), "zero-grad share", float((exact == 0).mean()))
for s_, a_, b_, w_ in transforms:
    gn = np.abs(G[(s_, a_, b_)]).reshape(len(x), -1).sum(1)
    print(
        "transform",
        (s_, a_, b_),
        "weight",
        w_,
        "median per-sample L1 loss gradient",
        float(np.median(gn)),
    )
for name, xa in (("non-adaptive", und), ("exact EOT", xe)):
    per = {f"{s},{a},{b}": float(fixed_acc(xa, s, a, b).mean()) for s, a, b, _ in transforms}
    exp = sum(w * per[f"{s},{a},{b}"] for s, a, b, w in transforms)
    print(name, "accuracy per transform", per, "expected", round(exp, 4))


def objective_grad(kind):
    xx = torch.from_numpy(x).clone().requires_grad_(True)
    yt = torch.from_numpy(y)
    total = 0
    outs = []
    for s, a, b, w in transforms:
        orig = layer.draw
        layer.draw = lambda n, s=s, a=a, b=b: (
            torch.full((n,), s),
            torch.full((n,), a),
            torch.full((n,), b),
        )
        try:
            outs.append((w, v.wrapper(xx)))
        finally:
            layer.draw = orig
    if kind == "logit-average CE":
        total = torch.nn.functional.cross_entropy(sum(w * o for w, o in outs), yt, reduction="sum")
    elif kind == "expected softmax error":
        total = sum(w * (1 - o.softmax(1).gather(1, yt[:, None])).sum() for w, o in outs)
    elif kind == "CE of expected probabilities":
        p = sum(w * o.softmax(1) for w, o in outs)
        total = torch.nn.functional.nll_loss(p.log(), yt, reduction="sum")
    (g,) = torch.autograd.grad(total, xx)
    return g.numpy()


for kind in ("logit-average CE", "expected softmax error", "CE of expected probabilities"):
    g = objective_grad(kind)
    xa = np.clip(x + eps * np.sign(g), 0, 1).astype(np.float32)
    print("exact", kind, acc(xa))
# multi-step EOT (BIM 10 steps of eps/4) with the libraries' own EOT
for b in ("art", "torchattacks", "foolbox"):
    r = AttackRequest(
        attack="bim",
        norm="linf",
        eps=eps,
        params={"eot_samples": 10, "steps": 10, "step_size": 0.025},
        targeted=False,
    )
    reseed(v.wrapper, 5)
    xa = adapter_class(b)(model=v.wrapper).generate(r, x, y, None, seed=1).x_adv
    print(b, "BIM-EOT10", acc(xa))
r = AttackRequest(
    attack="bim", norm="linf", eps=eps, params={"steps": 10, "step_size": 0.025}, targeted=False
)
xa = adapter_class("torchattacks")(model=prep.model.wrapper).generate(r, x, y, None, seed=1).x_adv
print("non-adaptive BIM", acc(xa))
