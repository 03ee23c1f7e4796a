"""The Triton kernels' launches as ``torch.library`` ops (``torch.ops.mbdlfast_triton.*``).

Importing this module imports Triton; :mod:`mbdlfast.ops.triton_ops` loads it on first use only.
Ops take complex64 tensors in the layouts the kernels expect (maps always 4-D (Bm,C,H,W), Bm in
{1,B}; the DFT operand planar float32 (Bm,2,n_s,W) from :mod:`mbdlfast.ops.centred_dft`) and
make their inputs contiguous. They are forward kernels only: gradients are the public ops' own
(:mod:`mbdlfast.ops.definitions`).
"""
from __future__ import annotations

import torch
import triton
from torch.library import triton_op, wrap_triton

from mbdlfast.kernels.coil_triton import coil_expand_kernel, coil_reduce_kernel
from mbdlfast.kernels.kspace_dc_triton import soft_kspace_dc_kernel
from mbdlfast.kernels.row_dft_triton import (block_sizes, row_dft_adjoint_kernel, row_dft_forward_kernel,
                                             sense_normal_kernel)

_PIXEL_BLOCK = 256


def _planes(t: torch.Tensor) -> torch.Tensor:
    """float32 interleaved view of a contiguous complex64 tensor."""
    return torch.view_as_real(t.contiguous())


def _maps_batch_stride(maps: torch.Tensor) -> int:
    """Complex-element stride between batch entries of (Bm,C,H,W) maps; 0 when shared."""
    return 0 if maps.shape[0] == 1 else maps[0].numel()


def _dft_batch_stride(dft: torch.Tensor) -> int:
    return 0 if dft.shape[0] == 1 else dft[0].numel()


# ---- coil expand / reduce -------------------------------------------------------------------------------


@triton_op("mbdlfast_triton::coil_expand", mutates_args={})
def coil_expand_triton(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    batch, height, width = x.shape
    out = x.new_empty((batch, maps.shape[1], height, width))
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch)
    wrap_triton(coil_expand_kernel)[grid](_planes(x), _planes(maps), torch.view_as_real(out), maps.shape[1],
                                          height * width, _maps_batch_stride(maps), BLOCK=_PIXEL_BLOCK)
    return out


@triton_op("mbdlfast_triton::coil_reduce", mutates_args={})
def coil_reduce_triton(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    batch, coils, height, width = z.shape
    out = z.new_empty((batch, height, width))
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch)
    wrap_triton(coil_reduce_kernel)[grid](_planes(z), _planes(maps), torch.view_as_real(out), coils,
                                          height * width, _maps_batch_stride(maps), BLOCK=_PIXEL_BLOCK)
    return out


# ---- W-direction DFT rows at the sampled columns (A and A^H without the H-direction transform) -------------


@triton_op("mbdlfast_triton::row_dft_forward", mutates_args={})
def row_dft_forward_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor,
                           phase: torch.Tensor | None = None) -> torch.Tensor:
    """z[b,c,h,:] = phase[h] · F_s (S[c,h,:] · x[b,h,:]) → (B,C,H,n_s)."""
    batch, height, width = x.shape
    coils, num_sampled = maps.shape[1], dft.shape[2]
    out = x.new_empty((batch, coils, height, num_sampled))
    blocks = block_sizes(num_sampled)
    grid = (triton.cdiv(height, blocks["BLOCK_H"]), batch)
    phase_planes = _planes(phase) if phase is not None else torch.view_as_real(out)
    wrap_triton(row_dft_forward_kernel)[grid](
        _planes(x), _planes(maps), dft.contiguous(), phase_planes, torch.view_as_real(out), coils, height, width,
        num_sampled, _maps_batch_stride(maps), _dft_batch_stride(dft), HAS_PHASE=phase is not None, **blocks)
    return out


@triton_op("mbdlfast_triton::row_dft_adjoint", mutates_args={})
def row_dft_adjoint_triton(z: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor,
                           phase: torch.Tensor | None = None) -> torch.Tensor:
    """x[b,h,:] = phase[h] · Σ_c conj(S[c,h,:]) · F_s^H z[b,c,h,:] → (B,H,W)."""
    batch, coils, height, num_sampled = z.shape
    width = maps.shape[-1]
    out = z.new_empty((batch, height, width))
    blocks = block_sizes(num_sampled)
    grid = (triton.cdiv(height, blocks["BLOCK_H"]), batch)
    phase_planes = _planes(phase) if phase is not None else torch.view_as_real(out)
    wrap_triton(row_dft_adjoint_kernel)[grid](
        _planes(z), _planes(maps), dft.contiguous(), phase_planes, torch.view_as_real(out), coils, height, width,
        num_sampled, _maps_batch_stride(maps), _dft_batch_stride(dft), HAS_PHASE=phase is not None, **blocks)
    return out


# ---- fused normal operator and gradient DC step ---------------------------------------------------------


def _launch_normal(x, maps, dft, ahy, gamma, dc_step: bool) -> torch.Tensor:
    batch, height, width = x.shape
    coils, num_sampled = maps.shape[1], dft.shape[2]
    out = torch.empty_like(x)
    scratch = x.new_empty((batch, coils, height, num_sampled))
    blocks = block_sizes(num_sampled)
    grid = (triton.cdiv(height, blocks["BLOCK_H"]), batch)
    wrap_triton(sense_normal_kernel)[grid](
        _planes(x), _planes(maps), dft.contiguous(), torch.view_as_real(scratch), _planes(ahy),
        gamma.to(torch.float32).contiguous(), torch.view_as_real(out), coils, height, width, num_sampled,
        _maps_batch_stride(maps), _dft_batch_stride(dft), DC_STEP=dc_step, **blocks)
    return out


@triton_op("mbdlfast_triton::sense_normal", mutates_args={})
def sense_normal_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor) -> torch.Tensor:
    """A^H A x for a 1D mask, fused (the H-direction transforms cancel)."""
    return _launch_normal(x, maps, dft, x, dft, dc_step=False)


@triton_op("mbdlfast_triton::dc_gradient_step", mutates_args={})
def dc_gradient_step_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, ahy: torch.Tensor,
                            gamma: torch.Tensor) -> torch.Tensor:
    """x − γ(A^H A x − A^H y) for a 1D mask, fused; γ a one-element real tensor."""
    return _launch_normal(x, maps, dft, ahy, gamma, dc_step=True)


# ---- soft k-space data consistency ---------------------------------------------------------------------


@triton_op("mbdlfast_triton::soft_kspace_dc", mutates_args={})
def soft_kspace_dc_triton(k: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """k − λ·w·(k − y); ``weight`` float32 (Bw,Hw,W) with Bw in {1,B}, Hw in {1,H}; λ one element."""
    batch, coils, height, width = k.shape
    weight = weight.contiguous()
    out = torch.empty_like(k)
    strides = [0 if weight.shape[i] == 1 else weight.stride(i) for i in range(3)]
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch * coils)
    wrap_triton(soft_kspace_dc_kernel)[grid](
        _planes(k), _planes(y), weight, lam.to(torch.float32).contiguous(), torch.view_as_real(out), coils, height,
        width, *strides, BLOCK=_PIXEL_BLOCK)
    return out
