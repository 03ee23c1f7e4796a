"""ESPIRiT maps: synthetic truth, agreement with sigpy, and CG-SENSE on the real 8-coil brain.

NRMSE convention of the real-data tests: the reference is the root-sum-of-squares of the fully
sampled coil images; a reconstruction x enters as |x|; the error is taken inside the brain support
mask ``brain_fov`` only: NRMSE = ||(|x| - ref)[fov]|| / ||ref[fov]||. The zero-filled baseline is
|A^H y| with the same ESPIRiT maps as the CG-SENSE reconstruction (CG's own right-hand side).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mbdlfast.data.cfl import read_cfl
from mbdlfast.physics import espirit
from mbdlfast.ops.fft import fft2c, ifft2c
from mbdlfast.physics.linalg import cg_sense, rss
from mbdlfast.physics.masks import equispaced, num_center_lines
from mbdlfast.physics.sense import SenseOperator
from references import reference_module

ESPIRIT_DEFAULTS = dict(calib_width=24, kernel_width=6, thresh=0.02, crop=0.95)


# ------------------------------------------------------------------------------------------------
# synthetic data with known maps


def smooth_coil_maps(num_coils: int, height: int, width: int) -> torch.Tensor:
    """Coils on a circle around the FOV: Gaussian magnitude, slowly varying phase, RSS = 1 (complex128)."""
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, height, dtype=torch.float64), torch.linspace(-1, 1, width, dtype=torch.float64), indexing="ij"
    )
    angles = 2 * torch.pi * torch.arange(num_coils, dtype=torch.float64) / num_coils
    cy, cx = 1.3 * torch.sin(angles), 1.3 * torch.cos(angles)
    distance2 = (y - cy[:, None, None]) ** 2 + (x - cx[:, None, None]) ** 2
    phase = 0.8 * (cx[:, None, None] * x + cy[:, None, None] * y) + angles[:, None, None]
    maps = torch.exp(-distance2 / 1.5) * torch.exp(1j * phase)
    return maps / maps.abs().pow(2).sum(0).sqrt()


def smooth_object(height: int, width: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A soft-edged ellipse with smooth contrast and phase (complex128) and its support (bool)."""
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, height, dtype=torch.float64), torch.linspace(-1, 1, width, dtype=torch.float64), indexing="ij"
    )
    radius = ((x - shift) / 0.75) ** 2 + (y / 0.85) ** 2
    envelope = torch.sigmoid((1 - radius) * 12)
    contrast = 1 + 0.4 * torch.cos(3 * x + shift) * torch.sin(2 * y)
    image = envelope * contrast * torch.exp(1j * (0.5 * x - 0.3 * y))
    return image, radius < 0.8


def synthetic_kspace(num_coils, height, width, shift=0.0):
    maps = smooth_coil_maps(num_coils, height, width)
    image, support = smooth_object(height, width, shift)
    return fft2c(maps * image), maps, support


