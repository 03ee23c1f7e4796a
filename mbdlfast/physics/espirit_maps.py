"""ESPIRiT coil sensitivity maps from a fully sampled k-space centre (Uecker et al., MRM 2014).

The k-space centre yields a calibration (Hankel) matrix of kernel_width x kernel_width x C patches;
its dominant right singular vectors span the signal subspace. In the image domain that subspace
becomes, at every pixel, a C x C Hermitian matrix G whose eigenvector of eigenvalue ~1 is the coil
sensitivity vector. Maps are zero where the top eigenvalue falls below ``crop`` (outside the object).

G is built without forming one image per kernel: G(r) = sum_k W_k(r) W_k(r)^H with W_k the inverse
FFT of kernel k, so G is the inverse FFT of the kernels' summed cross-correlation Q_cd(delta), a
(C, C, 2k-1, 2k-1) array. This costs C^2 image-size FFTs and C^2 H W memory, independent of the
number of kernels kept (up to C k^2), which keeps 640x368 with 20 coils within a few GB.
"""
from __future__ import annotations

import logging
import math

import torch

from mbdlfast._validation import check_complex, check_finite, check_ndim
from mbdlfast.ops.fft import ifft2c

logger = logging.getLogger(__name__)


def espirit(
    kspace: torch.Tensor,
    *,
    calib_width: int = 24,
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
) -> torch.Tensor:
    """ESPIRiT maps (one set) of centred k-space (C,H,W) or (B,C,H,W); returns the same layout and dtype.

    The centre region used for calibration is ``calib_width`` square, clipped to the data size, and
    must be fully sampled. Singular vectors with s > ``thresh`` * s_max span the signal subspace.
    The maps have unit norm over coils where kept, zero where the top eigenvalue is <= ``crop``, and
    their phase is relative to the first coil (as in sigpy and BART).
    """
    check_complex("kspace", kspace)
    check_ndim("kspace", kspace, (3, 4), "centred k-space (C,H,W) or (B,C,H,W)")
    check_finite("kspace", kspace)
    calib_shape = _check_parameters(kspace.shape[-2:], calib_width, kernel_width, thresh, crop)

    batched = kspace if kspace.dim() == 4 else kspace.unsqueeze(0)
    projector = _signal_projector(_centre_crop(batched, calib_shape), kernel_width, thresh)
    gram = _image_domain_gram(projector, batched.shape[1], kernel_width, batched.shape[-2:], batched.dtype)
    maps = _top_eigenvectors(gram, crop)
    empty = (maps.abs().flatten(1).amax(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        logger.warning("espirit: all-zero maps for batch entries %s: no eigenvalue passed crop=%s; the "
                       "calibration region (calib_width=%s) is probably too small or not fully sampled",
                       empty, crop, calib_width)
    return maps if kspace.dim() == 4 else maps.squeeze(0)


def calibration_width(mask: torch.Tensor, image_shape: tuple[int, int], *, upto: int = 24) -> int:
    """The side of the largest centred square, at most ``upto``, that ``mask`` samples completely: the
    calibration region ESPIRiT may use without reading anything the mask dropped (0 if none).

    ``mask``: (W,) line mask (every row of a sampled column is sampled) or (H,W) 2D mask; the square
    is placed exactly as :func:`espirit` crops its calibration region.
    """
    height, width = image_shape
    sampled = torch.as_tensor(mask).detach().to("cpu", torch.bool)
    if sampled.dim() == 1:
        sampled = sampled.expand(height, width)
    if sampled.shape != (height, width):
        raise ValueError(f"mask: expected (W,)=({width},) or (H,W)=({height},{width}), got {tuple(sampled.shape)}")
    for side in range(min(upto, height, width), 0, -1):
        if bool(_centre_crop(sampled, (side, side)).all()):
            return side
    return 0


def _check_parameters(image_shape, calib_width, kernel_width, thresh, crop) -> tuple[int, int]:
    """Validate the scalar arguments; return the calibration region size clipped to the data."""
    for name, value in (("calib_width", calib_width), ("kernel_width", kernel_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not 0.0 <= thresh < 1.0:
        raise ValueError(f"thresh: expected a float in [0, 1), got {thresh!r}")
    if not 0.0 <= crop <= 1.0:
        raise ValueError(f"crop: expected a float in [0, 1], got {crop!r}")
    calib_shape = (min(calib_width, image_shape[0]), min(calib_width, image_shape[1]))
    if kernel_width > min(calib_shape):
        raise ValueError(
            f"kernel_width: expected at most the calibration region size {calib_shape} "
            f"(calib_width={calib_width} clipped to the data size {tuple(image_shape)}), got {kernel_width}"
        )
    return calib_shape


def _centre_crop(kspace: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The size[0] x size[1] block around the k-space centre (index N // 2 lands on size // 2)."""
    height, width = kspace.shape[-2:]
    top, left = height // 2 - size[0] // 2, width // 2 - size[1] // 2
    return kspace[..., top : top + size[0], left : left + size[1]]


def _signal_projector(calib: torch.Tensor, kernel_width: int, thresh: float) -> torch.Tensor:
    """P = sum_k w_k w_k^H over the signal kernels w_k (rows of V^H): (B, C k^2, C k^2).

    The right singular vectors V of the calibration matrix H and its singular values s come from the
    Hermitian eigendecomposition of the small Gram matrix H^H H (eigenvalues s^2): cheaper than an
    SVD of H and as accurate for the kept s > thresh * s_max, in complex128. With w_k = conj(v_k),
    P = conj(V_kept V_kept^H). Each batch entry keeps its own number of kernels.
    """
    batch, coils = calib.shape[:2]
    patches = calib.to(torch.complex128).unfold(-2, kernel_width, 1).unfold(-2, kernel_width, 1)
    # (B, C, nY, nX, k, k) -> one row per patch position, columns ordered (coil, ky, kx).
    hankel = patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, -1, coils * kernel_width**2)
    squared_singular_values, right_vectors = torch.linalg.eigh(hankel.mH @ hankel)
    keep = squared_singular_values > thresh**2 * squared_singular_values[:, -1:]
    kept_vectors = right_vectors * keep.unsqueeze(-2).to(right_vectors.dtype)
    return (kept_vectors @ kept_vectors.mH).conj()


def _image_domain_gram(
    projector: torch.Tensor, coils: int, kernel_width: int, image_shape, dtype: torch.dtype
) -> torch.Tensor:
    """G(r) = (1/k^2) sum_k W_k(r) W_k(r)^H with W_k = sqrt(HW) ifft2c(kernel k): (B, H, W, C, C).

    Entry (c, d) of G is a trigonometric polynomial whose coefficients are
    Q_cd(delta) = sum_{j - i = delta} P[(c, j), (d, i)]; placing them around the image centre (modulo
    the image size, which is exact because the exponentials are periodic) and applying ifft2c gives G.
    The 1/k^2 normalises the eigenvalue of a coil-sensitivity vector to ~1.
    """
    height, width = image_shape
    batch = projector.shape[0]
    k = kernel_width
    offsets = torch.arange(k, device=projector.device)
    dy = (offsets.view(k, 1, 1, 1) - offsets.view(1, 1, k, 1)).expand(k, k, k, k)  # (jy, jx, iy, ix)
    dx = (offsets.view(1, k, 1, 1) - offsets.view(1, 1, 1, k)).expand(k, k, k, k)
    target = ((dy + height // 2) % height) * width + (dx + width // 2) % width

    pairs = projector.view(batch, coils, k * k, coils, k * k).permute(0, 1, 3, 2, 4)
    pairs = pairs.reshape(batch, coils, coils, k**4).to(dtype)
    coefficients = pairs.new_zeros(batch, coils, coils, height * width)
    coefficients.index_add_(-1, target.reshape(-1), pairs)

    gram = ifft2c(coefficients.view(batch, coils, coils, height, width))
    gram = gram * (math.sqrt(height * width) / k**2)
    return gram.permute(0, 3, 4, 1, 2)


def _top_eigenvectors(gram: torch.Tensor, crop: float) -> torch.Tensor:
    """Per-pixel top eigenvector of G, phase-referenced to coil 0 and zeroed where lambda_max <= crop."""
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    top = eigenvectors[..., -1]  # (B, H, W, C), unit norm; eigh sorts ascending
    reference = top[..., :1]
    magnitude = reference.abs()
    phase = torch.where(magnitude > 0, reference / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny), 1)
    kept = (eigenvalues[..., -1:] > crop).to(top.dtype)
    maps = top * phase.conj() * kept
    return maps.permute(0, 3, 1, 2).contiguous()
