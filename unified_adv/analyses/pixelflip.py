"""Exhaustive one-pixel flips (Kügler et al. 2018): every single-pixel candidate of every
image, classified; no search, so the list of one-pixel adversarial examples is complete.

**Candidates.** For binary grey images (one channel, every value at an end of the value
range) candidate (n, 0, i, j) is image n with pixel (i, j) flipped, x → lo + hi − x
(K = 1). Otherwise pixel (i, j) is set to every corner of the value range per channel
(K = 2 for grey, 8 for RGB: corner k has channel c at ``hi`` iff bit C−1−c of k is set);
a corner equal to the current pixel is no candidate (``valid`` is False there). A
candidate is **adversarial when the model's argmax on it differs from the model's argmax
on the original image** (labels play no part: the question is whether one pixel moves the
decision).

**Engines.** :func:`bruteforce_flips` is the reference: per image, its candidates in
order (k, i, j), built and classified in chunks of ``batch_size``; the clean prediction
is the argmax of a forward pass of the image alone. :func:`generic_flips` runs plain
forward passes on candidate batches built by vectorised indexing, in any batch size and
image range. :func:`fast_flips` walks nets made of Conv2d (stride 1), ReLU, MaxPool2d,
Dropout, Flatten and Linear and recomputes only the receptive field a flip changes.

**Why the verdicts are identical.** Float32 results depend on the batch they are computed
in (reduction order), so a candidate whose top-2 margin is ~1e-7 could be called either
way by different batchings. Both engines therefore compute the margin
m = z[clean class] − max over other classes z, and every candidate (and clean image) with
|m| ≤ rtol·(1 + max|z|) is re-evaluated by rebuilding exactly the reference's chunk (same
image, same chunk, same batch size) and running the model on it — bitwise the reference
computation. Outside that band float error cannot change the verdict: the largest
discrepancy we measured between an engine's and the reference's margins is ~1e-6 of that
scale, two orders below the default rtol (1e-4). The engines must be given the
reference's ``batch_size`` (``ref_batch_size``) for this to hold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from unified_adv.sources.models import ModelWrapper

REF_BATCH = 256
RTOL = 1e-4
MODES = ("auto", "flip", "corners")


# --------------------------------------------------------------------------- candidates


def _value_range(model: nn.Module, value_range: Sequence[float] | None) -> tuple[float, float]:
    if value_range is not None:
        return float(value_range[0]), float(value_range[1])
    if isinstance(model, ModelWrapper):
        return model.input_range
    return 0.0, 1.0


def resolve_mode(images: np.ndarray, value_range: Sequence[float], mode: str = "auto") -> str:
    """'flip' for binary grey images, else 'corners' (decided on the whole array)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        if mode == "flip" and images.shape[1] != 1:
            raise ValueError("mode 'flip' needs one-channel images")
        return mode
    lo, hi = value_range
    binary = images.shape[1] == 1 and bool(np.isin(images, (lo, hi)).all())
    return "flip" if binary else "corners"


def corners(channels: int, value_range: Sequence[float]) -> np.ndarray:
    """(2**C, C) float32: corner k has channel c at hi iff bit C−1−c of k is set."""
    if channels > 4:
        raise ValueError(f"corner candidates for {channels} channels would be 2**{channels}")
    k = np.arange(2**channels)[:, None]
    bits = (k >> (channels - 1 - np.arange(channels))[None, :]) & 1
    lo, hi = value_range
    return np.where(bits == 1, hi, lo).astype(np.float32)


def n_kinds(images: np.ndarray, mode: str) -> int:
    return 1 if mode == "flip" else 2 ** images.shape[1]


