"""Backend dispatcher: which forward kernel of an op runs for given inputs, and why.

Backends: ``torch`` (everywhere), ``triton`` (CUDA tensors; CPU tensors only under
``TRITON_INTERPRET=1``, for tests), ``cpp`` (CPU, the OpenMP extension), ``cuda`` (the CUDA
extension) and ``naive`` (everywhere: the fastMRI-style reference with separate multiply, shift, FFT
and mask passes, the paper-style baseline; only ever forced).

Each backend registers a forward kernel per op with what that kernel takes (:class:`Kernel`:
dtypes, mask kinds, complex scalars, size limits read from the device). The dispatcher decides on
the inputs' metadata (a :class:`Case`: no data is read, so deciding never waits on a device):

* ``auto`` walks the device's :data:`AUTO_ORDER` and takes the first backend that can run the
  case; ``naive`` is never in it, so ``auto`` never lands on the baseline. On CUDA the order is not
  assumed: torch, unless a committed GPU measurement (:mod:`mbdlfast.ops.measurements`) found
  ``cuda`` or ``triton`` faster for that op on that GPU;
* a forced backend (``backend=``, :func:`use_backend`, ``MBDLFAST_BACKEND``) that cannot run the
  case raises with every reason.

:func:`explain` gives the decision and each skipped backend's reasons; ``mbdlfast info`` and the
benchmarks print it, so a label always names what ran. Gradients are not a backend's concern: the
public op (:mod:`mbdlfast.ops.definitions`) has one autograd formula over these forward kernels.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import threading
from typing import Callable, Iterator

import torch

from mbdlfast._extension import cuda_extension_status, extension_status
from mbdlfast.ops import measurements

BACKENDS = ("torch", "triton", "cpp", "cuda", "naive")
# Backends "auto" may pick, per device type, in order ("naive" is deliberately absent); on CUDA the
# candidates, ordered by the committed measurements (see decide).
AUTO_ORDER = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpp", "torch")}
COMPLEX_DTYPES = (torch.complex64, torch.complex128)


@dataclasses.dataclass(frozen=True)
class Case:
    """What a backend decides on, read from the inputs' metadata only.

    ``mask``: "1d" (lines along W), "2d" (a general pattern) or None (the op takes no mask);
    ``scalar``: "real", "complex" or None (the op's γ or λ); sizes are the coil data's (B,C,H,W).
    """

    op: str
    device: torch.device
    dtype: torch.dtype
    mask: str | None = None
    scalar: str | None = None
    batch: int = 0
    coils: int = 0
    height: int = 0
    width: int = 0


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A backend's forward kernel of one op and the inputs it takes.

    ``limits(case)`` returns the reason a size is out of the kernel's reach (read from the device
    where that is where the limit comes from), or None.
    """

    fn: Callable
    dtypes: tuple[torch.dtype, ...] = COMPLEX_DTYPES
    masks: tuple[str, ...] = ("1d", "2d")
    complex_scalars: bool = True
    limits: Callable[[Case], str | None] | None = None

    def refusals(self, case: Case) -> list[str]:
        """Why this kernel cannot run ``case`` (empty when it can)."""
        reasons = []
        if case.dtype not in self.dtypes:
            reasons.append(f"takes {'/'.join(str(d).removeprefix('torch.') for d in self.dtypes)}, "
                           f"not {str(case.dtype).removeprefix('torch.')}")
        if case.mask is not None and case.mask not in self.masks:
            reasons.append(f"takes {'/'.join(self.masks)} masks, not a {case.mask} mask")
        if case.scalar == "complex" and not self.complex_scalars:
            reasons.append("takes a real scalar, not a complex one")
        if self.limits is not None and (limit := self.limits(case)) is not None:
            reasons.append(limit)
        return reasons


_KERNELS: dict[str, dict[str, Kernel]] = {}
# The backend forced by use_backend, per thread. A threading.local rather than a ContextVar because
# torch.compile traces (and guards on) attribute reads of it but cannot trace ContextVar.get.
_forced = threading.local()


def register(op: str, backend: str, **support) -> Callable[[Callable], Callable]:
    """Decorator: ``fn`` is ``backend``'s forward kernel of ``op``; ``support`` are :class:`Kernel` fields."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")

    def wrap(fn: Callable) -> Callable:
        _KERNELS.setdefault(op, {})[backend] = Kernel(fn, **support)
        return fn

    return wrap


@functools.lru_cache(maxsize=None)
def _triton_importable() -> str | None:
    return None if importlib.util.find_spec("triton") is not None else "triton is not installed"


@torch.compiler.assume_constant_result
def _extension_status() -> tuple[bool, str]:
    """extension_status(), which is fixed for the process: torch.compile folds it instead of tracing it."""
    return extension_status()


@torch.compiler.assume_constant_result
def _cuda_extension_status() -> tuple[bool, str]:
    """cuda_extension_status(), fixed for the process (see _extension_status)."""
    return cuda_extension_status()


def backend_unavailable_reason(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run on ``device`` in this process, else the reason it cannot."""
    device = torch.device(device)
    if backend in ("torch", "naive"):
        return None
    if backend == "triton":
        if (missing := _triton_importable()) is not None:
            return missing
        if device.type == "cuda":
            return None
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
            return None
        return f"triton runs on CUDA tensors (or CPU under TRITON_INTERPRET=1), not on {device.type}"
    if backend == "cpp":
        if device.type != "cpu":
            return f"cpp runs on CPU tensors, not on {device.type}"
        loaded, why = _extension_status()
        return None if loaded else why
    if backend == "cuda":
        if device.type != "cuda":
            return f"cuda runs on CUDA tensors, not on {device.type}"
        loaded, why = _cuda_extension_status()
        return None if loaded else why
    raise ValueError(f"backend: expected one of {BACKENDS} or 'auto', got {backend!r}")


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` in this process."""
    return [b for b in BACKENDS if backend_unavailable_reason(b, torch.device(device)) is None]


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Force ``backend`` (or ``"auto"``) for the ops called inside the block."""
    _check_backend_name(backend)
    previous = getattr(_forced, "backend", None)
    _forced.backend = backend
    try:
        yield
    finally:
        _forced.backend = previous


def _check_backend_name(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or 'auto', got {backend!r}")


def requested_backend(explicit: str | None = None) -> str:
    """The backend asked for: an explicit argument, then use_backend, then MBDLFAST_BACKEND, else auto."""
    for choice in (explicit, getattr(_forced, "backend", None), os.environ.get("MBDLFAST_BACKEND")):
        if choice:
            _check_backend_name(choice)
            return choice
    return "auto"


def refusals(backend: str, case: Case) -> list[str]:
    """Every reason ``backend`` cannot run ``case``: not implemented, not available here, or inputs
    its kernel does not take."""
    kernel = _KERNELS.get(case.op, {}).get(backend)
    if kernel is None:
        return [f"{case.op} has no {backend} kernel"]
    if (reason := backend_unavailable_reason(backend, case.device)) is not None:
        return [reason]
    return kernel.refusals(case)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The backend that runs ``case``, what was asked for, why each backend before it was skipped,
    and (on CUDA) the committed measurement the order came from."""

    backend: str
    requested: str
    skipped: dict[str, list[str]]
    basis: str = ""

    def __str__(self) -> str:
        if self.requested != "auto":
            return f"{self.backend} (forced)"
        why = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in self.skipped.items())
        notes = [note for note in (self.basis, f"skipped {why}" if why else "") if note]
        return f"{self.backend} (" + "; ".join(["auto", *notes]) + ")"


def decide(case: Case, requested: str = "auto") -> Decision:
    """The backend for ``case``; raises when a forced backend cannot run it (with its reasons)."""
    if case.op not in _KERNELS:
        raise KeyError(f"op: no kernel registered for {case.op!r}")
    if requested != "auto":
        reasons = refusals(requested, case)
        if reasons:
            raise RuntimeError(f"backend {requested!r} cannot run {case.op} on these inputs ({_describe(case)}): "
                               + "; ".join(reasons))
        return Decision(requested, requested, {})
    order, skipped, basis = list(AUTO_ORDER.get(case.device.type, ("torch",))), {}, ""
    if case.device.type == "cuda":
        order, skipped, basis = measurements.auto_order(case, AUTO_ORDER["cuda"])
    for candidate in order:
        reasons = refusals(candidate, case)
        if not reasons:
            return Decision(candidate, "auto", skipped, basis)
        skipped[candidate] = reasons
    raise RuntimeError(f"no backend can run {case.op} on these inputs ({_describe(case)}): "
                       + "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in skipped.items()))


def kernel(case: Case, requested: str = "auto") -> tuple[str, Callable]:
    """(backend, forward kernel) for ``case``."""
    backend = decide(case, requested).backend
    return backend, _KERNELS[case.op][backend].fn


def _describe(case: Case) -> str:
    parts = [str(case.dtype).removeprefix("torch."), f"on {case.device}"]
    if case.mask:
        parts.append(f"{case.mask} mask")
    if case.width:
        parts.append(f"(B,C,H,W)=({case.batch},{case.coils},{case.height},{case.width})")
    return ", ".join(parts)


def ops() -> list[str]:
    """Every op with a registered kernel."""
    return sorted(_KERNELS)


def report(device: torch.device | str = "cpu") -> dict[str, dict[str, str]]:
    """For each op and backend: 'available' or why it cannot run on ``device`` at all (before any
    input is seen; :func:`explain` decides on inputs)."""
    device = torch.device(device)
    table = {}
    for op, kernels in sorted(_KERNELS.items()):
        table[op] = {backend: ("not implemented" if backend not in kernels else
                               backend_unavailable_reason(backend, device) or "available") for backend in BACKENDS}
    return table
