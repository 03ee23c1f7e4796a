"""PSNR / SSIM / NMSE: parity with fastmri.evaluate and fastMRI's SSIMLoss, batched torch versions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mbdlfast import metrics
from mbdlfast.metrics import SSIMLoss, nmse, nmse_batch, psnr, psnr_batch, ssim, ssim_batch, ssim_map
from references import reference_module

SHAPES = [(1, 7, 7), (3, 37, 29), (2, 64, 64), (4, 50, 33)]


def _structured_volume(shape, rng):
    """Brain-like magnitude slices: smooth ellipses with sharp edges, different per slice."""
    slices, height, width = shape
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    volume = np.empty(shape)
    for s in range(slices):
        a, b = rng.uniform(0.5, 0.9, size=2)
        outer = (x / a) ** 2 + (y / b) ** 2 < 1
        inner = ((x - 0.1) / (0.4 * a)) ** 2 + (y / (0.5 * b)) ** 2 < 1
        volume[s] = 0.8 * outer + 0.5 * inner + 0.2 * np.exp(-4 * (x**2 + y**2)) * np.cos(6 * x + s)
    return np.abs(volume) * 1000  # raw fastMRI magnitudes are of this order


def _pairs(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    noisy = rng.random(shape)
    yield noisy.astype(dtype), (noisy + 0.2 * rng.standard_normal(shape)).astype(dtype)
    clean = _structured_volume(shape, rng)
    blurred = 0.5 * clean + 0.25 * (np.roll(clean, 1, axis=-1) + np.roll(clean, -1, axis=-2))
    yield clean.astype(dtype), np.abs(blurred + 20 * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_volume_metrics_match_fastmri(shape, dtype):
    evaluate = reference_module("fastmri.evaluate")
    for gt, pred in _pairs(shape, dtype):
        assert abs(psnr(gt, pred) - float(evaluate.psnr(gt, pred))) < 1e-6
        assert abs(ssim(gt, pred) - float(evaluate.ssim(gt, pred)[0])) < 1e-6
        assert abs(nmse(gt, pred) - float(evaluate.nmse(gt, pred))) < 1e-6 * max(1.0, float(evaluate.nmse(gt, pred)))
        maxval = 1.7 * float(gt.max())
        assert abs(psnr(gt, pred, maxval) - float(evaluate.psnr(gt, pred, maxval))) < 1e-6
        assert abs(ssim(gt, pred, maxval) - float(evaluate.ssim(gt, pred, maxval)[0])) < 1e-6


def test_volume_metrics_are_not_trivial():
    gt, pred = next(_pairs((3, 37, 29), np.float64))
    assert 5 < psnr(gt, pred) < 40 and 0.05 < ssim(gt, pred) < 0.95 and 0.01 < nmse(gt, pred) < 1
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert psnr(gt, gt) == math.inf and nmse(gt, gt) == 0.0


def test_volume_metrics_accept_torch_and_single_slices():
    gt, pred = next(_pairs((2, 40, 31), np.float64))
    for func in (psnr, ssim, nmse):
        assert func(torch.from_numpy(gt), torch.from_numpy(pred)) == func(gt, pred)
        assert func(gt[0], pred[0]) == func(gt[:1], pred[:1])


def test_volume_ssim_uses_the_volume_maximum():
    """fastMRI's data range is gt.max() over the volume, not per slice."""
    gt, pred = next(_pairs((2, 40, 31), np.float64))
    gt[1] *= 10
    pred[1] *= 10
    expected = np.mean([ssim(gt[s], pred[s], maxval=float(gt.max())) for s in range(2)])
    assert ssim(gt, pred) == pytest.approx(expected, abs=1e-12)
    assert abs(ssim(gt, pred) - np.mean([ssim(gt[s], pred[s]) for s in range(2)])) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_metrics_match_per_slice_numpy(dtype):
    evaluate = reference_module("fastmri.evaluate")
    for gt_np, pred_np in _pairs((4, 50, 33), np.float64):
        gt, pred = torch.from_numpy(gt_np).to(dtype), torch.from_numpy(pred_np).to(dtype)
        gt_np, pred_np = gt.double().numpy(), pred.double().numpy()
        batch_psnr, batch_ssim, batch_nmse = psnr_batch(gt, pred), ssim_batch(gt, pred), nmse_batch(gt, pred)
        assert batch_psnr.shape == batch_ssim.shape == batch_nmse.shape == (4,)
        assert batch_psnr.dtype == dtype
        for b in range(4):
            assert abs(float(batch_psnr[b]) - float(evaluate.psnr(gt_np[b], pred_np[b]))) < 1e-5
            ssim_tol = 1e-6 if dtype == torch.float64 else 1e-4  # float32 local variances cancel
            assert abs(float(batch_ssim[b]) - float(evaluate.ssim(gt_np[b : b + 1], pred_np[b : b + 1])[0])) < ssim_tol
            assert float(batch_nmse[b]) == pytest.approx(float(evaluate.nmse(gt_np[b], pred_np[b])), rel=1e-5)


