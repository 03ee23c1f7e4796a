"""The ``triton`` backend: forward kernels of the public ops on the Triton launches of
:mod:`mbdlfast.ops.triton_library` (loaded, with Triton, on first use only).

complex64 with lines along W (soft DC: any mask), real scalars:

* A^H A and the gradient DC step: one fused kernel, no transform along H at all.
* A / A^H (compact or full): the W-direction DFT at the sampled columns by matmul inside the
  coil-expand / coil-reduce kernel (compact (B,C,H,n_s) rows directly), then a plain FFT along H
  (cuFFT on GPU) centred by modulation, the input modulation folded into the kernel and the output
  one a multiply on the compact (n_s/W-sized) data. A DFT-by-matmul along H would cost O(H) per
  output instead of O(log H); full k-space is the compact result zero-filled.
* soft k-space DC: one elementwise kernel.
* super-resolution's data step (spectra in, spectrum out): one pass over each alias block.

Other inputs are not this backend's: the dispatcher sees the declarations below and picks another.
"""
from __future__ import annotations

import functools
import importlib

import torch

from mbdlfast.ops.centred_dft import row_dft_from_columns, row_dft_from_mask
from mbdlfast.ops.dispatch import register
from mbdlfast.ops.fft import centring_phases
from mbdlfast.ops.layouts import mask_as_kspace_weight

_TAKES = {"dtypes": (torch.complex64,), "complex_scalars": False}


def _library():
    """The torch.library ops (imports Triton on the first call)."""
    return importlib.import_module("mbdlfast.ops.triton_library")


@functools.lru_cache(maxsize=64)
def _row_phases(height: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(q, p, conj q, conj p) along H in complex64 (the conjugates materialised once for the kernels)."""
    q, p = centring_phases(height, device, torch.complex64)
    return q, p, q.conj().resolve_conj(), p.conj().resolve_conj()


def _sampled_index(columns: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(Bm,n_s) column indices expanded to a (B,C,H,n_s) gather/scatter index."""
    return columns[:, None, None, :].expand(shape[0], shape[1], shape[2], columns.shape[-1])


def _compact_forward(x, maps, dft) -> torch.Tensor:
    q, p, _, _ = _row_phases(x.shape[-2], x.device)
    rows = _library().row_dft_forward_triton(x, maps, dft.planar, q)
    if rows.numel() == 0:  # nothing sampled (the FFT rejects empty batches)
        return rows
    return torch.fft.fft(rows, dim=-2, norm="ortho") * p[:, None]


def _compact_adjoint(yc, maps, dft) -> torch.Tensor:
    _, _, q_conj, p_conj = _row_phases(yc.shape[-2], yc.device)
    rows = yc if yc.numel() == 0 else torch.fft.ifft(yc * p_conj[:, None], dim=-2, norm="ortho")
    return _library().row_dft_adjoint_triton(rows, maps, dft.planar, q_conj)


@register("coil_expand", "triton", **_TAKES)
def coil_expand(x, maps):
    return _library().coil_expand_triton(x, maps)


@register("coil_reduce", "triton", **_TAKES)
def coil_reduce(z, maps):
    return _library().coil_reduce_triton(z, maps)


@register("sense_forward", "triton", masks=("1d",), **_TAKES)
def sense_forward(x, maps, mask, is_2d):
    batch, height, width = x.shape
    dft = row_dft_from_mask(mask, width)
    compact = _compact_forward(x, maps, dft)
    full = compact.new_zeros((batch, maps.shape[1], height, width))
    return full.scatter(-1, _sampled_index(dft.columns, compact.shape), compact)


@register("sense_adjoint", "triton", masks=("1d",), **_TAKES)
def sense_adjoint(y, maps, mask, is_2d):
    dft = row_dft_from_mask(mask, y.shape[-1])
    compact = torch.gather(y, -1, _sampled_index(dft.columns, y.shape))
    return _compact_adjoint(compact, maps, dft)


@register("sense_normal", "triton", masks=("1d",), **_TAKES)
def sense_normal(x, maps, mask, is_2d):
    return _library().sense_normal_triton(x, maps, row_dft_from_mask(mask, x.shape[-1]).planar)


@register("dc_gradient_step", "triton", masks=("1d",), **_TAKES)
def dc_gradient_step(x, maps, mask, AHy, gamma, is_2d):
    dft = row_dft_from_mask(mask, x.shape[-1])
    return _library().dc_gradient_step_triton(x, maps, dft.planar, AHy, gamma.detach().reshape(()))


@register("soft_kspace_dc", "triton", **_TAKES)
def soft_kspace_dc(k, y, mask, lam, is_2d):
    weight = mask_as_kspace_weight(mask, is_2d)[:, 0].to(torch.float32)
    return _library().soft_kspace_dc_triton(k, y, weight, lam.detach().reshape(()))


@register("sense_forward_compact", "triton", **_TAKES)
def sense_forward_compact(x, maps, columns):
    return _compact_forward(x, maps, row_dft_from_columns(columns, x.shape[-1]))


@register("sense_adjoint_compact", "triton", **_TAKES)
def sense_adjoint_compact(yc, maps, columns):
    return _compact_adjoint(yc, maps, row_dft_from_columns(columns, maps.shape[-1]))


@register("sr_data_solve", "triton", **_TAKES)
def sr_data_solve(fz, fay, otf, alpha, scale):
    return _library().sr_data_solve_triton(fz, fay, otf, alpha.detach(), scale)
