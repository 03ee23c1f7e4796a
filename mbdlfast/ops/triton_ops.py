"""Triton backend of the public SENSE ops: checks, cached constants and the path each case takes.

Same signatures as :mod:`mbdlfast.ops.reference`. complex64 inputs with a 1D mask run the fused
Triton ops of :mod:`mbdlfast.ops.triton_library` (loaded, with Triton, on first use only):

* A^H A and the gradient DC step: one fused kernel, no transform along H at all.
* A / A^H (compact or full): the W-direction DFT at the sampled columns by matmul inside the
  coil-expand / coil-reduce kernel (compact (B,C,H,n_s) rows directly), then a plain FFT along H
  (cuFFT on GPU) centred by the modulation identity, the pre-modulation folded into the kernel and
  the post-modulation one multiply on the compact (n_s/W-sized) data. A DFT-by-matmul along H
  would cost O(H) per output instead of O(log H); full k-space is the compact result zero-filled.
* soft k-space DC: one elementwise kernel for 1D and 2D masks.

Cases the kernels do not cover fall back to the reference: 2D masks for A, A^H, A^H A and the DC
step, complex128 data, and a step size γ or λ that is not a single real number.
"""
from __future__ import annotations

import importlib
import numbers

import torch

from mbdlfast import _validation as check
from mbdlfast.ops import reference
from mbdlfast.ops.centred_dft import centring_phases, row_dft_from_columns, row_dft_from_mask
from mbdlfast.ops.dispatch import register


def _library():
    """The torch.library ops (imports Triton on the first call)."""
    return importlib.import_module("mbdlfast.ops.triton_library")


def _check_image(name: str, x) -> torch.Tensor:
    check.check_complex(name, x)
    return check.check_ndim(name, x, (3,), "a (B,H,W) image")


def _check_kspace(name: str, k) -> torch.Tensor:
    check.check_complex(name, k)
    return check.check_ndim(name, k, (4,), "(B,C,H,W) k-space")


