"""Model sources and the one wrapper every backend calls.

Input range and mean/std normalisation live inside :class:`ModelWrapper`, so
ART, Foolbox and torchattacks all attack the same function of the same inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import stat
import sys
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from unified_adv.errors import InputError
from unified_adv.files import cache_dir  # noqa: F401 - re-exported: its old home

if TYPE_CHECKING:
    from unified_adv.scenario.schema import ModelSpec, Scenario


#: Scoring (clean and adversarial logits, from which unified-adv decides success) runs in
#: fixed-shape forward passes on a fixed thread count. CPU kernels (MKL GEMM, oneDNN
#: convolutions) pick their blocking and reduction order from the batch shape and the thread
#: count, so the same image scored in a batch of 10 or of 120, or on 1 or 2 threads, gave
#: logits differing in the 7th-8th significant digit (measured on the digits CNN: up to 2.6e-8).
#: Both fixed, a sample's logits are bit-identical in any process on the same CPU kind; across
#: CPU kinds (another instruction set) they may still differ in the last bits. One thread is
#: also the fastest for these small passes on a shared 2-core machine (7 ms vs 128 ms per
#: pass of 64 digits while other processes held the cores). Recorded in the provenance.
SCORE_BATCH = 64
SCORE_THREADS = 1


class ModelWrapper(nn.Module):
    """A classifier over inputs in ``input_range``; returns logits.

    Casts any floating input to float32 first: ART's black-box attacks hand
    float64 arrays to the model under numpy 2's promotion rules.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        input_range: Sequence[float] = (0.0, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str = "cpu",
        pre: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        #: A defence in front of the classifier, working on inputs in ``input_range``
        #: (before normalisation): every backend attacks the defended function.
        self.pre = pre
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.normalised = mean is not None
        m = torch.tensor(mean if mean is not None else [0.0], dtype=torch.float32)
        s = torch.tensor(std if std is not None else [1.0], dtype=torch.float32)
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))
        self.device = torch.device(device)
        self.to(self.device)
        self.eval()
        for p in self.parameters():
            # Attacks need input gradients only; parameter gradients waste time and memory.
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            x = x.float()
        if self.pre is not None:
            x = self.pre(x)
        if self.normalised:
            mean, std = self.get_buffer("mean"), self.get_buffer("std")
            x = (x - mean) / std
        return self.net(x)

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Forward passes on a numpy array, returned as float32 numpy: unified-adv's scoring.

        Always ``batch_size`` rows per pass (the last batch padded with zeros) on
        ``SCORE_THREADS`` torch threads, so a sample's logits depend on neither the other
        samples scored with it nor the process's thread count (see :data:`SCORE_BATCH`).
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(SCORE_THREADS)
        try:
            out = [self._padded_pass(x[s : s + batch_size], batch_size) for s in range(0, len(x), batch_size)]
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _padded_pass(self, chunk: np.ndarray, size: int) -> np.ndarray:
        n = len(chunk)
        xb = np.zeros((size, *chunk.shape[1:]), dtype=chunk.dtype)
        xb[:n] = chunk
        return self(torch.from_numpy(xb).to(self.device)).float().cpu().numpy()[:n]


@dataclass
class LoadedModel:
    wrapper: ModelWrapper
    description: str
    fingerprint: str
    details: dict[str, Any]


# --------------------------------------------------------------------------- builtin


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits: two 3x3 conv layers, one pooling, two dense layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsMLP(nn.Module):
    """A dense net for 8x8 digits (64-128-64-10): no convolutions, so transfer to and from
    the CNNs crosses an inductive-bias gap."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * 8, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


class WideDigitsCNN(nn.Module):
    """A wider CNN for 8x8 digits (32 and 64 channels, pooling after each conv, dense 128):
    same family as :class:`DigitsCNN`, different weights and receptive fields."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitsArch:
    """How one builtin digits net is built and trained (``make weights`` retrains it).

    ``threads``: torch CPU threads while training. One thread makes retraining repeat the
    same weights on a machine of the same CPU kind (reductions split differently per thread
    count) and is fastest for these tiny batches, far more so on a busy machine.
    """

    name: str
    make: Callable[[], nn.Module]
    lr: float = 2e-3
    epochs: int = 40
    threads: int = 1


