"""The Triton kernels' launches as ``torch.library`` ops (``torch.ops.mbdlfast_triton.*``).

Importing this module imports Triton; :mod:`mbdlfast.ops.triton_ops` loads it on first use only.
Ops take complex64 tensors in the layouts the kernels expect (maps always 4-D (Bm,C,H,W), Bm in
{1,B}; the DFT operand planar float32 (Bm,2,n_s,W) from :mod:`mbdlfast.ops.centred_dft`) and
make their inputs contiguous. They are forward kernels only: gradients are the public ops' own
(:mod:`mbdlfast.ops.definitions`).

Each op's launch is built by a ``*_launch`` function returning a
:class:`~mbdlfast.ops.triton_launch.TritonLaunch` and the output: the op runs it,
:mod:`mbdlfast.gpu_report` compiles it ahead of time from meta tensors. The row-DFT ops take the
dot precision (``"ieee"`` default, ``"tf32x3"``).
"""
from __future__ import annotations

import torch
import triton
from torch.library import triton_op, wrap_triton

from mbdlfast.kernels.coil_triton import coil_expand_kernel, coil_reduce_kernel
from mbdlfast.kernels.kspace_dc_triton import soft_kspace_dc_kernel
from mbdlfast.kernels.row_dft_triton import (launch_config, row_dft_adjoint_kernel, row_dft_forward_kernel,
                                             sense_normal_kernel)
from mbdlfast.kernels.sr_data_triton import sr_data_solve_kernel
from mbdlfast.ops.triton_launch import TritonLaunch
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


def coil_expand_launch(x: torch.Tensor, maps: torch.Tensor) -> tuple[TritonLaunch, torch.Tensor]:
    batch, height, width = x.shape
    out = x.new_empty((batch, maps.shape[1], height, width))
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch)
    return TritonLaunch(coil_expand_kernel, grid, (_planes(x), _planes(maps), torch.view_as_real(out), maps.shape[1],
                                                   height * width, _maps_batch_stride(maps)),
                        {"BLOCK": _PIXEL_BLOCK}), out


def coil_reduce_launch(z: torch.Tensor, maps: torch.Tensor) -> tuple[TritonLaunch, torch.Tensor]:
    batch, coils, height, width = z.shape
    out = z.new_empty((batch, height, width))
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch)
    return TritonLaunch(coil_reduce_kernel, grid, (_planes(z), _planes(maps), torch.view_as_real(out), coils,
                                                   height * width, _maps_batch_stride(maps)),
                        {"BLOCK": _PIXEL_BLOCK}), out


def _run(built: tuple[TritonLaunch, torch.Tensor]) -> torch.Tensor:
    """Run a built launch inside a triton_op and return its output."""
    launch, out = built
    launch.run(wrap_triton)
    return out


@triton_op("mbdlfast_triton::coil_expand", mutates_args={})
def coil_expand_triton(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    return _run(coil_expand_launch(x, maps))


@triton_op("mbdlfast_triton::coil_reduce", mutates_args={})
def coil_reduce_triton(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    return _run(coil_reduce_launch(z, maps))


# ---- W-direction DFT rows at the sampled columns (A and A^H without the H-direction transform) -------------


def row_dft_forward_launch(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, phase: torch.Tensor | None,
                           precision: str) -> tuple[TritonLaunch, torch.Tensor]:
    batch, height, width = x.shape
    coils, num_sampled = maps.shape[1], dft.shape[2]
    out = x.new_empty((batch, coils, height, num_sampled))
    grid, meta = launch_config(batch, coils, height, num_sampled, precision)
    phase_planes = _planes(phase) if phase is not None else torch.view_as_real(out)
    args = (_planes(x), _planes(maps), dft.contiguous(), phase_planes, torch.view_as_real(out), coils, height, width,
            num_sampled, _maps_batch_stride(maps), _dft_batch_stride(dft))
    return TritonLaunch(row_dft_forward_kernel, grid, args, {"HAS_PHASE": phase is not None, **meta}), out


def row_dft_adjoint_launch(z: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, phase: torch.Tensor | None,
                           precision: str) -> tuple[TritonLaunch, torch.Tensor]:
    batch, coils, height, num_sampled = z.shape
    width = maps.shape[-1]
    out = z.new_zeros((batch, height, width))  # the kernel adds the coils in by atomics
    grid, meta = launch_config(batch, coils, height, num_sampled, precision)
    phase_planes = _planes(phase) if phase is not None else torch.view_as_real(out)
    args = (_planes(z), _planes(maps), dft.contiguous(), phase_planes, torch.view_as_real(out), coils, height, width,
            num_sampled, _maps_batch_stride(maps), _dft_batch_stride(dft))
    return TritonLaunch(row_dft_adjoint_kernel, grid, args, {"HAS_PHASE": phase is not None, **meta}), out


def sense_normal_launch(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, ahy: torch.Tensor | None,
                        gamma: torch.Tensor | None, precision: str) -> tuple[TritonLaunch, torch.Tensor]:
    """A^H A x, or the gradient DC step x − γ(A^H A x − A^H y) when ``ahy`` and ``gamma`` are given."""
    batch, height, width = x.shape
    coils, num_sampled = maps.shape[1], dft.shape[2]
    out = torch.zeros_like(x)  # the kernel adds the coils in by atomics
    scratch = x.new_empty((batch, coils, height, num_sampled))
    dc_step = ahy is not None
    grid, meta = launch_config(batch, coils, height, num_sampled, precision)
    args = (_planes(x), _planes(maps), dft.contiguous(), torch.view_as_real(scratch),
            _planes(ahy) if dc_step else _planes(x), gamma.to(torch.float32).contiguous() if dc_step else dft,
            torch.view_as_real(out), coils, height, width, num_sampled, _maps_batch_stride(maps),
            _dft_batch_stride(dft))
    return TritonLaunch(sense_normal_kernel, grid, args, {"DC_STEP": dc_step, **meta}), out


@triton_op("mbdlfast_triton::row_dft_forward", mutates_args={})
def row_dft_forward_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, phase: torch.Tensor | None = None,
                           precision: str = "ieee") -> torch.Tensor:
    """z[b,c,h,:] = phase[h] · F_s (S[c,h,:] · x[b,h,:]) → (B,C,H,n_s)."""
    return _run(row_dft_forward_launch(x, maps, dft, phase, precision))


@triton_op("mbdlfast_triton::row_dft_adjoint", mutates_args={})
def row_dft_adjoint_triton(z: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, phase: torch.Tensor | None = None,
                           precision: str = "ieee") -> torch.Tensor:
    """x[b,h,:] = phase[h] · Σ_c conj(S[c,h,:]) · F_s^H z[b,c,h,:] → (B,H,W)."""
    return _run(row_dft_adjoint_launch(z, maps, dft, phase, precision))


# ---- fused normal operator and gradient DC step ---------------------------------------------------------


@triton_op("mbdlfast_triton::sense_normal", mutates_args={})
def sense_normal_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor,
                        precision: str = "ieee") -> torch.Tensor:
    """A^H A x for a 1D mask, fused (the H-direction transforms cancel)."""
    return _run(sense_normal_launch(x, maps, dft, None, None, precision))


