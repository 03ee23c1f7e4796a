"""A guard against host synchronisation on a hot path, and the one way code declares a sync it needs.

On a GPU, reading a value on the host (``.item()``, ``float(t)``, ``bool(t)``), an op whose output
size depends on values (``nonzero``, boolean indexing, ``masked_select``, ``unique``) and a copy
between host and device all stall the host until the device catches up, and break CUDA-graph
capture. :func:`forbid_host_sync` records every such call made while it is active, on any device
(so a CPU test finds what would stall a GPU), and raises on the first one or lists them at the end.

A solver that must look at its convergence (the early stop of CG or Anderson every few iterations)
wraps that read in :func:`allow_host_sync` with its reason: the guard counts those reads apart,
so a test can bound them, and flags everything else. ``torch.cuda.set_sync_debug_mode("error")``
is the check on a real GPU.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# Ops that read values on the host or size their output by the values.
_VALUE_READS = {
    _aten._local_scalar_dense.default, _aten.nonzero.default, _aten.masked_select.default,
    _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
}
_COPIES = {_aten._to_copy.default, _aten.copy_.default}

_allowed = threading.local()


class HostSyncError(RuntimeError):
    """A host synchronisation inside :func:`forbid_host_sync`."""


@contextlib.contextmanager
def allow_host_sync(reason: str) -> Iterator[None]:
    """Declare that the enclosed host read is intended (e.g. a solver's convergence check)."""
    previous = getattr(_allowed, "reason", None)
    _allowed.reason = reason
    try:
        yield
    finally:
        _allowed.reason = previous


class _SyncRecorder(TorchDispatchMode):
    def __init__(self, raise_on_sync: bool):
        super().__init__()
        self.raise_on_sync = raise_on_sync
        self.syncs: list[str] = []
        self.allowed: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = _host_sync(func, args, kwargs)
        if what is not None:
            reason = getattr(_allowed, "reason", None)
            if reason is not None:
                self.allowed[reason] += 1
            elif self.raise_on_sync:
                raise HostSyncError(f"host synchronisation on the hot path: {what}")
            else:
                self.syncs.append(what)
        return func(*args, **kwargs)


def _host_sync(func, args, kwargs) -> str | None:
    """What ``func(*args, **kwargs)`` would synchronise on, or None."""
    if func in _VALUE_READS:
        return f"{func.name()} (reads values on the host)"
    if func is _aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1]):
        return "boolean-mask indexing (sizes its output by the mask's values)"
    if func in _COPIES:
        source = args[1] if func is _aten.copy_.default else args[0]
        target = args[0].device if func is _aten.copy_.default else kwargs.get("device", source.device)
        if isinstance(source, torch.Tensor) and torch.device(target).type != source.device.type:
            return f"{func.name()} from {source.device.type} to {torch.device(target).type}"
    return None


@contextlib.contextmanager
def forbid_host_sync(*, raise_on_sync: bool = True) -> Iterator[_SyncRecorder]:
    """Record host synchronisations in the block: raise :class:`HostSyncError` on the first one, or with
    ``raise_on_sync=False`` collect them in ``.syncs``. ``.allowed`` counts the declared reads by reason."""
    recorder = _SyncRecorder(raise_on_sync)
    with recorder:
        yield recorder
