"""The backend adapter contract.

As in Foolbox 3's ``Attack``: the base class owns one final public method,
:meth:`Adapter.generate`, that enforces the invariants (shapes, dtype float32,
bounds, eval mode, the ε-ball, seeded RNGs) around one small abstract method
that each backend implements. A backend module never imports its library at
import time, so capabilities can be listed without the library installed.
"""

from __future__ import annotations

import importlib.metadata
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, final

import numpy as np
import torch

from unified_adv.catalogue.attacks import ATTACKS, NORMS
from unified_adv.defences.randomness import reseed

if TYPE_CHECKING:
    from unified_adv.sources.models import ModelWrapper

BOUNDS_TOL = 1e-6


@dataclass(frozen=True)
class Capability:
    """What one backend can do for one canonical attack.

    ``classes`` maps each supported norm to the library class that runs it.
    """

    classes: Mapping[str, str]
    targets: tuple[str, ...]
    #: Largest ``random_starts`` the library can do (None: any number of restarts).
    max_random_starts: int | None = 1
    #: Canonical parameters the library cannot vary: it runs only with these values.
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: Choice parameters of which the library has only some values (e.g. its losses).
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: False where a library draws from an RNG that cannot be seeded from outside.
    reproducible: bool = True
    #: Norms for which the library can average gradients over a randomised model's
    #: randomness (expectation over transformation, ``eot_samples`` > 1).
    eot_norms: tuple[str, ...] = ()
    #: The library returns the point after its last step (PGD, BIM: what the catalogue
    #: means). False where it returns another point it saw (adv-lib: the last adversarial
    #: one, else the input; secml-torch: the highest-loss one): the analyses that go on from
    #: that point (the targeted walk, the confidence buckets, transfer) leave it out.
    last_point: bool = True
    #: A known quirk shown on every row of this attack on this backend.
    note: str = ""
    #: Quirks that hold for one norm ("l2") or one mode ("targeted", "untargeted") only:
    #: shown on those rows alone (an L∞ PGD row must not carry a note about L2 PGD).
    scoped_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def note_for(self, norm: str, targeted: bool) -> str:
        """The notes that apply to a row of this norm and targeting mode."""
        mode = "targeted" if targeted else "untargeted"
        scoped = [text for key, text in self.scoped_notes.items() if key in (norm, mode)]
        return "; ".join(n for n in (self.note, *scoped) if n)


@dataclass(frozen=True)
class AttackRequest:
    """One attack, fully resolved into canonical parameters."""

    attack: str
    norm: str
    eps: float | None
    params: Mapping[str, Any]
    targeted: bool

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if ATTACKS[self.attack].takes_eps:
            if self.eps is None or not self.eps > 0:
                raise ValueError(f"eps must be > 0 for {self.attack}, got {self.eps!r}")
        elif self.eps is not None:
            raise ValueError(f"{self.attack} takes no eps")

    @property
    def threat(self) -> str:
        return ATTACKS[self.attack].threat


@dataclass
class Job:
    """What every backend's job holds: its adapter, one request and the request's inputs.
    A backend's job class adds its library objects and the common steps of its calls."""

    adapter: Any
    request: AttackRequest
    x: np.ndarray
    y: np.ndarray
    target: np.ndarray | None

    @property
    def p(self) -> Any:
        """The request's resolved parameters."""
        return self.request.params


@dataclass
class AdapterOutput:
    """What one library call gave back.

    A translator returns it with ``x_adv`` as the library gave it (array or tensor) and
    ``library_call`` holding every argument it passed; :meth:`Adapter.generate` returns it
    checked (float32 array inside the threat model), the call stamped with the library,
    version and the semantics read back from it.
    """

    x_adv: Any
    library_call: dict[str, Any] = field(default_factory=dict)
    #: Samples the library itself reports as failed while returning a sentinel
    #: (e.g. Foolbox's C&W returns all-zero images): never counted as successes.
    backend_failed: np.ndarray | None = None
    #: A universal attack's perturbation itself, (C, H, W) or (1, C, H, W), for the UAP
    #: study that applies it to held-out images (ART's UniversalPerturbation ``noise``).
    universal_noise: np.ndarray | None = None


@dataclass(frozen=True)
class Translator:
    """One attack on one backend, in one place: what the library can do for it, how its
    keywords read back into canonical names (over the backend's ``names``), the library's
    fixed facts for it, and the function that builds and runs the library call."""

    capability: Capability
    run: Callable[[Any], AdapterOutput]
    names: Mapping[str, str] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    #: Canonical parameter -> {canonical value: the library's value} where the library
    #: names a choice differently (ART's loss "ce" is "cross_entropy"): the translator
    #: passes ``values[p][v]`` and the semantics read it back through the inverse.
    values: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)