#: Every builtin digits net, by its scenario name (``model: {builtin: NAME}``).
DIGITS_ARCHS: dict[str, DigitsArch] = {
    a.name: a
    for a in (
        DigitsArch("digits-cnn", DigitsCNN),
        DigitsArch("digits-mlp", DigitsMLP),
        DigitsArch("digits-cnn-wide", WideDigitsCNN),
    )
}


def _digits_arch(name: str) -> DigitsArch:
    arch = DIGITS_ARCHS.get(name)
    if arch is None:
        from unified_adv.errors import did_you_mean

        raise ValueError(did_you_mean("builtin digits model", name, DIGITS_ARCHS))
    return arch


DIGITS_CHECKPOINTS = (1, 2, 3, 5, 10, 20, 40)

Checkpoints = dict[int, tuple[dict[str, torch.Tensor], float]]


def train_digits_net(
    arch: str = "digits-cnn",
    seed: int = 0,
    epochs: int | None = None,
    checkpoints: tuple[int, ...] = DIGITS_CHECKPOINTS,
) -> tuple[nn.Module, float, Checkpoints]:
    """Train one builtin digits net on the digits training split (Adam, batches of 64).

    ``epochs``: the architecture's own number when None. Returns the net, its held-out
    accuracy, and {epoch: (state dict, held-out accuracy)} for the checkpoint epochs: the
    training-state monitor's demo (Ding & Möller).
    """
    spec = _digits_arch(arch)
    if epochs is None:
        epochs = spec.epochs
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return _train(spec, seed, epochs, checkpoints)
    finally:
        torch.set_num_threads(threads)


def _train(
    spec: DigitsArch, seed: int, epochs: int, checkpoints: tuple[int, ...]
) -> tuple[nn.Module, float, Checkpoints]:
    from unified_adv.sources.data import digits_split

    x_train, y_train, x_test, y_test, _, _ = digits_split()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = spec.make()
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_held = torch.from_numpy(x_test)

    def held_out_accuracy() -> float:
        with torch.no_grad():
            return float((net(x_held).argmax(1).numpy() == y_test).mean())

    saved: Checkpoints = {}
    net.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if epoch in checkpoints:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            saved[epoch] = (state, held_out_accuracy())
    net.eval()
    return net, held_out_accuracy(), saved


def train_digits_cnn(
    seed: int = 0, epochs: int = 40, checkpoints: tuple[int, ...] = DIGITS_CHECKPOINTS
) -> tuple[DigitsCNN, float, Checkpoints]:
    """:func:`train_digits_net` for the default architecture (kept for existing callers)."""
    net, acc, saved = train_digits_net("digits-cnn", seed, epochs, checkpoints)
    assert isinstance(net, DigitsCNN)
    return net, acc, saved


def digits_weights_name(name: str, epoch: int | None = None) -> str:
    """A digits net's name among the shipped weights: ``digits-cnn``, ``digits-cnn-epoch5``.
    The last checkpoint is the net itself."""
    spec = _digits_arch(name)
    return spec.name if epoch in (None, spec.epochs) else f"{spec.name}-epoch{epoch}"


