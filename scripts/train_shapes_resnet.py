"""A torchvision ResNet-18 (10 classes, unchanged stem) trained on the synthetic shapes of
``make_shapes_cifar.py``, saved where ``scenarios/cifar_shapes.yaml`` looks.

    python scripts/train_shapes_resnet.py [OUT] [--epochs 5] [--seed 0] [--threads 1]

reads OUT/cifar-10-batches-py (made first if missing, default OUT: build/shapes) and writes
OUT/resnet18_shapes.ts (TorchScript) and OUT/resnet18_shapes.safetensors (its state dict,
for ``torchvision: resnet18`` with ``weights:``). ~45 MB each, so they are made on demand
rather than shipped. The network takes normalised inputs; the scenario gives the mean/std
(in [0, 1] units), so the normalisation stays part of the evaluated model.

The defaults (5 epochs of the 5,000 training images, batch 64, AdamW with a one-cycle
learning rate peaking at 2e-3) take a few minutes on one CPU thread; the held-out test split's
accuracy is printed at the end. One epoch at a constant rate (79 steps) left a from-scratch
ResNet-18 near chance; SGD with momentum at a peak of 0.1 learnt far slower here. The stem is
torchvision's own (7x7 stride 2 and max-pool), so ``torchvision: resnet18`` loads the same
network from the state dict. Deterministic for a given seed and torch thread count (CPU
kernels' reduction order depends on the threads).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_shapes_cifar import write_shapes_cifar  # noqa: E402

#: CIFAR-10's per-channel mean and std in [0, 1] units, as the scenario gives them.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split in [0, 1], read through unified-adv's own CIFAR reader."""
    from unified_adv.sources.ondisk import read_cifar

    raw = read_cifar("cifar10", root, split, str(root))
    return torch.from_numpy(raw.x.astype(np.float32) / 255), torch.from_numpy(raw.y).long()


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of the network (eval mode) on normalised ``x``."""
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(_normalised(x[s : s + batch])).argmax(1) for s in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, batch: int = 64) -> None:
    """AdamW with a one-cycle learning rate (peak 2e-3) over shuffled mini-batches."""
    steps_per_epoch = (len(x) + batch - 1) // batch
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for s in range(0, len(x), batch):
            i = order[s : s + batch]
            loss = nn.functional.cross_entropy(net(_normalised(x[i])), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(i)
        print(f"epoch {epoch + 1}/{epochs}: mean training loss {total / len(x):.3f}", flush=True)


def train(out: Path, epochs: int = 5, seed: int = 0, threads: int = 1) -> tuple[nn.Module, float]:
    """Train and save; returns the network (eval mode) and its held-out test accuracy."""
    torch.set_num_threads(threads)
    if not (out / "cifar-10-batches-py" / "batches.meta").is_file():
        write_shapes_cifar(out)
    x, y = load_split(out, "train")
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    fit(net, x, y, epochs, seed)
    test_accuracy = accuracy(net, *load_split(out, "test"))
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(net).save(str(out / "resnet18_shapes.ts"))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "resnet18_shapes.safetensors"))
    return net, test_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="build/shapes")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    a = parser.parse_args()
    t0 = time.perf_counter()
    _, test_accuracy = train(Path(a.out), a.epochs, a.seed, a.threads)
    print(
        f"saved {a.out}/resnet18_shapes.ts and .safetensors in {time.perf_counter() - t0:.0f} s; "
        f"held-out test accuracy {100 * test_accuracy:.1f} %"
    )


if __name__ == "__main__":
    main()
