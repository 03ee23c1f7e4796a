"""Public functional SENSE ops, dispatched to the fastest available backend.

Each op has the signature of its pure-torch oracle in :mod:`mbdlfast.ops.reference` plus a
``backend`` keyword (None = ``use_backend`` / ``MBDLFAST_BACKEND`` / auto). The dispatcher in
:mod:`mbdlfast.ops.dispatch` says which backend runs and why. These functions do not validate
shapes: :class:`mbdlfast.physics.SenseOperator` does, once, at its boundary.

Backend modules register their implementations with ``dispatch.register(op, backend)`` and are
imported at the bottom of this file.
"""
from __future__ import annotations

import torch

from mbdlfast.ops import reference
from mbdlfast.ops.dispatch import available_backends, choose, register, report, use_backend

# The fastMRI-style reference is the forced-only "naive" backend (the paper-style baseline).
for _name in ("coil_expand", "coil_reduce", "sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step",
              "soft_kspace_dc", "sense_forward_compact", "sense_adjoint_compact"):
    register(_name, "naive")(getattr(reference, _name))


def _run(op: str, device: torch.device, backend: str | None, *args):
    return choose(op, device, backend, args)[1](*args)


def coil_expand(x, maps, *, backend=None):
    """S·x: (B,H,W) image and (B|1,C,H,W) maps to (B,C,H,W) coil images."""
    return _run("coil_expand", x.device, backend, x, maps)


def coil_reduce(z, maps, *, backend=None):
    """Σ_c conj(S_c)·z_c: (B,C,H,W) coil images to a (B,H,W) image."""
    return _run("coil_reduce", z.device, backend, z, maps)


def sense_forward(x, maps, mask, is_2d=False, *, backend=None):
    """A x = M · fft2c(S·x) on full (B,C,H,W) k-space."""
    return _run("sense_forward", x.device, backend, x, maps, mask, is_2d)


def sense_adjoint(y, maps, mask, is_2d=False, *, backend=None):
    """A^H y for full (B,C,H,W) k-space."""
    return _run("sense_adjoint", y.device, backend, y, maps, mask, is_2d)


def sense_normal(x, maps, mask, is_2d=False, *, backend=None):
    """A^H A x."""
    return _run("sense_normal", x.device, backend, x, maps, mask, is_2d)


def dc_gradient_step(x, maps, mask, AHy, gamma, is_2d=False, *, backend=None):
    """x − γ·(A^H A x − A^H y), with A^H y computed once per reconstruction."""
    return _run("dc_gradient_step", x.device, backend, x, maps, mask, AHy, gamma, is_2d)


def soft_kspace_dc(k, y, mask, lam, is_2d=False, *, backend=None):
    """E2E-VarNet's soft data consistency k − λ·M·(k − y)."""
    return _run("soft_kspace_dc", k.device, backend, k, y, mask, lam, is_2d)


def sense_forward_compact(x, maps, columns, *, backend=None):
    """A x at the sampled columns only: (B,C,H,n_s)."""
    return _run("sense_forward_compact", x.device, backend, x, maps, columns)


def sense_adjoint_compact(yc, maps, columns, *, backend=None):
    """A^H of compact (B,C,H,n_s) k-space."""
    return _run("sense_adjoint_compact", yc.device, backend, yc, maps, columns)


# Backend implementations register themselves on import.
from mbdlfast.ops import torch_fast  # noqa: E402,F401
from mbdlfast.ops import extension_ops  # noqa: E402,F401
from mbdlfast.ops import triton_ops  # noqa: E402,F401

__all__ = [
    "available_backends", "choose", "coil_expand", "coil_reduce", "dc_gradient_step", "reference", "report",
    "sense_adjoint", "sense_adjoint_compact", "sense_forward", "sense_forward_compact", "sense_normal",
    "soft_kspace_dc", "use_backend",
]
