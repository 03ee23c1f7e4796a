"""The ``cpp`` and ``cuda`` backends: forward kernels of the C++/CUDA extension (``torch.ops.mbdlfast_ext``).

The schemas and device kernels are in csrc/; one Python entry per op serves both devices
(``torch.ops`` routes to the CPU or the CUDA kernel). Each entry turns the op's arguments into the
kernel's operands (the circulant weight ifftshift(M)² of A^H A, the centred mask of A / A^H, maps as
(B|1,C,H,W), scalars as one-element tensors on the data's device) and declares what it takes:
1D masks for the SENSE transforms, real scalars, complex64 on CUDA (both precisions on CPU) and,
for the fused CUDA A^H A, a row that fits the device's shared memory. Super-resolution's data step
has a CPU kernel only (on CUDA the Triton kernel serves it).
"""
from __future__ import annotations

import functools

import torch

from mbdlfast.ops.dispatch import COMPLEX_DTYPES, Case, register
from mbdlfast.ops.fft import real_dtype
from mbdlfast.ops.layouts import mask_as_kspace_weight
from mbdlfast.ops.torch_fast import circulant_weight


def _centred_mask(mask: torch.Tensor, is_2d: bool, dtype: torch.dtype) -> torch.Tensor:
    """The mask as the kernels' real centred weight: (B|1, W) for 1D, (B|1, H|1, W) for soft DC."""
    weight = mask_as_kspace_weight(mask, is_2d)[:, 0]
    return weight.to(real_dtype(dtype)).contiguous()


def _device_scalar(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A one-element scalar as the kernels read it: float32 on CUDA, the data's real dtype on CPU."""
    dtype = torch.float32 if like.is_cuda else real_dtype(like.dtype)
    return value.detach().reshape(()).to(device=like.device, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _shared_memory_per_block(device_index: int) -> int:
    """The opt-in shared memory per block of a CUDA device, read from the device."""
    return torch.cuda.get_device_properties(device_index).shared_memory_per_block_optin


# The fused CUDA normal kernel (csrc/cuda/sense_kernels.cu): W <= 1024 bounds its index reduction;
# per block it keeps twiddles, NORMAL_ROWS staged rows and NORMAL_ROWS spectrum rows (W rounded up
# to 32) of complex64 and W frequencies and gains in shared memory, whatever the number of coils.
CUDA_MAX_WIDTH = 1024
NORMAL_ROWS = 8


def normal_shared_memory(width: int) -> int:
    """Bytes of shared memory per block of the fused CUDA normal kernel (mbdlfast_cuda_normal_1d_smem)."""
    padded = -(-width // 32) * 32
    return ((1 + NORMAL_ROWS) * width + NORMAL_ROWS * padded) * 8 + width * 8


def _cuda_row_fits(case: Case) -> str | None:
    if case.device.type != "cuda":
        return None
    if case.width > CUDA_MAX_WIDTH:
        return f"the fused CUDA row kernel takes W <= {CUDA_MAX_WIDTH}, got W={case.width}"
    needed = normal_shared_memory(case.width)
    available = _shared_memory_per_block(case.device.index if case.device.index is not None else torch.cuda.current_device())
    if needed > available:
        return f"the fused CUDA normal kernel needs {needed:,} bytes of shared memory per block at W={case.width}, " \
               f"the device allows {available:,} (shared_memory_per_block_optin)"
    return None


def sense_normal(x, maps, mask, is_2d):
    return torch.ops.mbdlfast_ext.sense_normal(x.contiguous(), maps.contiguous(), circulant_weight(mask, x.dtype).contiguous())


def dc_gradient_step(x, maps, mask, AHy, gamma, is_2d):
    return torch.ops.mbdlfast_ext.dc_gradient_step(x.contiguous(), maps.contiguous(), circulant_weight(mask, x.dtype).contiguous(),
                                                   AHy.contiguous(), _device_scalar(gamma, x))


def sense_forward(x, maps, mask, is_2d):
    return torch.ops.mbdlfast_ext.sense_forward(x.contiguous(), maps.contiguous(), _centred_mask(mask, False, x.dtype)[:, 0])


def sense_adjoint(y, maps, mask, is_2d):
    return torch.ops.mbdlfast_ext.sense_adjoint(y.contiguous(), maps.contiguous(), _centred_mask(mask, False, y.dtype)[:, 0])


def soft_kspace_dc(k, y, mask, lam, is_2d):
    return torch.ops.mbdlfast_ext.soft_kspace_dc(k.contiguous(), y.contiguous(), _centred_mask(mask, is_2d, k.dtype),
                                                 _device_scalar(lam, k))


def _batched_columns(columns: torch.Tensor) -> torch.Tensor:
    return (columns if columns.dim() == 2 else columns.unsqueeze(0)).to(torch.long).contiguous()


def sense_forward_compact(x, maps, columns):
    return torch.ops.mbdlfast_ext.sense_forward_compact(x.contiguous(), maps.contiguous(), _batched_columns(columns))


def sense_adjoint_compact(yc, maps, columns):
    return torch.ops.mbdlfast_ext.sense_adjoint_compact(yc.contiguous(), maps.contiguous(), _batched_columns(columns))


def sr_data_solve(fz, fay, otf, alpha, scale):
    return torch.ops.mbdlfast_ext.sr_data_solve(fz.contiguous(), fay.contiguous(), otf.contiguous(),
                                                alpha.detach().to(real_dtype(fz.dtype)).contiguous(), scale)


def coil_expand(x, maps):
    return torch.ops.mbdlfast_ext.coil_expand(x.contiguous(), maps.contiguous())


def coil_reduce(z, maps):
    return torch.ops.mbdlfast_ext.coil_reduce(z.contiguous(), maps.contiguous())


# What each kernel takes, per backend: the CPU kernels are templated on both precisions, the CUDA
# ones are complex64; the SENSE transforms are written for lines along W.
_DTYPES = {"cpp": COMPLEX_DTYPES, "cuda": (torch.complex64,)}
for _backend, _dtypes in _DTYPES.items():
    register("coil_expand", _backend, dtypes=_dtypes)(coil_expand)
    register("coil_reduce", _backend, dtypes=_dtypes)(coil_reduce)
    register("sense_normal", _backend, dtypes=_dtypes, masks=("1d",), limits=_cuda_row_fits)(sense_normal)
    register("dc_gradient_step", _backend, dtypes=_dtypes, masks=("1d",), complex_scalars=False,
             limits=_cuda_row_fits)(dc_gradient_step)
    register("sense_forward", _backend, dtypes=_dtypes, masks=("1d",))(sense_forward)
    register("sense_adjoint", _backend, dtypes=_dtypes, masks=("1d",))(sense_adjoint)
    register("soft_kspace_dc", _backend, dtypes=_dtypes, complex_scalars=False)(soft_kspace_dc)
    register("sense_forward_compact", _backend, dtypes=_dtypes)(sense_forward_compact)
    register("sense_adjoint_compact", _backend, dtypes=_dtypes)(sense_adjoint_compact)
register("sr_data_solve", "cpp", dtypes=COMPLEX_DTYPES, complex_scalars=False)(sr_data_solve)  # no CUDA kernel: Triton
