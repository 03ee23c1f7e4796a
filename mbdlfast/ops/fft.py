"""Centred orthonormal FFTs (fastMRI's ``fft2c`` convention) and the modulations that centre a
plain FFT without shifting.

k-space is centred: the DC sample sits at index N // 2. ``fft2c``/``ifft2c`` shift explicitly (the
obviously right form the oracle uses). The fast backends centre by modulation instead, for any
length N with c = N // 2 and ω = exp(−2πi/N):

    fftc(x)[k]  = p[k] · FFT(q · x)[k],            q[n] = ω^(−c·n),  p[k] = ω^(c² − c·k)
    ifftc(X)[n] = conj(q[n]) · IFFT(conj(p) · X)[n]

(for even N both are ±1 sign patterns); :func:`centring_phases` is the one place they are built.
"""
from __future__ import annotations

import functools
import math

import torch

# complex dtype -> its real dtype (a dict lookup, which torch.compile can trace).
_REAL_DTYPES = {torch.complex32: torch.float16, torch.complex64: torch.float32, torch.complex128: torch.float64}


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of a complex ``dtype`` (real dtypes map to themselves)."""
    return _REAL_DTYPES.get(dtype, dtype)


def fftc(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred orthonormal 1D FFT along ``dim``."""
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fft(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifftc(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred orthonormal 1D inverse FFT along ``dim``."""
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.ifft(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dims: fftshift(fft2(ifftshift(x)))."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.fft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT over the last two dims."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.ifft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def centring_phases(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, p) of length ``n`` on ``device``: the input and output modulations above. Cached in eager
    mode, so a call on a GPU copies nothing; traced (torch.compile, symbolic sizes) it is computed
    in the graph."""
    if torch.compiler.is_compiling() or not isinstance(n, int):
        return _centring_phases(n, device, dtype)
    return _cached_centring_phases(n, torch.device(device), dtype)


def _centring_phases(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    c = n // 2
    index = torch.arange(n, dtype=torch.float64)
    # Reduce the exponents modulo n in integers before the float multiply, for accuracy at any n.
    q_angle = 2 * math.pi * ((c * index) % n) / n
    p_angle = -2 * math.pi * ((c * c - c * index) % n) / n
    q = torch.polar(torch.ones(n, dtype=torch.float64), q_angle)
    p = torch.polar(torch.ones(n, dtype=torch.float64), p_angle)
    return q.to(device=device, dtype=dtype), p.to(device=device, dtype=dtype)


_cached_centring_phases = functools.lru_cache(maxsize=64)(_centring_phases)


def phase_grid(height: int, width: int, device: torch.device, dtype: torch.dtype, output: bool) -> torch.Tensor:
    """Outer product of the H and W modulations, (H,W): q_H ⊗ q_W (input) or p_H ⊗ p_W (``output``)."""
    which = 1 if output else 0
    return centring_phases(height, device, dtype)[which][:, None] * centring_phases(width, device, dtype)[which]
