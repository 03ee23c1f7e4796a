"""The public functional ops (SENSE, and super-resolution's data step), each dispatched to the backend
that takes its inputs.

Each op (:mod:`mbdlfast.ops.definitions`: schema ``mbdlfast::<op>``, fake kernel, autograd) has the
signature of its pure-torch oracle in :mod:`mbdlfast.ops.reference` plus a ``backend`` keyword
(None = :func:`use_backend` / ``MBDLFAST_BACKEND`` / auto). :func:`explain` says which backend runs
for given arguments and why the others were skipped (:mod:`mbdlfast.ops.dispatch`).

Backends register their forward kernels on import: ``torch`` (:mod:`~mbdlfast.ops.torch_fast`),
``cpp``/``cuda`` (:mod:`~mbdlfast.ops.extension_ops`), ``triton`` (:mod:`~mbdlfast.ops.triton_ops`)
and ``naive``, the fastMRI-style oracle itself, the paper-style baseline that only runs when forced.
"""
from __future__ import annotations

import torch

from mbdlfast.ops import extension_ops, reference, torch_fast, triton_ops  # noqa: F401  (backends register)
from mbdlfast.ops.definitions import (coil_expand, coil_reduce, dc_gradient_step, explain, sense_adjoint,
                                      sense_adjoint_compact, sense_forward, sense_forward_compact, sense_normal,
                                      soft_kspace_dc, sr_data_solve)
from mbdlfast.ops.dispatch import available_backends, register, report, use_backend

for _name in ("coil_expand", "coil_reduce", "sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step",
              "soft_kspace_dc", "sense_forward_compact", "sense_adjoint_compact"):
    register(_name, "naive")(getattr(reference, _name))
# The data step's reference is already the torch formulation (alias means by reshape, no copies to avoid).
register("sr_data_solve", "torch", dtypes=(torch.complex64, torch.complex128))(reference.sr_data_solve)

__all__ = [
    "available_backends", "coil_expand", "coil_reduce", "dc_gradient_step", "explain", "reference", "report",
    "sense_adjoint", "sense_adjoint_compact", "sense_forward", "sense_forward_compact", "sense_normal",
    "soft_kspace_dc", "sr_data_solve", "use_backend",
]
