"""Pure-torch reference of every SENSE op: the oracle for tests and the ``naive`` benchmark provider.

Written the way fastMRI writes it (separate multiply, ifftshift, fft2, fftshift and mask passes) so
that it is obviously right; it runs in complex64 or complex128, on any device, with autograd.
Fast backends must match these functions; tests and benchmarks both import them from here.

Layouts as in :mod:`mbdlfast.ops.layouts`.
"""
from __future__ import annotations

import torch

from mbdlfast.ops.fft import fft2c, ifft2c
from mbdlfast.ops.layouts import from_compact, mask_as_kspace_weight, to_compact


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


def sense_forward_compact(x: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A x in compact form: fft2c(S·x) at the sampled columns only, (B,C,H,n_s)."""
    return to_compact(fft2c(coil_expand(x, maps)), columns)


def sense_adjoint_compact(yc: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A^H of compact k-space (B,C,H,n_s)."""
    return coil_reduce(ifft2c(from_compact(yc, columns, maps.shape[-1])), maps)


def alias_mean(spectrum: torch.Tensor, scale: int) -> torch.Tensor:
    """The mean of each frequency's scale² aliases (ω + (aH/s, bW/s)): (…,H,W) -> (…,H/s,W/s)."""
    height, width = spectrum.shape[-2:]
    blocks = spectrum.reshape(*spectrum.shape[:-2], scale, height // scale, scale, width // scale)
    return blocks.mean(dim=(-4, -2))


def sr_data_solve(fz: torch.Tensor, fay: torch.Tensor, otf: torch.Tensor, alpha: torch.Tensor,
                  scale: int) -> torch.Tensor:
    """The spectrum of argmin_x ‖(k ⊛ x)↓s − y‖² + α‖x − z‖² (USRNet's data module).

    ``fz`` = F z and ``fay`` = F Aᴴy are (B,C,H,W) full 2D spectra, ``otf`` the kernel's transfer
    function (Bk,H,W) with Bk in {1,B}, ``alpha`` (B,) real. With R = F Aᴴy + α F z and ⟨·⟩ the alias
    mean, X = (R − K̄ · ⟨K R⟩ / (α + ⟨|K|²⟩)) / α (Woodbury's identity on the rank-one alias blocks of
    AᴴA = K̄ ⟨K ·⟩; Zhao et al.'s fast single-image super-resolution).
    """
    alpha = alpha.reshape(-1, 1, 1, 1)
    otf = otf.unsqueeze(1)
    rhs = fay + alpha * fz
    weighted = alias_mean(otf * rhs, scale) / (alpha + alias_mean(otf.real.square() + otf.imag.square(), scale))
    return (rhs - otf.conj() * weighted.repeat(1, 1, scale, scale)) / alpha
