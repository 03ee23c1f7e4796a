"""Extra measurement noise at a given input SNR, for data from any source (the seed's Table 3 setting).

The input SNR is 10·log10(mean |y|² / σ²) over the measured samples y (the sampled k-space
locations; unsampled zeros carry no signal), per slice, and σ² is the variance of the complex white
Gaussian noise added to every measured sample (σ²/2 per real component). The data's own noise stays;
this adds to it, as the seed adds noise to already noisy real data to reach 9 dB.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def check_snr_db(name: str, snr_db) -> float | None:
    """``snr_db`` as a float, None passed through; a clear error for anything that is not a finite number."""
    if snr_db is None:
        return None
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"{name}: expected a finite input SNR in dB or None (no added noise), got {snr_db!r}")
    return float(snr_db)


def add_measurement_noise(kspace: torch.Tensor, snr_db: float, *, seed) -> torch.Tensor:
    """(..., C, H, W) complex k-space, a slice per leading index, plus white Gaussian noise on its
    measured (non-zero) samples at input SNR ``snr_db``; deterministic in ``seed`` (anything
    :class:`numpy.random.SeedSequence` takes, e.g. ``(run seed, slice index)``)."""
    if not kspace.is_complex():
        raise ValueError(f"kspace: expected complex k-space, got dtype {kspace.dtype}")
    snr_db = check_snr_db("snr_db", snr_db)
    slices = kspace.reshape(-1, *kspace.shape[-3:])
    measured = slices != 0
    counts = measured.flatten(1).sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("kspace: a slice has no measured (non-zero) samples to set the input SNR by")
    power = slices.abs().square().flatten(1).sum(dim=1) / counts
    sigma = torch.sqrt(power / 10.0 ** (snr_db / 10.0)).to(slices.real.dtype)
    rng = np.random.default_rng(np.random.SeedSequence(seed if isinstance(seed, int) else list(seed)))
    parts = torch.from_numpy(rng.standard_normal((2, *slices.shape))).to(slices.real.dtype).to(slices.device)
    noise = torch.complex(parts[0], parts[1]) * (sigma / math.sqrt(2.0)).view(-1, 1, 1, 1)
    return (slices + noise * measured).reshape(kspace.shape)