def _maps_4d(maps, batch: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """(C,H,W) or (1|B,C,H,W) maps as (Bm,C,H,W)."""
    check.check_complex("maps", maps, dtype)
    check.check_ndim("maps", maps, (3, 4), "(C,H,W) or (B,C,H,W) coil maps")
    maps4 = maps.unsqueeze(0) if maps.dim() == 3 else maps
    if maps4.shape[0] not in (1, batch) or tuple(maps4.shape[2:]) != (height, width):
        raise ValueError(f"maps: expected shape (C,{height},{width}) or (1|{batch},C,{height},{width}) to match the "
                         f"data, got {tuple(maps.shape)}")
    return maps4


def _image_and_maps(x, maps) -> tuple[int, int, int, torch.Tensor]:
    """(B, H, W, maps as (Bm,C,H,W)) of an image x (B,H,W) and its coil maps, both checked."""
    batch, height, width = _check_image("x", x).shape
    return batch, height, width, _maps_4d(maps, batch, height, width, x.dtype)


def _kspace_and_maps(name: str, k, maps) -> tuple[int, int, int, int, torch.Tensor]:
    """(B, C, H, W, maps as (Bm,C,H,W)) of k-space ``name`` (B,C,H,W) and its coil maps, both checked."""
    batch, coils, height, width = _check_kspace(name, k).shape
    maps4 = _maps_4d(maps, batch, height, width, k.dtype)
    if maps4.shape[1] != coils:
        raise ValueError(f"maps: expected {coils} coils to match {name}, got {maps4.shape[1]}")
    return batch, coils, height, width, maps4


def _check_mask_1d(mask, batch: int, width: int) -> torch.Tensor:
    check.check_tensor("mask", mask)
    if mask.is_complex():
        raise TypeError(f"mask: expected bool or real 0/1 values, got {mask.dtype}")
    check.check_ndim("mask", mask, (1, 2), "a 1D mask (W,) or (B,W)")
    if mask.shape[-1] != width or (mask.dim() == 2 and mask.shape[0] not in (1, batch)):
        raise ValueError(f"mask: expected shape ({width},) or (1|{batch},{width}), got {tuple(mask.shape)}")
    return mask


def _check_columns(columns, batch: int, width: int) -> torch.Tensor:
    check.check_tensor("columns", columns)
    if columns.dtype.is_floating_point or columns.is_complex() or columns.dtype == torch.bool:
        raise TypeError(f"columns: expected integer column indices, got {columns.dtype}")
    check.check_ndim("columns", columns, (1, 2), "sampled column indices (n_s,) or (B,n_s)")
    if columns.dim() == 2 and columns.shape[0] not in (1, batch):
        raise ValueError(f"columns: expected (n_s,) or (1|{batch},n_s), got {tuple(columns.shape)}")
    if columns.numel() and (int(columns.min()) < 0 or int(columns.max()) >= width):
        raise ValueError(f"columns: indices must lie in [0, {width}), got range "
                         f"[{int(columns.min())}, {int(columns.max())}]")
    return columns


def _real_scalar(value, device: torch.device) -> torch.Tensor | None:
    """A real step size as a 0-d tensor on ``device`` (keeping autograd), or None if it is not one number."""
    if isinstance(value, numbers.Real):
        return torch.tensor(float(value), dtype=torch.float32, device=device)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype.is_floating_point:
        return value.reshape(()).to(device)
    return None


def _sampled_index(columns: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(Bm,n_s) column indices expanded to a (B,C,H,n_s) gather/scatter index."""
    return columns[:, None, None, :].expand(shape[0], shape[1], shape[2], columns.shape[-1])


def _compact_forward(x, maps4, dft) -> torch.Tensor:
    phases = centring_phases(x.shape[-2], x.device)
    rows = _library().row_dft_forward_triton(x, maps4, dft.planar, phases.pre)
    if rows.numel() == 0:  # nothing sampled (the FFT rejects empty batches)
        return rows
    return torch.fft.fft(rows, dim=-2, norm="ortho") * phases.post[:, None]


def _compact_adjoint(yc, maps4, dft) -> torch.Tensor:
    phases = centring_phases(yc.shape[-2], yc.device)
    rows = yc if yc.numel() == 0 else torch.fft.ifft(yc * phases.pre_inverse[:, None], dim=-2, norm="ortho")
    return _library().row_dft_adjoint_triton(rows, maps4, dft.planar, phases.post_inverse)


@register("coil_expand", "triton")
def coil_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """S·x."""
    batch, height, width, maps4 = _image_and_maps(x, maps)
    check.check_same_device(x=x, maps=maps)
    if x.dtype != torch.complex64:
        return reference.coil_expand(x, maps)
    return _library().coil_expand_triton(x, maps4)


@register("coil_reduce", "triton")
def coil_reduce(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·z_c."""
    batch, coils, height, width, maps4 = _kspace_and_maps("z", z, maps)
    check.check_same_device(z=z, maps=maps)
    if z.dtype != torch.complex64:
        return reference.coil_reduce(z, maps)
    return _library().coil_reduce_triton(z, maps4)


@register("sense_forward", "triton")
def sense_forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A x on full (B,C,H,W) k-space."""
    batch, height, width, maps4 = _image_and_maps(x, maps)
    check.check_same_device(x=x, maps=maps, mask=mask)
    if is_2d or x.dtype != torch.complex64:
        return reference.sense_forward(x, maps, mask, is_2d)
    dft = row_dft_from_mask(_check_mask_1d(mask, batch, width), width)
    compact = _compact_forward(x, maps4, dft)
    full = compact.new_zeros((batch, maps4.shape[1], height, width))
    return full.scatter(-1, _sampled_index(dft.columns, compact.shape), compact)


@register("sense_adjoint", "triton")
def sense_adjoint(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H y for full (B,C,H,W) k-space."""
    batch, coils, height, width, maps4 = _kspace_and_maps("y", y, maps)
    check.check_same_device(y=y, maps=maps, mask=mask)
    if is_2d or y.dtype != torch.complex64:
        return reference.sense_adjoint(y, maps, mask, is_2d)
    dft = row_dft_from_mask(_check_mask_1d(mask, batch, width), width)
    compact = torch.gather(y, -1, _sampled_index(dft.columns, y.shape))
    return _compact_adjoint(compact, maps4, dft)


@register("sense_normal", "triton")
def sense_normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H A x, one fused kernel for a 1D mask."""
    batch, height, width, maps4 = _image_and_maps(x, maps)
    check.check_same_device(x=x, maps=maps, mask=mask)
    if is_2d or x.dtype != torch.complex64:
        return reference.sense_normal(x, maps, mask, is_2d)
    dft = row_dft_from_mask(_check_mask_1d(mask, batch, width), width)
    return _library().sense_normal_triton(x, maps4, dft.planar)


@register("dc_gradient_step", "triton")
def dc_gradient_step(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, AHy: torch.Tensor, gamma,
                     is_2d: bool = False) -> torch.Tensor:
    """x − γ·(A^H A x − A^H y), one fused kernel for a 1D mask and a scalar γ."""
    batch, height, width, maps4 = _image_and_maps(x, maps)
    check.check_complex("AHy", AHy, x.dtype)
    check.check_shape("AHy", AHy, tuple(x.shape), "the image layout (B,H,W)")
    check.check_same_device(x=x, maps=maps, mask=mask, AHy=AHy)
    step = _real_scalar(gamma, x.device)
    if is_2d or x.dtype != torch.complex64 or step is None:
        return reference.dc_gradient_step(x, maps, mask, AHy, gamma, is_2d)
    dft = row_dft_from_mask(_check_mask_1d(mask, batch, width), width)
    return _library().dc_gradient_step_triton(x, maps4, dft.planar, AHy, step)


def _mask_weight(mask, shape: torch.Size, is_2d: bool) -> torch.Tensor:
    """A mask as float32 (Bw,Hw,W) for the soft-DC kernel, after checking it against (B,C,H,W)."""
    batch, _, height, width = shape
    check.check_tensor("mask", mask)
    if mask.is_complex():
        raise TypeError(f"mask: expected bool or real 0/1 values, got {mask.dtype}")
    if not is_2d:
        return _check_mask_1d(mask, batch, width).reshape(-1, 1, width).to(torch.float32)
    check.check_ndim("mask", mask, (2, 3), "a 2D mask (H,W) or (B,H,W)")
    if tuple(mask.shape[-2:]) != (height, width) or (mask.dim() == 3 and mask.shape[0] not in (1, batch)):
        raise ValueError(f"mask: expected shape ({height},{width}) or (1|{batch},{height},{width}), "
                         f"got {tuple(mask.shape)}")
    return mask.reshape(-1, height, width).to(torch.float32)


@register("soft_kspace_dc", "triton")
def soft_kspace_dc(k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, lam, is_2d: bool = False) -> torch.Tensor:
    """k − λ·M·(k − y) in one elementwise pass (1D and 2D masks)."""
    _check_kspace("k", k)
    check.check_complex("y", y, k.dtype)
    check.check_shape("y", y, tuple(k.shape), "k-space (B,C,H,W) like k")
    check.check_same_device(k=k, y=y, mask=mask)
    weight = _mask_weight(mask, k.shape, is_2d)
    step = _real_scalar(lam, k.device)
    if k.dtype != torch.complex64 or step is None:
        return reference.soft_kspace_dc(k, y, mask, lam, is_2d)
    return _library().soft_kspace_dc_triton(k, y, weight, step)


@register("sense_forward_compact", "triton")
def sense_forward_compact(x: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A x at the sampled columns only: (B,C,H,n_s)."""
    batch, height, width, maps4 = _image_and_maps(x, maps)
    check.check_same_device(x=x, maps=maps, columns=columns)
    _check_columns(columns, batch, width)
    if x.dtype != torch.complex64:
        return reference.sense_forward_compact(x, maps, columns)
    return _compact_forward(x, maps4, row_dft_from_columns(columns, width))


@register("sense_adjoint_compact", "triton")
def sense_adjoint_compact(yc: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A^H of compact (B,C,H,n_s) k-space."""
    batch, coils, height, num_sampled = _check_kspace("yc", yc).shape
    check.check_complex("maps", maps, yc.dtype)
    check.check_ndim("maps", maps, (3, 4), "(C,H,W) or (B,C,H,W) coil maps")
    maps4 = _maps_4d(maps, batch, height, maps.shape[-1], yc.dtype)
    width = maps4.shape[-1]
    check.check_same_device(yc=yc, maps=maps, columns=columns)
    _check_columns(columns, batch, width)
    if maps4.shape[1] != coils or columns.shape[-1] != num_sampled:
        raise ValueError(f"yc: expected (B,{maps4.shape[1]},H,{columns.shape[-1]}) to match maps and columns, "
                         f"got {tuple(yc.shape)}")
    if yc.dtype != torch.complex64:
        return reference.sense_adjoint_compact(yc, maps, columns)
    return _compact_adjoint(yc, maps4, row_dft_from_columns(columns, width))