class Translators(dict[str, Translator]):
    """A backend's table: canonical attack name -> :class:`Translator`.

    ``@TABLE.add("pgd", Capability(...), names=..., facts=...)`` above a function
    ``(job) -> AdapterOutput`` registers it; the function's docstring names the library
    class and any parameter translation.
    """

    def add(
        self,
        attack: str,
        capability: Capability,
        *,
        names: Mapping[str, str] | None = None,
        facts: Mapping[str, Any] | None = None,
        values: Mapping[str, Mapping[Any, Any]] | None = None,
    ) -> Callable[[Callable[[Any], AdapterOutput]], Callable[[Any], AdapterOutput]]:
        if attack not in ATTACKS:
            raise ValueError(f"no catalogue entry for attack {attack!r}")
        if attack in self:
            raise ValueError(f"attack {attack!r} has two translators")

        def register(fn: Callable[[Any], AdapterOutput]) -> Callable[[Any], AdapterOutput]:
            self[attack] = Translator(
                capability, fn, dict(names or {}), dict(facts or {}), dict(values or {})
            )
            return fn

        return register


class AdapterContractError(RuntimeError):
    """A backend returned something that breaks the threat model or the array contract."""


def seed_everything(seed: int) -> None:
    """Seed every RNG a backend may draw from: Python's, numpy's global one and torch's."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def library_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class Adapter(ABC):
    """Translate one canonical attack request into one backend library call."""

    name: ClassVar[str]
    distribution: ClassVar[str]
    #: attack -> translator (capability, per-attack names and facts, the function).
    translators: ClassVar[Mapping[str, Translator]] = {}
    #: Read from ``translators`` when a subclass defines them (one place per fact).
    capabilities: ClassVar[Mapping[str, Capability]] = {}
    #: torchattacks clamps to [0, 1] internally, whatever the model expects.
    requires_unit_range: ClassVar[bool] = False
    #: Order in which the library applies step, projection and clipping (for cross-checks).
    update_order: ClassVar[str] = ""
    #: Canonical parameter -> the library's keyword for it (a translator's ``names`` adds
    #: per-attack exceptions). Used to read back, from what was actually passed, the
    #: semantics the cross-check compares.
    names: ClassVar[Mapping[str, str]] = {}
    #: The library's fixed behaviour, compared by the cross-check: its loss reduction and
    #: L2 step normalisation for the gradient-step attacks (a translator's ``facts`` adds
    #: per-attack ones).
    loss_convention: ClassVar[str] = ""
    l2_step_rule: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "translators" in cls.__dict__:
            cls.capabilities = {a: t.capability for a, t in cls.translators.items()}

    def __init__(self, *, model: ModelWrapper) -> None:
        self.model = model

    @classmethod
    def version(cls) -> str:
        return library_version(cls.distribution)

    @final
    def generate(
        self,
        request: AttackRequest,
        x: np.ndarray,
        y: np.ndarray,
        target: np.ndarray | None,
        *,
        seed: int,
    ) -> AdapterOutput:
        """Run ``request`` on ``x`` and return checked adversarial examples.

        ``x`` is float32 (N, C, H, W) in the model's input range, ``y`` the true
        labels (int64, N), ``target`` the target labels when the request is targeted.
        """
        cap = self.capabilities.get(request.attack)
        if cap is None:
            raise ValueError(f"backend '{self.name}' has no attack '{request.attack}'")
        if request.norm not in cap.norms:
            raise ValueError(f"backend '{self.name}' runs {request.attack} only with {cap.norms}")
        if request.params.get("eot_samples", 1) > 1 and request.norm not in cap.eot_norms:
            raise ValueError(
                f"backend '{self.name}' has no expectation over transformation for "
                f"{request.attack} {request.norm} (it has: {', '.join(cap.eot_norms) or 'none'})"
            )
        if x.ndim != 4 or x.dtype != np.float32:
            raise ValueError(f"x must be float32 (N, C, H, W), got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],) or y.dtype != np.int64:
            raise ValueError(f"y must be int64 of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
        if request.targeted:
            if target is None or target.shape != y.shape or target.dtype != np.int64:
                raise ValueError("a targeted request needs int64 target labels, one per sample")
        elif target is not None:
            raise ValueError("target labels given for an untargeted request")
        lo, hi = self.model.input_range
        if x.min(initial=lo) < lo - BOUNDS_TOL or x.max(initial=hi) > hi + BOUNDS_TOL:
            raise ValueError(f"x lies outside the model's input range [{lo}, {hi}]")

        self.model.eval()
        seed_everything(seed)
        reseed(self.model, seed)  # a randomised defence draws from its own seeded generator
        out = self._generate(request, x, y, target)
        call = {"library": self.distribution, "version": self.version(), **out.library_call}
        call["semantics"] = self._semantics(request, call)
        failed = out.backend_failed
        if failed is not None:
            failed = np.asarray(failed, dtype=bool)
            if failed.shape != y.shape:
                raise AdapterContractError(f"{self.name}: failure mask of shape {failed.shape}")
        x_adv = self._check_output(request, x, out.x_adv)
        return replace(out, x_adv=x_adv, library_call=call, backend_failed=failed)

    def _semantics(self, request: AttackRequest, call: Mapping[str, Any]) -> dict[str, Any]:
        """What the library was really asked to do, in canonical terms, read back from the
        recorded call (so a mistranslated argument shows up), plus the library's fixed facts."""
        kwargs = call.get("kwargs", {})
        translator = self.translators.get(request.attack)
        names = {**self.names, **(translator.names if translator else {})}
        values = translator.values if translator else {}
        out: dict[str, Any] = {}
        for canon in ("eps", *request.params):
            lib = names.get(canon)
            if lib is not None and lib in kwargs:
                value = kwargs[lib]
                if canon in values:  # the library's name for a choice, read back
                    inverse = {v: k for k, v in values[canon].items()}
                    value = inverse.get(value, value)
                out[canon] = int(value) if isinstance(value, bool) else value
        # An ensemble's parameters live in its components: the translator reads them back
        # from the constructed library objects themselves.
        out.update(call.get("read_back", {}))
        if "candidates" in out and "classes" in call:
            # Asking for more candidates than there are classes means all of them.
            out["candidates"] = min(int(out["candidates"]), int(call["classes"]))
        if "eps" not in out and request.eps is not None:
            out["eps"] = call.get("call", {}).get("epsilons")
        if "eot_samples" in request.params:
            eot = call.get("eot") or {}
            out["eot_samples"] = int(eot.get("samples", 1))
            if out["eot_samples"] > 1:
                out["eot_average"] = eot.get("average", "")
        out.update(self.facts(request))
        return out

    def facts(self, request: AttackRequest) -> dict[str, Any]:
        """Fixed behaviour of the library for this attack (loss, update order, ...)."""
        out: dict[str, Any] = {}
        if ATTACKS[request.attack].sign_gradient:
            out["update_order"] = self.update_order
            out["loss"] = self.loss_convention
            if request.norm == "l2":
                out["l2_step"] = self.l2_step_rule
        translator = self.translators.get(request.attack)
        out.update(translator.facts if translator else {})
        return out

    def _check_output(self, request: AttackRequest, x: np.ndarray, x_adv: Any) -> np.ndarray:
        if isinstance(x_adv, torch.Tensor):
            x_adv = x_adv.detach().cpu().numpy()
        x_adv = np.asarray(x_adv)
        where = f"{self.name} {request.attack}"
        if x_adv.shape != x.shape:
            raise AdapterContractError(f"{where} returned shape {x_adv.shape}, expected {x.shape}")
        if not np.issubdtype(x_adv.dtype, np.floating):
            raise AdapterContractError(f"{where} returned dtype {x_adv.dtype}, expected float")
        x_adv = x_adv.astype(np.float32, copy=False)
        if not np.isfinite(x_adv).all():
            raise AdapterContractError(f"{where} returned non-finite values")
        lo, hi = self.model.input_range
        if x_adv.min() < lo - BOUNDS_TOL or x_adv.max() > hi + BOUNDS_TOL:
            raise AdapterContractError(
                f"{where} left the input range [{lo}, {hi}]: "
                f"min {x_adv.min():.6g}, max {x_adv.max():.6g}"
            )
        threat = ATTACKS[request.attack].threat_model
        problem = threat.violation(x, x_adv, request.norm, request.eps, request.params)
        if problem is not None:
            raise AdapterContractError(f"{where} {problem}")
        return x_adv

    def _generate(
        self,
        request: AttackRequest,
        x: np.ndarray,
        y: np.ndarray,
        target: np.ndarray | None,
    ) -> AdapterOutput:
        """Call the library: the request's translator, run on this backend's job."""
        return self.translators[request.attack].run(self._job(request, x, y, target))

    @abstractmethod
    def _job(
        self,
        request: AttackRequest,
        x: np.ndarray,
        y: np.ndarray,
        target: np.ndarray | None,
    ) -> Any:
        """What every translator of this backend receives: the request and inputs, with
        the pieces built once (the library's model wrapper, the seed it draws from)."""