def coil_alignment(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """|<S_est, S_true>| per pixel: 1 where the estimate equals the truth up to a pixel-wise phase."""
    return (estimate.conj() * truth).sum(dim=-3).abs()


@pytest.mark.parametrize("shape", [(6, 48, 40), (5, 47, 41)])
def test_recovers_known_maps_up_to_phase(shape):
    kspace, truth, support = synthetic_kspace(*shape)
    maps = espirit(kspace.to(torch.complex64), **ESPIRIT_DEFAULTS)
    assert maps.shape == kspace.shape and maps.dtype == torch.complex64

    kept = maps.abs().pow(2).sum(0) > 0
    assert bool(kept[support].all()), "the crop removed part of the object"
    alignment = coil_alignment(maps.to(torch.complex128), truth)[support]
    assert float(alignment.min()) > 0.999
    # Unit norm over coils where kept; zero elsewhere; coil 0 is the phase reference (real, >= 0).
    norms = maps.abs().pow(2).sum(0).sqrt()
    torch.testing.assert_close(norms[kept], torch.ones_like(norms[kept]), atol=1e-5, rtol=0)
    assert float(maps[0].imag.abs().max()) < 1e-5 and float(maps[0].real.min()) >= 0


def test_crop_zeroes_the_background():
    kspace, _, support = synthetic_kspace(6, 48, 40)
    # Remove the object's soft tail so the background is truly empty.
    image = ifft2c(kspace)
    kspace = fft2c(image * (smooth_object(48, 40)[0].abs() > 1e-3))
    maps = espirit(kspace.to(torch.complex64), **ESPIRIT_DEFAULTS)
    kept = maps.abs().sum(0) > 0
    assert bool(kept[support].all())
    assert 0 < int((~kept).sum()), "nothing was cropped outside the object"
    uncropped = espirit(kspace.to(torch.complex64), **{**ESPIRIT_DEFAULTS, "crop": 0.0})
    assert bool((uncropped.abs().sum(0) > 0).all())


def test_batched_matches_per_sample_and_complex128():
    samples = [synthetic_kspace(6, 47, 40, shift=s)[0] for s in (0.0, 0.15)]
    batch = torch.stack(samples)
    maps128 = espirit(batch, **ESPIRIT_DEFAULTS)
    assert maps128.shape == batch.shape and maps128.dtype == torch.complex128
    for i, sample in enumerate(samples):
        torch.testing.assert_close(espirit(sample, **ESPIRIT_DEFAULTS), maps128[i], atol=1e-10, rtol=0)
    maps64 = espirit(batch.to(torch.complex64), **ESPIRIT_DEFAULTS)
    kept = maps128.abs().sum(1) > 0
    assert bool(((maps64.abs().sum(1) > 0) == kept).all())
    assert float((maps64.to(torch.complex128) - maps128).abs().amax(1)[kept].max()) < 1e-4


def test_calibration_region_is_clipped_to_small_data():
    kspace, truth, support = synthetic_kspace(4, 20, 18)
    maps = espirit(kspace, calib_width=24, kernel_width=5, thresh=0.02, crop=0.9)
    assert float(coil_alignment(maps, truth)[support].min()) > 0.99


def test_matches_sigpy_on_synthetic_data():
    app = reference_module("sigpy.mri.app")
    kspace, _, _ = synthetic_kspace(6, 48, 41)
    kspace = kspace.to(torch.complex64)
    ours = espirit(kspace, **ESPIRIT_DEFAULTS)
    theirs = torch.from_numpy(app.EspiritCalib(kspace.numpy(), **ESPIRIT_DEFAULTS, show_pbar=False).run())
    assert bool(((ours.abs().sum(0) > 0) == (theirs.abs().sum(0) > 0)).all())
    assert float((ours - theirs).abs().max()) < 1e-4


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(kspace=torch.ones(4, 16, 16)), TypeError, "kspace"),
        (dict(kspace=torch.ones(16, 16, dtype=torch.complex64)), ValueError, "kspace"),
        (dict(kspace=torch.ones(1, 1, 4, 16, 16, dtype=torch.complex64)), ValueError, "kspace"),
        (dict(kspace=torch.full((4, 16, 16), float("nan"), dtype=torch.complex64)), ValueError, "NaN"),
        (dict(kernel_width=9), ValueError, "kernel_width"),
        (dict(calib_width=0), ValueError, "calib_width"),
        (dict(kernel_width=2.5), ValueError, "kernel_width"),
        (dict(thresh=1.5), ValueError, "thresh"),
        (dict(crop=-0.1), ValueError, "crop"),
    ],
)
def test_rejects_bad_input(kwargs, error, message):
    arguments = dict(kspace=torch.ones(4, 8, 16, dtype=torch.complex64), calib_width=24, kernel_width=6)
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        espirit(arguments.pop("kspace"), **arguments)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    kspace = torch.stack([synthetic_kspace(8, 64, 50, shift=s)[0] for s in (0.0, 0.1)]).to(torch.complex64)
    cpu = espirit(kspace, **ESPIRIT_DEFAULTS)
    gpu = espirit(kspace.cuda(), **ESPIRIT_DEFAULTS)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.complex64
    assert float((gpu.cpu() - cpu).abs().max()) < 1e-4