def builtin_digits(name: str, epoch: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The builtin digits net ``name`` (or its state after ``epoch`` epochs of training),
    from the weights shipped in the package (SHA-256 checked on load)."""
    from unified_adv.sources import builtin

    spec = _digits_arch(name)
    key = digits_weights_name(spec.name, epoch)
    if not builtin.shipped(key):
        have = [e for e in DIGITS_CHECKPOINTS if builtin.shipped(digits_weights_name(name, e))]
        raise KeyError(f"no {spec.name} checkpoint at epoch {epoch}; have {have}")
    state, entry = builtin.load_state(key)
    net = spec.make()
    net.load_state_dict(state)
    net.eval()
    details = {
        "held_out_accuracy": float(entry["held_out_accuracy"]),
        "weights": entry["path"],
        "sha256": entry["sha256"],
        "architecture": type(net).__name__,
    }
    if epoch is not None:
        details["epoch"] = epoch
    return net, details


def builtin_digits_cnn(epoch: int | None = None) -> tuple[DigitsCNN, dict[str, Any]]:
    """The embedded default model (or its state after ``epoch`` epochs of training)."""
    net, details = builtin_digits("digits-cnn", epoch)
    assert isinstance(net, DigitsCNN)
    return net, details


# --------------------------------------------------------------------------- loading


def _state_fingerprint(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _forget_user_module(module_name: str, base_dir: Path) -> None:
    """A module of the scenario's folder is imported afresh: this process may hold another
    folder's module of the same name, or this one from before an edit."""
    top = module_name.split(".")[0]
    if not ((base_dir / f"{top}.py").is_file() or (base_dir / top / "__init__.py").is_file()):
        return  # an installed module: the import system's cache is right
    for name in [m for m in sys.modules if m == top or m.startswith(f"{top}.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _import_factory(spec: str, base_dir: Path, file: str, field: str = "model.factory") -> Any:
    module_name, attr = spec.split(":")
    _forget_user_module(module_name, base_dir)
    sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError.one(
            file, field, f"cannot import '{module_name}': {error_gist(exc)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised (or does not parse)
        raise InputError.one(
            file,
            field,
            f"importing '{module_name}' raised {type(exc).__name__}: {error_gist(exc)}",
        ) from None
    finally:
        sys.path.remove(str(base_dir))
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise InputError.one(file, field, f"'{module_name}' has no callable '{attr}'")
    return fn


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return False
    return True


def code_fingerprint(module_name: str, base_dir: Path, net: nn.Module | None = None) -> str:
    """sha256 of the source a user's model runs: the factory module's file, every module it
    imports (statically, at any depth) from the scenario's folder, and the files that define
    the classes of ``net``'s layers when those lie in the scenario's folder. Deterministic:
    it reads files, not what this process happened to import before."""
    from modulefinder import ModuleFinder

    files: set[Path] = set()
    module = sys.modules.get(module_name)
    own = getattr(module, "__file__", None)
    if own:
        files.add(Path(own).resolve())
    if own and _under(Path(own), base_dir):
        finder = ModuleFinder(path=[str(base_dir)])
        # A module it cannot follow: hash what it found.
        with contextlib.suppress(Exception):
            finder.import_hook(module_name)
        for found in finder.modules.values():
            found_file = getattr(found, "__file__", None)
            if found_file and _under(Path(found_file), base_dir):
                files.add(Path(found_file).resolve())
    for layer in net.modules() if net is not None else ():
        for cls in type(layer).__mro__:
            path = getattr(sys.modules.get(cls.__module__), "__file__", None)
            if path and _under(Path(path), base_dir):
                files.add(Path(path).resolve())
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def check_file(path: Path, file: str, field: str) -> Path:
    """``path`` must be a regular file this process can read; else one clear line.

    Tells apart a missing file, a broken symbolic link, a folder, something that is not a
    regular file (a device, a FIFO: never opened) and a file that cannot be read (no
    permission, a symbolic-link loop).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError.one(
                file, field, f"broken symbolic link: {path} points to {os.readlink(path)}"
            ) from None
        raise InputError.one(file, field, f"file not found: {path}") from None
    except OSError as exc:
        raise InputError.one(file, field, f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError.one(file, field, f"is a folder, expected a file: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError.one(file, field, f"not a regular file: {path}")
    if st.st_size == 0:
        raise InputError.one(file, field, f"is empty (0 bytes): {path}")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError.one(file, field, f"cannot read {path}: {exc.strerror}") from None
    return path


def error_gist(exc: BaseException, limit: int = 200) -> str:
    """The gist of a library's exception on one line: its first sentence, or for an error
    raised inside TorchScript the error itself (not the interpreter's traceback)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0]
    if "TorchScript interpreter" in line:
        raised = [m.group(1) for m in map(_RAISED.match, lines) if m]
        line = raised[-1] if raised else line
    head = re.split(r"(?<=[a-z)])\. ", line, maxsplit=1)[0].rstrip(".")
    return head if len(head) <= limit else head[: limit - 1] + "…"


_RAISED = re.compile(r"^[A-Za-z_.]*(?:Error|Exception): (.+)$")
_UNSAFE_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def _is_torch_save_archive(raw: bytes) -> bool:
    """A ``torch.save`` zip archive (a pickle inside), as opposed to a TorchScript one."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = [n.split("/", 1)[-1] for n in z.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return "data.pkl" in names and "constants.pkl" not in names


def _load_weights(net: nn.Module, path: Path, file: str, field: str = "model.weights") -> None:
    check_file(path, file, field)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        if "Weights only load failed" in str(exc):
            # The pickle names more than tensors and containers: unpickling it runs code.
            unsafe = _UNSAFE_GLOBAL.search(str(exc))
            names = f" (it names {unsafe.group(1)})" if unsafe else ""
            raise InputError.one(
                file,
                field,
                f"is a pickled full model or object{names}, not a state dict: loading it "
                "would execute code from the file; save model.state_dict() instead, or load "
                "the whole model with pickle: FILE and trust_model: true",
            ) from None
        if "TorchScript archive" in str(exc):
            raise InputError.one(
                file,
                field,
                "is a TorchScript file, not a state dict: give it as torchscript: FILE "
                "instead of factory + weights",
            ) from None
        first = error_gist(exc)
        raise InputError.one(file, field, f"not a loadable state dict ({first})") from None
    if isinstance(blob, dict) and "state_dict" in blob and isinstance(blob["state_dict"], dict):
        blob = blob["state_dict"]
    if not (isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values())):
        raise InputError.one(
            file, field, f"not a state dict of tensors (got {type(blob).__name__})"
        )
    try:
        net.load_state_dict(blob)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines if line.strip())
        if len(detail) > 300:
            detail = detail[:299] + "…"
        raise InputError.one(file, field, f"does not fit the model: {detail}") from None


def _load_torchscript(path: Path, file: str, field: str) -> tuple[nn.Module, str]:
    """A TorchScript archive, read once (the fingerprint is of the bytes that were loaded)."""
    raw = check_file(path, file, field).read_bytes()
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 warns that torch.jit is deprecated: not the user's problem.
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(io.BytesIO(raw), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        if _is_torch_save_archive(raw):
            raise InputError.one(
                file,
                field,
                "is a torch.save file, not TorchScript (save with "
                "torch.jit.script(model).save(FILE)); a state dict goes under factory + "
                "weights, a pickled full model under pickle with trust_model: true",
            ) from None
        raise InputError.one(file, field, f"not a TorchScript file ({error_gist(exc)})") from None
    return net, hashlib.sha256(raw).hexdigest()


def _load_trusted_pickle(
    spec: ModelSpec, path: Path, base_dir: Path, file: str, field: str
) -> tuple[nn.Module, str]:
    """A whole pickled ``nn.Module``: ``torch.load(weights_only=False)``, which runs code
    named in the file. Only ever with ``trust_model: true`` (the schema refuses it
    otherwise; checked again here). The scenario's folder is importable while unpickling,
    as for a factory, so classes defined next to the scenario resolve."""
    if not spec.trust_model:
        raise InputError.one(file, field, "a pickled model is loaded only with trust_model: true")
    raw = check_file(path, file, field).read_bytes()
    sys.path.insert(0, str(base_dir))
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything
        raise InputError.one(
            file,
            field,
            f"cannot be unpickled ({type(exc).__name__}: {error_gist(exc)})",
        ) from None
    finally:
        sys.path.remove(str(base_dir))
    if not isinstance(obj, nn.Module):
        kind = type(obj).__name__
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise InputError.one(
                file,
                field,
                "holds a state dict, not a pickled model: give it as weights: FILE with "
                "a factory that builds the network (no trust needed)",
            )
        raise InputError.one(file, field, f"holds a {kind}, expected a pickled torch.nn.Module")
    return obj, hashlib.sha256(raw).hexdigest()


def load_model(scenario: Scenario, checkpoint: int | str | None = None) -> LoadedModel:
    """Build the wrapped model named by the scenario (no user code runs unless named).

    ``checkpoint``: one of ``model.checkpoints`` instead of the model itself.
    """
    return load_model_spec(scenario.model, scenario, checkpoint=checkpoint)


def load_model_spec(
    spec: ModelSpec,
    scenario: Scenario,
    *,
    where: str = "model",
    checkpoint: int | str | None = None,
) -> LoadedModel:
    """Build one model description of the scenario; ``where`` is its field path for errors
    (``model``, or ``analyses[2].models[1]`` for the transfer analysis's models)."""
    file = scenario.file
    details: dict[str, Any] = {}
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError.one(
            file, f"{where}.device", f"'{spec.device}' requested but CUDA is not available"
        )
    field = f"{where}.checkpoints" if checkpoint is not None else None
    if spec.builtin == "line-cnn":
        from unified_adv.sources.lines import builtin_line_cnn

        data = scenario.data
        assert data.size is not None and data.angle_step is not None  # checked by the schema
        line_net, details = builtin_line_cnn(data.size, data.angle_step, spec.seed or 0)
        net = line_net
        fingerprint = _state_fingerprint(net)
    elif spec.builtin:
        net, details = builtin_digits(
            spec.builtin, checkpoint if isinstance(checkpoint, int) else None
        )
        fingerprint = _state_fingerprint(net)
    elif spec.torchscript:
        path = scenario.resolve_path(
            str(checkpoint) if checkpoint is not None else spec.torchscript
        )
        net, fingerprint = _load_torchscript(path, file, field or f"{where}.torchscript")
    elif spec.pickle:
        path = scenario.resolve_path(str(checkpoint) if checkpoint is not None else spec.pickle)
        net, fingerprint = _load_trusted_pickle(
            spec, path, scenario.resolve_path("."), file, field or f"{where}.pickle"
        )
        code = code_fingerprint("", scenario.resolve_path("."), net)
        fingerprint = hashlib.sha256(f"{fingerprint}:{code}".encode()).hexdigest()
        details = {"code_from": str(path.resolve()), "code_sha256": code}
    else:
        assert spec.factory is not None  # guaranteed by the schema
        fn = _import_factory(spec.factory, scenario.resolve_path("."), file, f"{where}.factory")
        try:
            net = fn()
        except Exception as exc:  # noqa: BLE001 - user code
            raise InputError.one(
                file,
                f"{where}.factory",
                f"{spec.factory}() raised {type(exc).__name__}: {error_gist(exc)}",
            ) from None
        if not isinstance(net, nn.Module):
            raise InputError.one(
                file,
                f"{where}.factory",
                f"{spec.factory}() returned {type(net).__name__}, expected a torch.nn.Module",
            )
        weights = str(checkpoint) if checkpoint is not None else spec.weights
        if weights:
            _load_weights(net, scenario.resolve_path(weights), file, field or f"{where}.weights")
        # Weights and code: a fixed forward() or factory is a different model (resume).
        code = code_fingerprint(spec.factory.split(":")[0], scenario.resolve_path("."), net)
        fingerprint = hashlib.sha256(f"{_state_fingerprint(net)}:{code}".encode()).hexdigest()
        details["code_sha256"] = code
    #: Whether loading ran code from a model file (a trusted pickle); recorded in the
    #: summary's model block and the report's Model row.
    details = {**details, "trusted_code": spec.pickle is not None}
    wrapper = ModelWrapper(
        net, input_range=spec.input_range, mean=spec.mean, std=spec.std, device=spec.device
    )
    return LoadedModel(wrapper, spec.describe(), fingerprint, details)
