"""Backend dispatcher: which implementation of an op runs, and why.

Backends: ``torch`` (everywhere), ``triton`` (CUDA tensors; CPU tensors only under
``TRITON_INTERPRET=1``, for tests), ``cpp`` (CPU, the OpenMP extension), ``cuda`` (the CUDA
extension) and ``naive`` (everywhere: the fastMRI-style reference with separate multiply, shift, FFT
and mask passes, the paper-style baseline; only ever forced, ``auto`` never picks it). ``auto``
takes the first available backend in the device's preference order, which the benchmarks in
``benchmarks/`` justify, skipping a backend on the inputs where it measured slower than the next one
(:data:`AUTO_MIN_ELEMENTS`); ``MBDLFAST_BACKEND`` or :func:`use_backend` force one, and a forced backend
that cannot run raises with every reason. The automatic choice never raises.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import threading
from typing import Callable, Iterator

import torch

from mbdlfast._extension import cuda_extension_status, extension_status

BACKENDS = ("torch", "triton", "cpp", "cuda", "naive")
# Backends "auto" may pick, per device type, fastest first; "naive" is deliberately absent.
AUTO_ORDER = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpp", "torch")}

# Measured crossovers: on inputs with fewer coil-data elements (batch x coils x H x W, see
# _coil_elements) than a backend's entry for an op, "auto" skips that backend (its per-call costs
# outweigh its savings there). Empty on CPU since the pruned row transform: cpp is at least as fast
# as torch from 4x64x64 up (benchmarks/bench_sense.py); the GPU backends are still to be measured.
AUTO_MIN_ELEMENTS: dict[tuple[str, str], dict[str, float]] = {}

_IMPLEMENTATIONS: dict[str, dict[str, Callable]] = {}
# The backend forced by use_backend, per thread. A threading.local rather than a ContextVar because
# torch.compile traces (and guards on) attribute reads of it but cannot trace ContextVar.get.
_forced = threading.local()


def register(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn`` implements ``op`` on ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")

    def wrap(fn: Callable) -> Callable:
        _IMPLEMENTATIONS.setdefault(op, {})[backend] = fn
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
    """None when ``backend`` can run on ``device`` here, else the reason it cannot."""
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
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS} or 'auto', got {backend!r}")
    previous = getattr(_forced, "backend", None)
    _forced.backend = backend
    try:
        yield
    finally:
        _forced.backend = previous


def requested_backend(explicit: str | None = None) -> str:
    """The backend asked for: an explicit argument, then use_backend, then MBDLFAST_BACKEND, else auto."""
    for choice in (explicit, getattr(_forced, "backend", None), os.environ.get("MBDLFAST_BACKEND")):
        if choice:
            return choice
    return "auto"


def choose(op: str, device: torch.device, backend: str | None = None, args: tuple = ()) -> tuple[str, Callable, str]:
    """Pick the implementation of ``op`` for tensors on ``device``: ``(backend, fn, why)``.

    ``args`` are the op's arguments; the automatic choice may depend on their shapes."""
    impls = _IMPLEMENTATIONS.get(op)
    if not impls:
        raise KeyError(f"op: no implementation registered for {op!r}")
    wanted = requested_backend(backend)
    if wanted != "auto":
        reasons = []
        if wanted not in impls:
            reasons.append(f"{op} has no {wanted} implementation (it has {sorted(impls)})")
        reason = backend_unavailable_reason(wanted, device)
        if reason:
            reasons.append(reason)
        if reasons:
            raise RuntimeError(f"backend {wanted!r} cannot run {op} on {device}: " + "; ".join(reasons))
        return wanted, impls[wanted], "forced"
    skipped = []
    for candidate in AUTO_ORDER.get(device.type, ("torch",)):
        if candidate not in impls:
            skipped.append(f"{candidate}: not implemented")
            continue
        threshold = AUTO_MIN_ELEMENTS.get((device.type, candidate), {}).get(op, 0)
        if threshold and args and _coil_elements(args) < threshold:
            skipped.append(f"{candidate}: measured slower than the next backend below {threshold:,} elements")
            continue
        reason = backend_unavailable_reason(candidate, device)
        if reason is None:
            why = ("auto: first available in " + "/".join(AUTO_ORDER.get(device.type, ("torch",)))
                   + " ('naive' is the baseline and only runs when forced)")
            return candidate, impls[candidate], why + (f" (skipped {'; '.join(skipped)})" if skipped else "")
        skipped.append(f"{candidate}: {reason}")
    return "torch", impls["torch"], "auto: fallback to torch (" + "; ".join(skipped) + ")"


def _coil_elements(args: tuple) -> int:
    """Elements of the coil-resolved data an op touches: its largest tensor, or batch x the maps'
    (C,H,W) when maps shared over the batch (a (C,H,W) or (1,C,H,W) tensor) are the largest."""
    tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
    if not tensors:
        return 0
    largest = max(tensors, key=torch.Tensor.numel)
    batch = tensors[0].shape[0] if tensors[0].dim() >= 3 else 1
    shared_maps = largest is not tensors[0] and (largest.dim() == 3 or (largest.dim() == 4 and largest.shape[0] == 1))
    return batch * math.prod(largest.shape[-3:]) if shared_maps else largest.numel()


def report(device: torch.device | str = "cpu") -> dict[str, dict[str, str]]:
    """For each op and backend: 'available' or the reason it cannot run on ``device``."""
    device = torch.device(device)
    table = {}
    for op, impls in sorted(_IMPLEMENTATIONS.items()):
        row = {}
        for backend in BACKENDS:
            if backend not in impls:
                row[backend] = "not implemented"
            else:
                row[backend] = backend_unavailable_reason(backend, device) or "available"
        table[op] = row
    return table