def candidate_pixels(
    x: torch.Tensor, mode: str, value_range: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """New pixel values (n, K, C, H, W) and the validity mask (n, K, H, W) for images x."""
    lo, hi = value_range
    n, c, h, w = x.shape
    if mode == "flip":
        return (lo + hi - x).unsqueeze(1), torch.ones(n, 1, h, w, dtype=torch.bool)
    cor = torch.from_numpy(corners(c, value_range)).to(x.dtype)  # (K, C)
    new = cor[None, :, :, None, None].expand(n, -1, -1, h, w)
    valid = (new != x.unsqueeze(1)).any(2)
    return new, valid


def candidate_validity(images: np.ndarray, mode: str, value_range: Sequence[float]) -> np.ndarray:
    """(N, K, H, W) bool: which (image, kind, position) are real candidates."""
    _, valid = candidate_pixels(torch.from_numpy(np.ascontiguousarray(images)), mode, value_range)
    return valid.numpy()


# --------------------------------------------------------------------------- reference


@dataclass
class _Run:
    """What every engine needs: the model in eval mode, the images, mode and tolerances."""

    model: nn.Module
    images: np.ndarray
    mode: str
    value_range: tuple[float, float]
    ref_batch: int
    rtol: float
    rechecked: int = 0
    clean_rechecked: int = 0
    ref_clean: dict[int, int] = field(default_factory=dict)

    @property
    def kinds(self) -> int:
        return n_kinds(self.images, self.mode)

    @property
    def per_image(self) -> int:
        return self.kinds * self.images.shape[2] * self.images.shape[3]

    def reference_clean(self, n: int) -> int:
        """The reference clean class: argmax of the image alone."""
        if n not in self.ref_clean:
            x = torch.from_numpy(np.ascontiguousarray(self.images[n : n + 1]))
            self.ref_clean[n] = int(self.model(x).argmax(1)[0])
        return self.ref_clean[n]

    def reference_chunk(self, n: int, chunk: int) -> torch.Tensor:
        """Classes of the reference's chunk ``chunk`` of image n's candidates (k, i, j order)."""
        _, c, h, w = self.images.shape
        x = torch.from_numpy(np.ascontiguousarray(self.images[n : n + 1]))
        new, _ = candidate_pixels(x, self.mode, self.value_range)
        q = torch.arange(chunk * self.ref_batch, min((chunk + 1) * self.ref_batch, self.per_image))
        k, pix = q // (h * w), q % (h * w)
        i, j = pix // w, pix % w
        batch = x.expand(len(q), c, h, w).clone()
        batch[torch.arange(len(q)), :, i, j] = new[0, k, :, i, j]
        return self.model(batch).argmax(1)

    def recheck(self, n: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Reference verdicts for candidates (image n, flat index q), one chunk at a time."""
        out = np.zeros(len(n), dtype=bool)
        chunk = q // self.ref_batch
        keys = n.astype(np.int64) * (self.per_image // self.ref_batch + 1) + chunk
        for key in np.unique(keys):
            sel = np.flatnonzero(keys == key)
            nn_, ch = int(n[sel[0]]), int(chunk[sel[0]])
            pred = self.reference_chunk(nn_, ch).numpy()
            out[sel] = pred[q[sel] - ch * self.ref_batch] != self.reference_clean(nn_)
        self.rechecked += len(n)
        return out

    def clean_classes(self, logits: torch.Tensor, first: int) -> np.ndarray:
        """Argmax of batched clean logits, with near ties settled by the reference."""
        pred = logits.argmax(1)
        _, near = _margins(logits, pred, self.rtol)
        out = pred.numpy().copy()
        for r in np.flatnonzero(near.numpy()):
            out[r] = self.reference_clean(first + int(r))
            self.clean_rechecked += 1
        return out


def _margins(
    logits: torch.Tensor, pred: torch.Tensor, rtol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """m = z[pred] − max over other classes of z, and |m| ≤ rtol·(1 + max|z|)."""
    z = logits.double()
    own = z.gather(1, pred[:, None].long())[:, 0]
    other = z.scatter(1, pred[:, None].long(), float("-inf")).amax(1)
    m = own - other
    near = m.abs() <= rtol * (1.0 + z.abs().amax(1))
    return m, near


class _EvalMode:
    """Eval mode and no autograd for the duration; the module's mode is restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training
        self.grad = torch.no_grad()

    def __enter__(self) -> None:
        self.model.eval()
        self.grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.grad.__exit__(*exc)
        self.model.train(self.was_training)


def _setup(
    model: nn.Module,
    images: np.ndarray,
    mode: str,
    value_range: Sequence[float] | None,
    ref_batch_size: int,
    rtol: float,
) -> _Run:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    if ref_batch_size < 1:
        raise ValueError(f"batch sizes must be >= 1, got {ref_batch_size}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    vr = _value_range(model, value_range)
    return _Run(model, images, resolve_mode(images, vr, mode), vr, ref_batch_size, rtol)


def _range(n: int, start: int, stop: int | None) -> tuple[int, int]:
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise ValueError(f"image range [{start}, {stop}) is not within [0, {n}]")
    return start, stop


def bruteforce_flips(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = REF_BATCH,
    mode: str = "auto",
    value_range: Sequence[float] | None = None,
    stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """The reference: (N, K, H, W) bool, True where the candidate is adversarial.

    ``stats``, when given, receives the clean classes (``clean_pred``)."""
    run = _setup(model, images, mode, value_range, batch_size, RTOL)
    n_img, _, h, w = run.images.shape
    valid = candidate_validity(run.images, run.mode, run.value_range)
    out = np.zeros((n_img, run.per_image), dtype=bool)
    with _EvalMode(model):
        for n in range(n_img):
            clean = run.reference_clean(n)
            for chunk in range(math.ceil(run.per_image / batch_size)):
                pred = run.reference_chunk(n, chunk).numpy()
                out[n, chunk * batch_size : chunk * batch_size + len(pred)] = pred != clean
    if stats is not None:
        stats["clean_pred"] = np.array([run.ref_clean[n] for n in range(n_img)], dtype=np.int64)
    return out.reshape(n_img, run.kinds, h, w) & valid


# --------------------------------------------------------------------------- generic


def generic_flips(
    model: nn.Module,
    images: np.ndarray,
    *,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 256,
    ref_batch_size: int = REF_BATCH,
    mode: str = "auto",
    value_range: Sequence[float] | None = None,
    rtol: float = RTOL,
    stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """Same verdicts as :func:`bruteforce_flips` for images[start:stop], (stop − start, K,
    H, W), with candidate batches (spanning images) built by vectorised indexing.

    Any model works; the cost is the model's forward pass on ``batch_size`` candidates.
    """
    run = _setup(model, images, mode, value_range, ref_batch_size, rtol)
    start, stop = _range(len(run.images), start, stop)
    _, c, h, w = run.images.shape
    per = run.per_image
    count = stop - start
    out = np.zeros(count * per, dtype=bool)
    x_all = torch.from_numpy(run.images)
    clean_all = np.zeros(count, dtype=np.int64)
    with _EvalMode(model):
        # Clean classes and new pixel values for a block of images at a time.
        # (whole batches per block where possible, so no batch is cut short needlessly).
        base = batch_size // math.gcd(per, batch_size)
        block = base * max(1, round((1 << 16) / (per * base)))
        for b0 in range(start, stop, block):
            b1 = min(stop, b0 + block)
            xb = x_all[b0:b1]
            clean = torch.from_numpy(run.clean_classes(model(xb), b0))
            clean_all[b0 - start : b1 - start] = clean.numpy()
            new, _ = candidate_pixels(xb, run.mode, run.value_range)
            total = (b1 - b0) * per
            for f0 in range(0, total, batch_size):
                flat = torch.arange(f0, min(total, f0 + batch_size))
                n, q = flat // per, flat % per
                k, pix = q // (h * w), q % (h * w)
                i, j = pix // w, pix % w
                batch = xb[n]
                batch[torch.arange(len(flat)), :, i, j] = new[n, k, :, i, j]
                logits = model(batch)
                pred = clean[n]
                m, near = _margins(logits, pred, run.rtol)
                verdict = (logits.argmax(1) != pred).numpy()
                idx = np.flatnonzero(near.numpy())
                if len(idx):
                    verdict[idx] = run.recheck(b0 + n.numpy()[idx], q.numpy()[idx])
                out[(b0 - start) * per + f0 : (b0 - start) * per + f0 + len(flat)] = verdict
    if stats is not None:
        stats.update(
            rechecked=run.rechecked, clean_rechecked=run.clean_rechecked, clean_pred=clean_all
        )
    valid = candidate_validity(run.images[start:stop], run.mode, run.value_range)
    return out.reshape(count, run.kinds, h, w) & valid


# --------------------------------------------------------------------------- fast


@dataclass(frozen=True)
class _Spatial:
    """One layer before Flatten: conv (stride 1), pool (no padding), or elementwise."""

    kind: str  # "conv" | "pool" | "relu" | "identity"
    module: nn.Module | None
    k: tuple[int, int] = (1, 1)
    s: tuple[int, int] = (1, 1)
    p: tuple[int, int] = (0, 0)


@dataclass
class FastPlan:
    """A walkable net: normalisation, spatial layers, first Linear, the cheap rest."""

    mean: torch.Tensor | None
    std: torch.Tensor | None
    spatial: list[_Spatial]
    first: nn.Linear
    rest: list[nn.Module]
    shapes: list[tuple[int, int, int]]  # input of each spatial layer, then the output


SUPPORTED = "Conv2d (stride 1), ReLU, MaxPool2d (no padding), Dropout, Flatten, Linear"


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _walk(module: nn.Module) -> Iterator[nn.Module]:
    if type(module) is nn.Sequential or (
        isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
    ):
        for child in module:
            yield from _walk(child)
    elif isinstance(getattr(module, "layers", None), nn.Sequential) and not isinstance(
        module, nn.Sequential
    ):
        yield from _walk(module.get_submodule("layers"))
    else:
        yield module


def _unsupported(idx: int, layer: nn.Module, why: str = "") -> ValueError:
    return ValueError(
        f"fast engine: unsupported layer {idx} ({layer!r}){': ' + why if why else ''}; "
        f"it handles only {SUPPORTED}, as an nn.Sequential (or a module whose "
        f".layers is one); use engine='generic'"
    )


_ELEMENTWISE = (nn.ReLU, nn.modules.dropout._DropoutNd, nn.Identity)
Shape = tuple[int, int, int]


def _conv(idx: int, layer: nn.Conv2d, shape: Shape) -> tuple[_Spatial, Shape]:
    pad = layer.padding
    if isinstance(pad, str):
        if pad == "same" and all(k % 2 == 1 for k in layer.kernel_size):
            pad = tuple(k // 2 for k in layer.kernel_size)
        elif pad == "valid":
            pad = (0, 0)
        else:
            raise _unsupported(idx, layer, "padding 'same' with an even kernel")
    if _pair(layer.stride) != (1, 1) or _pair(layer.dilation) != (1, 1):
        raise _unsupported(idx, layer, "stride and dilation must be 1")
    if layer.groups != 1 or layer.padding_mode != "zeros":
        raise _unsupported(idx, layer, "groups must be 1 and padding zeros")
    k, p = _pair(layer.kernel_size), _pair(pad)
    _, h, w = shape
    out = (layer.out_channels, h + 2 * p[0] - k[0] + 1, w + 2 * p[1] - k[1] + 1)
    return _Spatial("conv", layer, k, (1, 1), p), out


def _pool(idx: int, layer: nn.MaxPool2d, shape: Shape) -> tuple[_Spatial, Shape]:
    if _pair(layer.padding) != (0, 0) or _pair(layer.dilation) != (1, 1):
        raise _unsupported(idx, layer, "padding must be 0 and dilation 1")
    if layer.ceil_mode or layer.return_indices:
        raise _unsupported(idx, layer, "ceil_mode and return_indices are not handled")
    k, s = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)
    c, h, w = shape
    return _Spatial("pool", layer, k, s), (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)


def _spatial_part(
    it: Iterator[tuple[int, nn.Module]], shape: Shape
) -> tuple[list[_Spatial], list[Shape]]:
    """The layers up to Flatten (consumed from ``it``), and each one's input shape."""
    spatial: list[_Spatial] = []
    shapes = [shape]
    for idx, layer in it:
        if isinstance(layer, nn.Conv2d):
            step, shape = _conv(idx, layer, shape)
        elif isinstance(layer, nn.MaxPool2d):
            step, shape = _pool(idx, layer, shape)
        elif isinstance(layer, _ELEMENTWISE):
            step = _Spatial("relu" if isinstance(layer, nn.ReLU) else "identity", layer)
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise _unsupported(idx, layer, "only Flatten(1, -1)")
            return spatial, shapes
        else:
            raise _unsupported(idx, layer)
        if shape[1] < 1 or shape[2] < 1:
            raise ValueError(f"fast engine: layer {idx} ({layer!r}) leaves no pixels")
        spatial.append(step)
        shapes.append(shape)
    raise ValueError(f"fast engine: no Flatten in the net; it handles only {SUPPORTED}")


def _dense_part(
    it: Iterator[tuple[int, nn.Module]], spatial: list[_Spatial], shapes: list[Shape]
) -> tuple[nn.Linear, list[nn.Module]]:
    """The first Linear after Flatten and the cheap rest; elementwise layers between
    Flatten and the first Linear commute with Flatten, so they join ``spatial``."""
    first: nn.Linear | None = None
    rest: list[nn.Module] = []
    for idx, layer in it:
        if first is None and isinstance(layer, _ELEMENTWISE):
            kind = "relu" if isinstance(layer, nn.ReLU) else "identity"
            spatial.append(_Spatial(kind, layer))
            shapes.append(shapes[-1])
        elif first is None and isinstance(layer, nn.Linear):
            first = layer
        elif first is not None and isinstance(layer, (nn.Linear, nn.ReLU)):
            rest.append(layer)
        elif first is not None and isinstance(layer, (nn.modules.dropout._DropoutNd, nn.Identity)):
            continue
        else:
            raise _unsupported(idx, layer)
    if first is None:
        raise ValueError(f"fast engine: no Linear after Flatten; it handles only {SUPPORTED}")
    return first, rest


def plan_fast(model: nn.Module, image_shape: Sequence[int]) -> FastPlan:
    """Check that ``model`` is made only of supported layers; raise ValueError naming the
    first one that is not."""
    mean = std = None
    net = model
    if isinstance(model, ModelWrapper):
        net = model.get_submodule("net")
        if model.normalised:
            mean, std = model.get_buffer("mean")[0], model.get_buffer("std")[0]
    it = iter(enumerate(_walk(net)))
    c, h, w = (int(v) for v in image_shape)
    spatial, shapes = _spatial_part(it, (c, h, w))
    first, rest = _dense_part(it, spatial, shapes)
    c, h, w = shapes[-1]
    if first.in_features != c * h * w:
        raise ValueError(
            f"fast engine: the first Linear takes {first.in_features} features, "
            f"the layers before it give {c}x{h}x{w}"
        )
    return FastPlan(mean, std, spatial, first, rest, shapes)


def fast_supported(model: nn.Module, image_shape: Sequence[int]) -> bool:
    try:
        plan_fast(model, image_shape)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _AxisStep:
    """One layer along one axis for one position: the changed output interval [lo, hi],
    the input interval [need_lo, need_hi] needed to recompute it, and where the changed
    input interval of the previous layer overlaps it (offset in need, offset in prev, length)."""

    lo: int
    hi: int
    need_lo: int
    need_hi: int
    ov_need: int
    ov_prev: int
    ov_len: int


def _axis_geometry(plan: FastPlan, axis: int) -> list[list[_AxisStep] | None]:
    """Per input position along ``axis`` (0 rows, 1 columns): the interval chain, or None
    when the change reaches nothing (a pixel no pooling window sees)."""
    size = plan.shapes[0][1 + axis]
    out: list[list[_AxisStep] | None] = []
    for pos in range(size):
        lo, hi = pos, pos
        chain: list[_AxisStep] | None = []
        for layer, (_, oh, ow) in zip(plan.spatial, plan.shapes[1:], strict=True):
            o = (oh, ow)[axis]
            k, s, p = layer.k[axis], layer.s[axis], layer.p[axis]
            if layer.kind == "conv":
                nlo, nhi = max(0, lo + p - k + 1), min(o - 1, hi + p)
                need = (nlo - p, nhi - p + k - 1)
            elif layer.kind == "pool":
                nlo, nhi = max(0, -((k - 1 - lo) // s)), min(o - 1, hi // s)
                need = (nlo * s, nhi * s + k - 1)
            else:
                nlo, nhi = lo, hi
                need = (lo, hi)
            ov_lo, ov_hi = max(lo, need[0]), min(hi, need[1])
            if nlo > nhi or ov_lo > ov_hi:
                chain = None
                break
            assert chain is not None
            chain.append(
                _AxisStep(
                    nlo, nhi, need[0], need[1], ov_lo - need[0], ov_lo - lo, ov_hi - ov_lo + 1
                )
            )
            lo, hi = nlo, nhi
        out.append(chain)
    return out


def _signature(chain: list[_AxisStep]) -> tuple[tuple[int, ...], ...]:
    """What positions must share to be batched: interval lengths and relative offsets."""
    return tuple(
        (s.hi - s.lo, s.need_hi - s.need_lo, s.ov_need, s.ov_prev, s.ov_len) for s in chain
    )


@dataclass
class _Group:
    """Positions (every row of ``rows`` × every column of ``cols``) of one geometry."""

    row_chain: list[_AxisStep]  # the chain of the first row (lengths, offsets: shared)
    col_chain: list[_AxisStep]
    rows: torch.Tensor  # (R,) input rows
    cols: torch.Tensor  # (C,)
    row_need: list[torch.Tensor]  # per layer, (R,) need_lo of each row
    col_need: list[torch.Tensor]
    row_out: torch.Tensor  # (R,) lo of the last layer's changed interval
    col_out: torch.Tensor


def _groups(plan: FastPlan) -> list[_Group]:
    rows, cols = _axis_geometry(plan, 0), _axis_geometry(plan, 1)

    def classes(chains: list[list[_AxisStep] | None]) -> list[list[int]]:
        out: dict[tuple[Any, ...], list[int]] = {}
        for pos, chain in enumerate(chains):
            if chain is not None:
                out.setdefault(_signature(chain), []).append(pos)
        return list(out.values())

    def need(chains: list[list[_AxisStep]], pad: int, li: int) -> torch.Tensor:
        return torch.tensor([ch[li].need_lo + pad for ch in chains], dtype=torch.long)

    def last(chains: list[list[_AxisStep]], pos: list[int]) -> torch.Tensor:
        if not plan.spatial:
            return torch.tensor(pos, dtype=torch.long)
        return torch.tensor([ch[-1].lo for ch in chains], dtype=torch.long)

    groups = []
    for rpos in classes(rows):
        rch = [rows[r] for r in rpos]
        for cpos in classes(cols):
            cch = [cols[c] for c in cpos]
            groups.append(
                _Group(
                    rch[0] or [],
                    cch[0] or [],
                    torch.tensor(rpos, dtype=torch.long),
                    torch.tensor(cpos, dtype=torch.long),
                    [need(rch, s.p[0], li) for li, s in enumerate(plan.spatial)],  # type: ignore[arg-type]
                    [need(cch, s.p[1], li) for li, s in enumerate(plan.spatial)],  # type: ignore[arg-type]
                    last(rch, rpos),  # type: ignore[arg-type]
                    last(cch, cpos),  # type: ignore[arg-type]
                )
            )
    return groups


class _FastEngine:
    """Activations are kept channels-last, flattened to (n, H·W, C), so that every window
    of every position is one ``index_select`` (strided advanced indexing was 5x slower)."""

    def __init__(self, plan: FastPlan, run: _Run, max_batch: int) -> None:
        self.plan, self.run, self.max_batch = plan, run, max_batch
        self.groups = _groups(plan)
        rows, cols = _axis_geometry(plan, 0), _axis_geometry(plan, 1)
        # Positions whose flip reaches nothing (no pooling window sees them).
        self.dead = np.array(
            [
                (r, c)
                for r in range(len(rows))
                for c in range(len(cols))
                if not (rows[r] and cols[c])
            ],
            dtype=np.int64,
        ).reshape(-1, 2)
        c, hl, wl = plan.shapes[-1]
        w4 = plan.first.weight.detach().reshape(-1, c, hl, wl)
        # (HL·WL, C, H1): the first Linear's columns, position-major.
        self.w_sp = w4.permute(2, 3, 1, 0).reshape(hl * wl, c, -1).contiguous()
        self.widths = [
            shape[2] + 2 * layer.p[1]
            for layer, shape in zip(plan.spatial, plan.shapes, strict=False)
        ] + [wl]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.plan.mean is None or self.plan.std is None:
            return x
        return (x - self.plan.mean.view(1, -1, 1, 1)) / self.plan.std.view(1, -1, 1, 1)

    @staticmethod
    def _flat(a: torch.Tensor) -> torch.Tensor:
        n, c, h, w = a.shape
        return a.permute(0, 2, 3, 1).reshape(n, h * w, c).contiguous()

    def clean(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Inputs of every spatial layer (conv inputs zero-padded) and the last output, as
        (n, H·W, C); the first Linear's pre-activation; the logits."""
        acts = []
        a = self._normalise(x)
        for layer in self.plan.spatial:
            if layer.kind == "conv":
                ph, pw = layer.p
                acts.append(self._flat(F.pad(a, (pw, pw, ph, ph))))
            else:
                acts.append(self._flat(a) if layer.kind == "pool" else a[:0])
            if layer.kind != "identity":
                assert layer.module is not None
                a = layer.module(a)
        acts.append(self._flat(a))
        z1 = self.plan.first(a.flatten(1))
        return acts, z1, self._head(z1)

    def _head(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.plan.rest:
            z = layer(z)
        return z

    def evaluate(
        self, x: torch.Tensor, first: int, out: np.ndarray, model_logits: torch.Tensor
    ) -> np.ndarray:
        """Fill out[n, k, i, j] for the images x (images[first:first + n]); return their
        clean classes."""
        run = self.run
        n_img, c0, height, width = x.shape
        kinds = run.kinds
        acts, z1, logits = self.clean(x)
        scale = 1.0 + model_logits.abs().amax(1)
        if not ((logits - model_logits).abs().amax(1) <= run.rtol * scale).all():
            raise ValueError(
                "fast engine: walking the layers does not reproduce the model's output "
                "(is forward() something other than running .layers in order?); "
                "use engine='generic'"
            )
        clean = torch.from_numpy(run.clean_classes(model_logits, first))
        new, _ = candidate_pixels(x, run.mode, run.value_range)
        new = self._normalise(new.reshape(n_img * kinds, c0, height, width)).reshape(new.shape)
        per_piece = max(1, self.max_batch // (kinds * n_img))
        for g in self.groups:
            ri, ci = torch.meshgrid(
                torch.arange(len(g.rows)), torch.arange(len(g.cols)), indexing="ij"
            )
            ri, ci = ri.reshape(-1), ci.reshape(-1)
            for p0 in range(0, len(ri), per_piece):
                sl = slice(p0, p0 + per_piece)
                self._piece(g, ri[sl], ci[sl], first, acts, z1, clean, new, out)
        # A flip that reaches nothing leaves the logits as they are, so it is adversarial
        # only in float noise: the reference computes the unchanged image inside a batch
        # and its clean class alone. Images on a near tie get those candidates rechecked.
        _, near = _margins(model_logits, clean, run.rtol)
        for n in np.flatnonzero(near.numpy()) if len(self.dead) else []:
            k = np.repeat(np.arange(kinds), len(self.dead))
            r, c = np.tile(self.dead[:, 0], kinds), np.tile(self.dead[:, 1], kinds)
            q = k * height * width + r * width + c
            out[n, k, r, c] = run.recheck(np.full(len(q), first + n), q)
        return clean.numpy()

    def _windows(
        self, act: torch.Tensor, width: int, r0: torch.Tensor, c0: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        """(n, P·h·w, C): the h×w window at (r0[p], c0[p]) of act (n, H·W, C), per p."""
        rr = (r0[:, None] + torch.arange(h)[None, :]) * width  # (P, h)
        cc = c0[:, None] + torch.arange(w)[None, :]  # (P, w)
        return act.index_select(1, (rr[:, :, None] + cc[:, None, :]).reshape(-1))

    def _piece(
        self,
        g: _Group,
        ri: torch.Tensor,
        ci: torch.Tensor,
        first: int,
        acts: list[torch.Tensor],
        z1: torch.Tensor,
        clean: torch.Tensor,
        new: torch.Tensor,
        out: np.ndarray,
    ) -> None:
        """Candidates of positions (rows[ri], cols[ci]) of group g, for every image and
        kind; the batch is ordered (image, position, kind), patches are channels-last."""
        run, plan = self.run, self.plan
        n_img, kinds, _, height, width = new.shape
        n_pos = len(ri)
        batch = n_img * n_pos * kinds
        rows, cols = g.rows[ri], g.cols[ci]
        # The changed input pixel: (n, K, C, P) -> (B, 1, 1, C).
        cur = new[:, :, :, rows, cols].permute(0, 3, 1, 2).reshape(batch, 1, 1, -1)
        rch, cch = g.row_chain, g.col_chain
        for li, layer in enumerate(plan.spatial):
            if layer.kind == "relu":
                cur = torch.relu(cur)
                continue
            if layer.kind == "identity":
                continue
            rs, cs = rch[li], cch[li]
            hn, wn = rs.need_hi - rs.need_lo + 1, cs.need_hi - cs.need_lo + 1
            patch = self._windows(
                acts[li], self.widths[li], g.row_need[li][ri], g.col_need[li][ci], hn, wn
            )
            ch = patch.shape[-1]
            if kinds > 1:
                patch = patch.view(n_img, n_pos, 1, hn, wn, ch).expand(-1, -1, kinds, -1, -1, -1)
            patch = patch.reshape(batch, hn, wn, ch)
            patch[:, rs.ov_need : rs.ov_need + rs.ov_len, cs.ov_need : cs.ov_need + cs.ov_len] = (
                cur[:, rs.ov_prev : rs.ov_prev + rs.ov_len, cs.ov_prev : cs.ov_prev + cs.ov_len]
            )
            nchw = patch.permute(0, 3, 1, 2)
            if layer.kind == "conv":
                assert isinstance(layer.module, nn.Conv2d)
                res = F.conv2d(nchw, layer.module.weight, layer.module.bias)
            else:
                res = F.max_pool2d(nchw, layer.k, layer.s)
            cur = res.permute(0, 2, 3, 1)
        # Delta of the features, then of the first Linear's pre-activation.
        last = len(plan.spatial)
        hr = rch[-1].hi - rch[-1].lo + 1 if last else 1
        wr = cch[-1].hi - cch[-1].lo + 1 if last else 1
        r0, c0 = g.row_out[ri], g.col_out[ci]
        base = self._windows(acts[last], self.widths[last], r0, c0, hr, wr)
        delta = cur.reshape(n_img, n_pos, kinds, -1) - base.view(n_img, n_pos, 1, -1)
        delta = delta.permute(1, 0, 2, 3).reshape(n_pos, n_img * kinds, -1)
        # The first Linear's columns for those features, in the same (h, w, C) order.
        wg = self._windows(self.w_sp.unsqueeze(0), self.widths[last], r0, c0, hr, wr)
        wg = wg.view(n_pos, delta.shape[2], -1)  # wg was (1, P·hr·wr, C, H1)
        dz = torch.bmm(delta, wg).view(n_pos, n_img, kinds, -1).permute(1, 0, 2, 3)
        logits = self._head(z1[:, None, None, :] + dz).reshape(batch, -1)
        pred = clean.repeat_interleave(n_pos * kinds)
        _, near = _margins(logits, pred, run.rtol)
        verdict = (logits.argmax(1) != pred).numpy().reshape(n_img, n_pos, kinds)
        n_idx, pos_idx, k_idx = np.nonzero(near.numpy().reshape(n_img, n_pos, kinds))
        rows_np, cols_np = rows.numpy(), cols.numpy()
        if len(n_idx):
            q = k_idx * height * width + rows_np[pos_idx] * width + cols_np[pos_idx]
            verdict[n_idx, pos_idx, k_idx] = run.recheck(first + n_idx, q)
        out[:, :, rows_np, cols_np] = verdict.transpose(0, 2, 1)


def fast_flips(
    model: nn.Module,
    images: np.ndarray,
    *,
    start: int = 0,
    stop: int | None = None,
    image_batch: int = 64,
    max_batch: int = 8192,
    ref_batch_size: int = REF_BATCH,
    mode: str = "auto",
    value_range: Sequence[float] | None = None,
    rtol: float = RTOL,
    stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """Same verdicts as :func:`bruteforce_flips` for images[start:stop], computed
    incrementally: clean activations once per image, then per candidate only the
    receptive field of the flipped pixel through the conv/pool layers, and the first
    Linear's pre-activation updated by W[:, changed]·Δfeatures.

    Positions whose receptive-field geometry is the same (interior positions of equal
    phase under the pooling strides, and each border case) are batched together with
    ``image_batch`` images, at most ``max_batch`` candidates per batch.
    """
    run = _setup(model, images, mode, value_range, ref_batch_size, rtol)
    start, stop = _range(len(run.images), start, stop)
    plan = plan_fast(model, run.images.shape[1:])
    _, _, h, w = run.images.shape
    out = np.zeros((stop - start, run.kinds, h, w), dtype=bool)
    x_all = torch.from_numpy(run.images)
    clean_all = np.zeros(stop - start, dtype=np.int64)
    with _EvalMode(model):
        engine = _FastEngine(plan, run, max_batch)
        for b0 in range(start, stop, image_batch):
            b1 = min(stop, b0 + image_batch)
            xb = x_all[b0:b1]
            block = np.zeros((b1 - b0, run.kinds, h, w), dtype=bool)
            clean_all[b0 - start : b1 - start] = engine.evaluate(xb, b0, block, model(xb))
            out[b0 - start : b1 - start] = block
    if stats is not None:
        stats.update(
            rechecked=run.rechecked, clean_rechecked=run.clean_rechecked, clean_pred=clean_all
        )
    return out & candidate_validity(run.images[start:stop], run.mode, run.value_range)


# --------------------------------------------------------------------------- results


@dataclass
class FlipResult:
    """Verdicts of every candidate and the summaries the paper reports."""

    adversarial: np.ndarray  # (N, K, H, W) bool
    valid: np.ndarray  # (N, K, H, W) bool: real candidates
    clean_pred: np.ndarray  # (N,) int64
    engine: str
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        return int(self.valid.sum())

    @property
    def n_adversarial(self) -> int:
        return int(self.adversarial.sum())

    def share(self) -> float:
        """Adversarial candidates / candidates (the paper's ADV_cnt / (N·D²))."""
        return self.n_adversarial / max(1, self.n_candidates)

    def image_success(self) -> np.ndarray:
        """(N,) bool: the image has at least one adversarial one-pixel candidate."""
        return np.asarray(self.adversarial.reshape(len(self.adversarial), -1).any(1), dtype=bool)

    def success_rate(self) -> float:
        return float(self.image_success().mean()) if len(self.adversarial) else 0.0

    def share_by_angle(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per distinct angle: (angles, adversarial / candidates of its images, image counts).

        For binary flips the denominator is n_images_at_angle · D², as in the paper."""
        angles = np.round(np.asarray(angles, dtype=np.float64), 9)
        if angles.shape != (len(self.adversarial),):
            raise ValueError(f"need one angle per image, got shape {angles.shape}")
        distinct, inverse, counts = np.unique(angles, return_inverse=True, return_counts=True)
        adv = np.bincount(inverse, self.adversarial.reshape(len(angles), -1).sum(1), len(distinct))
        cand = np.bincount(inverse, self.valid.reshape(len(angles), -1).sum(1), len(distinct))
        return distinct, adv / np.maximum(cand, 1), counts

    def heatmap(self) -> np.ndarray:
        """(H, W): share of images for which some candidate at (i, j) is adversarial."""
        if not len(self.adversarial):
            return np.zeros(self.adversarial.shape[2:])
        return np.asarray(self.adversarial.any(1).mean(0), dtype=np.float64)

    def successful_flips(self) -> list[np.ndarray]:
        """Per image, its adversarial candidates: (M, 2) rows (i, j) for binary flips,
        (M, 3) rows (k, i, j) for corners."""
        if self.adversarial.shape[1] == 1:
            return [np.argwhere(a[0]) for a in self.adversarial]
        return [np.argwhere(a) for a in self.adversarial]


ENGINES = ("auto", "fast", "generic", "bruteforce")


def exhaustive_flips(
    model: nn.Module,
    images: np.ndarray,
    engine: str = "auto",
    *,
    mode: str = "auto",
    value_range: Sequence[float] | None = None,
    **options: Any,
) -> FlipResult:
    """Every one-pixel candidate of every image; ``engine='auto'`` takes the fast engine
    when the net is walkable, else the generic one."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    stats: dict[str, Any] = {}
    kw: dict[str, Any] = {"mode": mode, "value_range": value_range, "stats": stats, **options}
    t0 = time.perf_counter()
    chosen = engine
    if engine == "auto":
        chosen = "fast" if fast_supported(model, images.shape[1:]) else "generic"
    if chosen == "fast":
        try:
            adv = fast_flips(model, images, **kw)
        except ValueError as exc:
            if engine != "auto":
                raise
            # The layers walk but do not reproduce forward(): count it honestly, go generic.
            stats["fast_refused"] = str(exc)
            chosen = "generic"
    if chosen == "generic":
        adv = generic_flips(model, images, **kw)
    elif chosen == "bruteforce":
        adv = bruteforce_flips(model, images, **kw)
    seconds = time.perf_counter() - t0
    vr = _value_range(model, value_range)
    valid = candidate_validity(images, resolve_mode(images, vr, mode), vr)
    clean = stats.pop("clean_pred")
    return FlipResult(adv, valid, clean, chosen, seconds, stats)


#: Su et al.'s one-pixel attack: a differential-evolution population of 400 candidates, up
#: to 100 generations. ``one_pixel`` with ``popsize: 400, steps: 100`` gives it on
#: torchattacks (whose ``popsize`` is the population, divided among the parameters); ART's
#: PixelAttack always sizes its population near 400 itself.
PAPER_DE = {"population": 400, "steps": 100}


def de_budget(backend: str, pixels: int, channels: int, steps: int, popsize: int) -> dict[str, Any]:
    """The differential-evolution budget a one-pixel attack really runs with, per image:
    population × (steps + 1) generations (scipy-style DE evaluates the initial population,
    then one population per step; it may stop early on success)."""
    dims = pixels * (2 + channels)  # row, column and a value per channel, per pixel
    multiplier = max(1, 400 // dims) if backend == "art" else max(1, int(popsize / dims))
    population = max(5, multiplier * dims)
    return {
        "population": population,
        "steps": steps,
        "evaluations": population * (steps + 1),
        "paper": PAPER_DE,
        "text": f"DE population {population} × {steps + 1} generations = "
        f"{population * (steps + 1):,} evaluations per image at most "
        f"(Su et al.: population {PAPER_DE['population']}, up to {PAPER_DE['steps']} steps)",
    }


def unseen_cells(size: int) -> dict[str, list[int]]:
    """Rows and columns of a D×D input that no window of the paper's CNN sees (two unpadded
    3×3 convolutions, each followed by 2×2 max pooling with floor): a flip there cannot
    change the prediction, so the heat maps are 0 there whatever the data."""
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    k = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    y = torch.nn.functional.avg_pool2d(torch.nn.functional.conv2d(x, k), 2)
    y = torch.nn.functional.avg_pool2d(torch.nn.functional.conv2d(y, k), 2)
    (g,) = torch.autograd.grad(y.sum(), x)
    seen = g[0, 0].numpy() != 0
    return {
        "rows": [int(i) for i in np.flatnonzero(~seen.any(axis=1))],
        "cols": [int(j) for j in np.flatnonzero(~seen.any(axis=0))],
    }


def boundary_x(lines: Any) -> np.ndarray:
    """The paper's "X": the pixels of the longest lines at the decision boundary's angles
    (0° and 40°), (D, D) bool."""
    mask = np.zeros(lines.images.shape[-2:], dtype=bool)
    for angle in (0.0, 40.0):
        sel = np.flatnonzero(np.isclose(lines.angle, angle))
        if len(sel):
            imgs = lines.images[sel, 0]
            mask |= imgs[int(imgs.sum(axis=(1, 2)).argmax())] > 0
    return mask


def away_from_x(heat: np.ndarray, lines: Any, top: int = 10) -> dict[str, Any]:
    """Kügler et al.'s Figure 5 finding: the highest flip likelihoods lie away from the "X"
    (the boundary lines' pixels), not on it. Holds when fewer than half of the ``top`` most
    likely cells lie on the X and the mean likelihood off the X is at least that on it
    (cells no window sees are left out of both means)."""
    on = boundary_x(lines)
    unseen = unseen_cells(heat.shape[-1])
    seen = np.ones_like(on)
    seen[unseen["rows"], :] = False
    seen[:, unseen["cols"]] = False
    order = np.argsort(-heat, axis=None, kind="stable")[:top]
    top_on = float(on.ravel()[order].mean())
    on_mean = float(heat[on & seen].mean()) if (on & seen).any() else 0.0
    off_mean = float(heat[~on & seen].mean()) if (~on & seen).any() else 0.0
    return {
        "x_cells": int(on.sum()),
        "mean_on_x": on_mean,
        "mean_off_x": off_mean,
        "top_cells": top,
        "top_share_on_x": top_on,
        "holds": bool(top_on < 0.5 and off_mean >= on_mean),
    }
