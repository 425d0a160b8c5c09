"""A torchvision ResNet-18 (10 classes, unchanged stem) trained briefly on the synthetic
shapes of ``make_shapes_cifar.py``, saved where ``scenarios/cifar_shapes.yaml`` looks.

    python scripts/train_shapes_resnet.py [OUT] [--epochs 1] [--seed 0]

reads OUT/cifar-10-batches-py (made first if missing, default OUT: build/shapes) and writes
OUT/resnet18_shapes.ts (TorchScript) and OUT/resnet18_shapes.safetensors (its state dict,
for ``torchvision: resnet18`` with ``weights:``). ~45 MB each, so they are made on demand
rather than shipped. The network takes normalised inputs; the scenario gives the mean/std
(in [0, 1] units), so the normalisation stays part of the evaluated model. Deterministic for
a given seed and torch thread count (CPU kernels' reduction order depends on the threads).
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


def load_train(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batches, read through unified-adv's own CIFAR reader."""
    from unified_adv.sources.ondisk import read_cifar

    raw = read_cifar("cifar10", root, "train", str(root))
    return torch.from_numpy(raw.x.astype(np.float32) / 255), torch.from_numpy(raw.y)


def train(out: Path, epochs: int = 1, seed: int = 0, batch: int = 64) -> nn.Module:
    """Train and save; returns the network (eval mode)."""
    if not (out / "cifar-10-batches-py" / "batches.meta").is_file():
        write_shapes_cifar(out)
    x, y = load_train(out)
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), batch):
            i = order[s : s + batch]
            loss = nn.functional.cross_entropy(net((x[i] - mean) / std), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.3f}", flush=True)
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(net).save(str(out / "resnet18_shapes.ts"))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "resnet18_shapes.safetensors"))
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="build/shapes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    t0 = time.perf_counter()
    train(Path(a.out), a.epochs, a.seed)
    print(f"saved {a.out}/resnet18_shapes.ts and .safetensors in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
