"""Pure-torch reference of every SENSE op: the oracle for tests and the ``naive`` benchmark provider.

Written the way fastMRI writes it (separate multiply, ifftshift, fft2, fftshift and mask passes) so
that it is obviously right; it runs in complex64 or complex128, on any device, with autograd.
Fast backends must match these functions; tests and benchmarks both import them from here.

Layouts: image x (B,H,W); k-space (B,C,H,W); maps (B,C,H,W) or (C,H,W); mask (W,), (B,W),
(H,W) or (B,H,W) of bool or real 0/1 values. Compact k-space keeps the sampled phase-encode lines
only, (B,C,H,n_s), in increasing column order.
"""
from __future__ import annotations

import torch

from mbdlfast.physics.fft import fft2c, ifft2c


def mask_as_kspace_weight(mask: torch.Tensor, is_2d: bool) -> torch.Tensor:
    """Broadcast a 1D (W,)/(B,W) or 2D (H,W)/(B,H,W) mask to (B|1, 1, H|1, W) for k-space products."""
    if is_2d:
        weight = mask if mask.dim() == 3 else mask.unsqueeze(0)
        weight = weight.unsqueeze(1)
    else:
        weight = mask if mask.dim() == 2 else mask.unsqueeze(0)
        weight = weight[:, None, None, :]
    return weight.to(torch.float64 if not weight.is_floating_point() else weight.dtype)


def coil_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """S·x: (B,H,W) image to (B,C,H,W) coil images."""
    return maps * x.unsqueeze(-3)


def coil_reduce(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·z_c: (B,C,H,W) coil images to a (B,H,W) image."""
    return (maps.conj() * z).sum(dim=-3)


def sense_forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A x = M · fft2c(S·x)."""
    weight = mask_as_kspace_weight(mask, is_2d).to(x.real.dtype)
    return weight * fft2c(coil_expand(x, maps))


def sense_adjoint(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H y = Σ_c conj(S_c)·ifft2c(M·y_c)."""
    weight = mask_as_kspace_weight(mask, is_2d).to(y.real.dtype)
    return coil_reduce(ifft2c(weight * y), maps)


def sense_normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H A x (the mask is idempotent, so one mask pass suffices)."""
    return sense_adjoint(sense_forward(x, maps, mask, is_2d), maps, mask, is_2d)


def dc_gradient_step(
    x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, AHy: torch.Tensor, gamma, is_2d: bool = False
) -> torch.Tensor:
    """Gradient data-consistency step x − γ·(A^H A x − A^H y), with A^H y precomputed."""
    return x - gamma * (sense_normal(x, maps, mask, is_2d) - AHy)


def soft_kspace_dc(k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, lam, is_2d: bool = False) -> torch.Tensor:
    """E2E-VarNet's soft data consistency k − λ·M·(k − y) on (B,C,H,W) k-space."""
    weight = mask_as_kspace_weight(mask, is_2d).to(k.real.dtype)
    return k - lam * weight * (k - y)


def sampled_columns(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the sampled columns of a 1D mask: (n_s,) for (W,), (B,n_s) for (B,W).

    Compact k-space needs the same number of sampled lines in every batch entry.
    """
    sampled = mask != 0
    if mask.dim() == 1:
        return torch.nonzero(sampled).flatten()
    counts = sampled.sum(dim=-1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"mask: compact k-space needs the same number of sampled lines per batch entry, got {counts.tolist()}")
    return torch.nonzero(sampled)[:, 1].reshape(mask.shape[0], -1)


def to_compact(k: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Keep the sampled columns of full (B,C,H,W) k-space: (B,C,H,n_s)."""
    if columns.dim() == 1:
        return k[..., columns]
    index = columns[:, None, None, :].expand(k.shape[0], k.shape[1], k.shape[2], -1)
    return torch.gather(k, -1, index)


def from_compact(kc: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-fill compact (B,C,H,n_s) k-space back to the full (B,C,H,W) grid: the adjoint of
    :func:`to_compact`, so values at a repeated column add up."""
    full = kc.new_zeros(*kc.shape[:-1], width)
    index = columns if columns.dim() == 2 else columns.unsqueeze(0)
    index = index[:, None, None, :].expand(kc.shape)
    return full.scatter_add(-1, index, kc)


def sense_forward_compact(x: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A x in compact form: fft2c(S·x) at the sampled columns only, (B,C,H,n_s)."""
    return to_compact(fft2c(coil_expand(x, maps)), columns)


def sense_adjoint_compact(yc: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A^H of compact k-space (B,C,H,n_s)."""
    return coil_reduce(ifft2c(from_compact(yc, columns, maps.shape[-1])), maps)