@triton_op("mbdlfast_triton::dc_gradient_step", mutates_args={})
def dc_gradient_step_triton(x: torch.Tensor, maps: torch.Tensor, dft: torch.Tensor, ahy: torch.Tensor,
                            gamma: torch.Tensor, precision: str = "ieee") -> torch.Tensor:
    """x − γ(A^H A x − A^H y) for a 1D mask, fused; γ a one-element real tensor."""
    return _run(sense_normal_launch(x, maps, dft, ahy, gamma, precision))


# ---- soft k-space data consistency ---------------------------------------------------------------------


def soft_kspace_dc_launch(k: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                          lam: torch.Tensor) -> tuple[TritonLaunch, torch.Tensor]:
    batch, coils, height, width = k.shape
    weight = weight.contiguous()
    out = torch.empty_like(k)
    strides = [0 if weight.shape[i] == 1 else weight.stride(i) for i in range(3)]
    grid = (triton.cdiv(height * width, _PIXEL_BLOCK), batch * coils)
    args = (_planes(k), _planes(y), weight, lam.to(torch.float32).contiguous(), torch.view_as_real(out), coils, height,
            width, *strides)
    return TritonLaunch(soft_kspace_dc_kernel, grid, args, {"BLOCK": _PIXEL_BLOCK}), out


@triton_op("mbdlfast_triton::soft_kspace_dc", mutates_args={})
def soft_kspace_dc_triton(k: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """k − λ·w·(k − y); ``weight`` float32 (Bw,Hw,W) with Bw in {1,B}, Hw in {1,H}; λ one element."""
    return _run(soft_kspace_dc_launch(k, y, weight, lam))


# ---- super-resolution data step (USRNet's data module) ------------------------------------------------


def sr_data_solve_launch(fz: torch.Tensor, fay: torch.Tensor, otf: torch.Tensor, alpha: torch.Tensor,
                         scale: int) -> tuple[TritonLaunch, torch.Tensor]:
    """One low-resolution frequency per thread from scale 2 on: each holds its s² aliases between the two
    visits, and at s = 4 two per thread spill at sm_80 (gpu_report)."""
    batch, channels, height, width = fz.shape
    out = torch.empty_like(fz)
    otf = otf.contiguous()
    block = _PIXEL_BLOCK if scale == 1 else _PIXEL_BLOCK // 2
    grid = (triton.cdiv(height * width // (scale * scale), block), batch * channels)
    args = (_planes(fz), _planes(fay), torch.view_as_real(otf), alpha.to(torch.float32).contiguous(),
            torch.view_as_real(out), channels, height, width, 0 if otf.shape[0] == 1 else height * width)
    return TritonLaunch(sr_data_solve_kernel, grid, args, {"SCALE": scale, "BLOCK": block}), out


@triton_op("mbdlfast_triton::sr_data_solve", mutates_args={})
def sr_data_solve_triton(fz: torch.Tensor, fay: torch.Tensor, otf: torch.Tensor, alpha: torch.Tensor,
                         scale: int) -> torch.Tensor:
    """(F Aᴴy + α F z − K̄·⟨K R⟩/(α + ⟨|K|²⟩)) / α; otf (Bk,H,W) with Bk in {1,B}, α (B,) real."""
    return _run(sr_data_solve_launch(fz, fay, otf, alpha, scale))