def test_batched_maxval_forms():
    gt, pred = (torch.from_numpy(a) for a in next(_pairs((3, 20, 21), np.float64)))
    per_sample = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for func in (psnr_batch, ssim_batch):
        by_tensor = func(gt, pred, per_sample)
        by_number = torch.stack([func(gt[b : b + 1], pred[b : b + 1], float(per_sample[b]))[0] for b in range(3)])
        torch.testing.assert_close(by_tensor, by_number, rtol=0, atol=1e-12)
        torch.testing.assert_close(func(gt, pred, 2.0), func(gt, pred, torch.tensor(2.0, dtype=torch.float64)))
        torch.testing.assert_close(func(gt, pred), func(gt, pred, gt.amax(dim=(-2, -1))))


def _fastmri_ssim_loss(dtype):
    """fastMRI's SSIMLoss in ``dtype``. Its window is built in float32 (1/49 rounded, an error of
    ~1e-8 that the local variances amplify to ~1e-7 in SSIM), so for float64 rebuild it exactly."""
    losses = reference_module("fastmri.losses")
    module = losses.SSIMLoss().to(dtype)
    if dtype == torch.float64:
        module.w = torch.ones(1, 1, 7, 7, dtype=dtype) / 49
    return module


@pytest.mark.parametrize("shape", [(2, 64, 64), (3, 37, 29)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_ssim_loss_matches_fastmri(shape, dtype, tol):
    reference = _fastmri_ssim_loss(dtype)
    for gt_np, pred_np in _pairs(shape, np.float64):
        target, pred = torch.from_numpy(gt_np).to(dtype), torch.from_numpy(pred_np).to(dtype)
        data_range = target.amax(dim=(-2, -1))
        expected = reference(pred[:, None], target[:, None], data_range)
        assert abs(float(SSIMLoss()(pred, target, data_range)) - float(expected)) < tol
        assert abs(float(SSIMLoss()(pred[:, None], target[:, None])) - float(expected)) < tol
        full = reference(pred[:, None], target[:, None], data_range, reduced=False)[:, 0]
        torch.testing.assert_close(ssim_map(target, pred), 1 - full, rtol=0, atol=10 * tol)


def test_ssim_loss_gradient():
    reference = _fastmri_ssim_loss(torch.float64)
    gt, pred = (torch.from_numpy(a) for a in next(_pairs((2, 9, 8), np.float64)))
    data_range = gt.amax(dim=(-2, -1))
    torch.autograd.gradcheck(lambda p: SSIMLoss()(p, gt, data_range), pred.clone().requires_grad_(), fast_mode=True)
    ours = pred.clone().requires_grad_()
    SSIMLoss()(ours, gt, data_range).backward()
    theirs = pred[:, None].clone().requires_grad_()
    reference(theirs, gt[:, None], data_range).backward()
    torch.testing.assert_close(ours.grad, theirs.grad[:, 0], rtol=1e-9, atol=1e-12)


def test_psnr_batch_gradient_flows():
    gt = torch.rand(2, 9, 8, dtype=torch.float64)
    pred = (gt + 0.1 * torch.randn_like(gt)).requires_grad_()
    torch.autograd.gradcheck(lambda p: psnr_batch(gt, p), pred, fast_mode=True)
    torch.autograd.gradcheck(lambda p: nmse_batch(gt, p), pred, fast_mode=True)


def test_errors():
    real = np.random.default_rng(0).random((2, 16, 16))
    with pytest.raises(TypeError, match="magnitude"):
        psnr(real + 1j * real, real)
    with pytest.raises(TypeError, match="magnitude"):
        ssim_batch(torch.ones(1, 8, 8, dtype=torch.complex64), torch.ones(1, 8, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="shape"):
        nmse(real, real[:1])
    with pytest.raises(ValueError, match="volume"):
        ssim(real[None], real[None])
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(real[:, :6], real[:, :6])
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        psnr_batch(torch.ones(8, 8), torch.ones(8, 8))
    with pytest.raises(ValueError, match="dtype"):
        psnr_batch(torch.ones(1, 8, 8), torch.ones(1, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="maxval"):
        psnr_batch(torch.ones(2, 8, 8), torch.zeros(2, 8, 8), torch.ones(3))
    with pytest.raises(TypeError, match="gt"):
        psnr([1.0], [1.0])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        SSIMLoss()(torch.ones(1, 2, 8, 8), torch.ones(1, 2, 8, 8))
    assert metrics.WIN_SIZE == 7 and (metrics.K1, metrics.K2) == (0.01, 0.03)
