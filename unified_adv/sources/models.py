"""The one model wrapper every backend calls, and the loaders of a user's model files
(factory + weights, TorchScript, trusted pickle).

Input range and mean/std normalisation live inside :class:`ModelWrapper`, so
ART, Foolbox and torchattacks all attack the same function of the same inputs.
Which model a scenario names (a builtin or a user's file) is resolved by
:func:`unified_adv.sources.load.load_model`.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from unified_adv.errors import InputError

if TYPE_CHECKING:
    from unified_adv.scenario.schema import ModelSpec


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




# --------------------------------------------------------------------------- loading


def state_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's state dict (names and tensor bytes, in name order)."""
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


def import_factory(spec: str, base_dir: Path, file: str, field: str = "model.factory") -> Any:
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


def _read_safetensors(path: Path, file: str, field: str) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file: tensors only, no code (the format cannot name any)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own kinds
        raise InputError.one(file, field, f"not a readable safetensors file ({error_gist(exc)})") from None


def load_weights(net: nn.Module, path: Path, file: str, field: str = "model.weights") -> None:
    """A state dict (``torch.save(model.state_dict())``, read with ``weights_only``, or a
    ``.safetensors`` file) loaded into ``net``; every misfit said in one line."""
    check_file(path, file, field)
    if path.suffix == ".safetensors":
        _fit_state(net, _read_safetensors(path, file, field), file, field)
        return
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
    _fit_state(net, blob, file, field)


def _fit_state(net: nn.Module, blob: dict[str, torch.Tensor], file: str, field: str) -> None:
    try:
        net.load_state_dict(blob)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines if line.strip())
        if len(detail) > 300:
            detail = detail[:299] + "…"
        raise InputError.one(file, field, f"does not fit the model: {detail}") from None


def load_torchscript(path: Path, file: str, field: str) -> tuple[nn.Module, str]:
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


def load_trusted_pickle(
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