# ------------------------------------------------------------------------------------------------
# real 8-coil brain (fully sampled), ../shared/data/mri/auto-espirit


@pytest.fixture(scope="module")
def brain(shared_data):
    """Fully sampled k-space (8,230,180) complex64, the RSS reference image and the support mask."""
    folder = shared_data / "mri" / "auto-espirit"
    if not (folder / "brain_clean.cfl").is_file():
        pytest.skip(f"{folder}/brain_clean.cfl not found")
    kspace = np.moveaxis(read_cfl(folder / "brain_clean")[:, :, :, 0, 0], -1, 0)
    support = read_cfl(folder / "brain_fov")[:, :, 0, 0, 0].real > 0.5
    kspace = torch.from_numpy(np.ascontiguousarray(kspace))
    return kspace, rss(ifft2c(kspace)), torch.from_numpy(support)


def nrmse(estimate: torch.Tensor, reference: torch.Tensor, support: torch.Tensor) -> float:
    return float((estimate.abs() - reference)[support].norm() / reference[support].norm())


def cg_sense_nrmse(maps, kspace, mask, reference, support, max_iter=20):
    """(zero-filled |A^H y|, CG-SENSE) NRMSE for y = M·kspace and the given maps."""
    op = SenseOperator(maps, mask)
    y = (kspace * mask).unsqueeze(0)
    x, _ = cg_sense(op, y, max_iter=max_iter, tol=1e-6)
    return nrmse(op.A_adjoint(y)[0], reference, support), nrmse(x[0], reference, support)


def test_brain_maps_agree_with_sigpy(brain):
    app = reference_module("sigpy.mri.app")
    kspace, reference, support = brain
    ours = espirit(kspace, **ESPIRIT_DEFAULTS)
    theirs = torch.from_numpy(app.EspiritCalib(kspace.numpy(), **ESPIRIT_DEFAULTS, show_pbar=False).run())
    kept = theirs.abs().sum(0) > 0
    assert bool(kept[support].all())
    assert float(coil_alignment(ours, theirs)[kept].min()) > 0.9999

    mask = equispaced(kspace.shape[-1], 4, 0.08, offset=0)
    zero_filled, ours_error = cg_sense_nrmse(ours, kspace, mask, reference, support)
    _, sigpy_error = cg_sense_nrmse(theirs, kspace, mask, reference, support)
    assert ours_error < 0.5 * zero_filled  # the comparison is between two working reconstructions
    assert abs(ours_error - sigpy_error) <= 0.05 * sigpy_error


@pytest.mark.parametrize("acceleration", [3, 4])
def test_acceptance_cg_sense_halves_zero_filled_error(brain, acceleration):
    """Issue 2 acceptance: retrospective equispaced R=3/4, maps calibrated from the undersampled data's ACS."""
    kspace, reference, support = brain
    width = kspace.shape[-1]
    mask = equispaced(width, acceleration, 0.08, offset=0)
    acs_lines = num_center_lines(width, 0.08)
    undersampled = kspace * mask
    maps = espirit(undersampled, calib_width=acs_lines, kernel_width=6, thresh=0.02, crop=0.95)
    assert bool((maps.abs().sum(0) > 0)[support].all()), "the maps miss part of the brain"

    zero_filled, cg = cg_sense_nrmse(maps, kspace, mask, reference, support)
    assert zero_filled > 0.1  # the undersampling artefacts are real
    assert cg <= 0.5 * zero_filled
