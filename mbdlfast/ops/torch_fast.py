"""Fast pure-torch SENSE ops (backend ``torch``): no fftshift copies, 1D transforms for 1D masks.

Centring by modulation (:func:`mbdlfast.ops.fft.centring_phases`, q on the input, p on the output):
the input modulation q is applied to the small image x before the coil expansion, the output
modulation p rides on the mask pass, so the k-space tensors see no extra pass. For a 1D mask along W the normal operator needs no transform along H at all:
    A^H A x = Σ_c conj(S_c) · IFFT_W(M' · FFT_W(S_c · x)),  M' = ifftshift(M)²
(the modulations cancel). Same signatures and semantics as :mod:`mbdlfast.ops.reference`; this
backend takes every input the ops define.
"""
from __future__ import annotations

import torch

from mbdlfast.ops.dispatch import register
from mbdlfast.ops.fft import centring_phases, phase_grid, real_dtype
from mbdlfast.ops.layouts import mask_as_kspace_weight


def is_one_dimensional(mask: torch.Tensor, is_2d: bool) -> bool:
    return not is_2d and mask.dim() in (1, 2)


def _output_weight(mask: torch.Tensor, is_2d: bool, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """M · p_H ⊗ p_W, broadcastable to (B,C,H,W): mask and output modulation in one factor."""
    real = mask_as_kspace_weight(mask, is_2d).to(real_dtype(dtype))
    return real * phase_grid(height, width, mask.device, dtype, output=True)


def _coil_reduce(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·z_c, accumulated coil by coil into one image-sized buffer.

    On CPU this is several times faster than a product-then-sum or vecdot over the coil dim, which
    materialise or re-read a (B,C,H,W) temporary.
    """
    maps = maps if maps.dim() == 4 else maps.unsqueeze(0)
    out = maps[:, 0].conj() * z[:, 0]
    for coil in range(1, z.shape[1]):
        out.addcmul_(maps[:, coil].conj(), z[:, coil])
    return out


def sense_forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A x = M · fft2c(S·x), computed as (M·p) · FFT2(S · q·x)."""
    height, width = x.shape[-2:]
    k = torch.fft.fft2(maps * (x * phase_grid(height, width, x.device, x.dtype, output=False)).unsqueeze(-3), norm="ortho")
    return k * _output_weight(mask, is_2d, height, width, x.dtype)


def _unmodulated_coil_images(y: torch.Tensor, mask: torch.Tensor, is_2d: bool) -> torch.Tensor:
    """IFFT2(conj(M·p) · y): the coil images of A^H y before the input modulation conj(q)."""
    height, width = y.shape[-2:]
    return torch.fft.ifft2(y * _output_weight(mask, is_2d, height, width, y.dtype).conj(), norm="ortho")


def adjoint_coil_images(y: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """ifft2c(M·y) per coil, (B,C,H,W): A^H y before the coil reduction (for gradients w.r.t. the maps)."""
    height, width = y.shape[-2:]
    return _unmodulated_coil_images(y, mask, is_2d) * phase_grid(height, width, y.device, y.dtype, output=False).conj()


def sense_adjoint(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H y = conj(q) · Σ_c conj(S_c) · IFFT2(conj(M·p) · y_c)."""
    height, width = y.shape[-2:]
    z = _unmodulated_coil_images(y, mask, is_2d)
    return _coil_reduce(z, maps) * phase_grid(height, width, y.device, y.dtype, output=False).conj()


def circulant_weight(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ifftshift(M)² as a real (B|1, W) tensor: the uncentred weight of F_W^H M F_W (M applied twice)."""
    weight = mask_as_kspace_weight(mask, False)[:, 0, 0, :]
    weight = torch.fft.ifftshift(weight, dim=-1)
    return (weight * weight).to(real_dtype(dtype))


def apply_circulant(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """IFFT_W(weight · FFT_W(z)) on (B,C,H,W) with a (B|1,W) real weight."""
    spectrum = torch.fft.fft(z, dim=-1)
    spectrum.mul_(weight[:, None, None, :])
    return torch.fft.ifft(spectrum, dim=-1)


def sense_normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, is_2d: bool = False) -> torch.Tensor:
    """A^H A x; with a 1D mask only 1D FFTs along W and no modulations."""
    if not is_one_dimensional(mask, is_2d):
        return sense_adjoint(sense_forward(x, maps, mask, is_2d), maps, mask, is_2d)
    z = maps * x.unsqueeze(-3)
    return _coil_reduce(apply_circulant(z, circulant_weight(mask, x.dtype)), maps)


def dc_gradient_step(x, maps, mask, AHy, gamma, is_2d: bool = False):
    """x − γ·(A^H A x − A^H y)."""
    return x - gamma * (sense_normal(x, maps, mask, is_2d) - AHy)


def soft_kspace_dc(k, y, mask, lam, is_2d: bool = False):
    """k − λ·M·(k − y), with λ·M formed on the small mask rather than on k-space."""
    weight = mask_as_kspace_weight(mask, is_2d).to(k.real.dtype)
    return k - (lam * weight) * (k - y)


def sense_forward_compact(x: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """fft2c(S·x) at the sampled columns: FFT along W, keep n_s columns, FFT along H on those only."""
    height, width = x.shape[-2:]
    q_h, p_h = centring_phases(height, x.device, x.dtype)
    q_w, p_w = centring_phases(width, x.device, x.dtype)
    rows = torch.fft.fft(maps * (x * (q_h[:, None] * q_w)).unsqueeze(-3), dim=-1, norm="ortho")
    if columns.dim() == 1:
        kept = rows[..., columns] * p_w[columns]
    else:
        index = columns[:, None, None, :].expand(rows.shape[0], rows.shape[1], height, -1)
        kept = torch.gather(rows, -1, index) * p_w[columns][:, None, None, :]
    return torch.fft.fft(kept, dim=-2, norm="ortho") * p_h[:, None]


def _unmodulated_compact_coil_images(yc: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """IFFT along H on the n_s columns, zero-fill, IFFT along W: coil images before conj(q)."""
    height = yc.shape[-2]
    _, p_h = centring_phases(height, yc.device, yc.dtype)
    _, p_w = centring_phases(width, yc.device, yc.dtype)
    kept = torch.fft.ifft(yc * p_h.conj()[:, None], dim=-2, norm="ortho")
    phased = p_w.conj()[columns]
    kept = kept * (phased if columns.dim() == 1 else phased[:, None, None, :])
    full = kept.new_zeros(*kept.shape[:-1], width)  # zero-fill; a repeated column adds up (adjoint of a gather)
    if columns.dim() == 1:
        full = full.index_add(-1, columns, kept)
    else:
        full = full.scatter_add(-1, columns[:, None, None, :].expand(kept.shape), kept)
    return torch.fft.ifft(full, dim=-1, norm="ortho")


def compact_adjoint_coil_images(yc: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """ifft2c of zero-filled compact k-space per coil, (B,C,H,W) (for gradients w.r.t. the maps)."""
    phase = phase_grid(yc.shape[-2], width, yc.device, yc.dtype, output=False).conj()
    return _unmodulated_compact_coil_images(yc, columns, width) * phase


def sense_adjoint_compact(yc: torch.Tensor, maps: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A^H of compact k-space: IFFT along H on n_s columns, zero-fill, IFFT along W, reduce."""
    height, width = maps.shape[-2:]
    z = _unmodulated_compact_coil_images(yc, columns, width)
    return _coil_reduce(z, maps) * phase_grid(height, width, yc.device, yc.dtype, output=False).conj()


def coil_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """S·x."""
    return maps * x.unsqueeze(-3)


def coil_reduce(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·z_c in one fused pass."""
    return _coil_reduce(z, maps)


for _name in ("coil_expand", "coil_reduce", "sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step",
              "soft_kspace_dc", "sense_forward_compact", "sense_adjoint_compact"):
    register(_name, "torch")(globals()[_name])
