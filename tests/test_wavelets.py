"""The torch 2D DWT against PyWavelets: filters, coefficients, perfect reconstruction and adjointness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mbdlfast.physics.wavelets import WaveletTransform2D, daubechies_lowpass, max_levels, soft_threshold
from references import reference_module

pywt = reference_module("pywt")

ODD_AND_EVEN_SHAPES = [(32, 32), (48, 40), (33, 27), (7, 5), (1, 9)]


def random_images(batch, shape, dtype):
    return torch.randn(batch, *shape, dtype=dtype)


def random_coefficients(transform, batch, dtype):
    """Coefficients of the transform's layout that are (for a redundant transform) not in its range."""
    return [torch.randn(batch, *shape, dtype=dtype) for shape in transform.coefficient_shapes]


def inner(a, b):
    """<a, b> over a list of tensors, in complex128."""
    return sum(torch.vdot(u.flatten().to(torch.complex128), v.flatten().to(torch.complex128)) for u, v in zip(a, b))


def pywt_coefficients(image, wavelet, mode, levels):
    """``wavedec2`` of one (H,W) image, in our layout: [approx, stack(cH, cV, cD) per level]."""
    coeffs = pywt.wavedec2(image.numpy(), wavelet, mode=mode, level=levels)
    return [torch.from_numpy(coeffs[0])] + [torch.from_numpy(np.stack(details)) for details in coeffs[1:]]


@pytest.mark.parametrize("order", [1, 2, 4, 8])
def test_daubechies_filters_equal_pywavelets(order):
    reference = pywt.Wavelet(f"db{order}")
    rec_lo = daubechies_lowpass(order)
    np.testing.assert_allclose(rec_lo, reference.rec_lo, rtol=0, atol=5e-15)
    np.testing.assert_allclose(rec_lo[::-1], reference.dec_lo, rtol=0, atol=5e-15)
    np.testing.assert_allclose(np.convolve(rec_lo, rec_lo[::-1])[2 * order - 1::2], [1] + [0] * (order - 1),
                               rtol=0, atol=1e-14)  # orthonormal to its even shifts


@pytest.mark.parametrize("shape", ODD_AND_EVEN_SHAPES)
@pytest.mark.parametrize("wavelet", ["db4", "haar"])
def test_default_levels_are_pywavelets_max_level(shape, wavelet):
    expected = pywt.dwt_max_level(min(shape), pywt.Wavelet(wavelet).dec_len)
    assert max_levels(shape, wavelet) == WaveletTransform2D(shape, wavelet).levels == expected


@pytest.mark.parametrize("mode", ["periodization", "zero"])
@pytest.mark.parametrize("shape", ODD_AND_EVEN_SHAPES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.complex128, 1e-13), (torch.complex64, 2e-6)])
def test_perfect_reconstruction(mode, shape, dtype, tol):
    transform = WaveletTransform2D(shape, "db4", levels=3, mode=mode)
    x = random_images(3, shape, dtype)
    coeffs = transform.forward(x)
    assert [tuple(c.shape[1:]) for c in coeffs] == transform.coefficient_shapes
    assert all(c.dtype == dtype for c in coeffs)
    restored = transform.inverse(coeffs)
    assert restored.dtype == dtype and restored.shape == x.shape
    assert float((restored - x).abs().max()) <= tol * float(x.abs().max())


@pytest.mark.parametrize("mode", ["periodization", "zero"])
@pytest.mark.parametrize("shape", ODD_AND_EVEN_SHAPES)
@pytest.mark.parametrize("wavelet", ["db4", "haar", "db2"])
def test_inverse_is_the_adjoint_and_forward_an_isometry(mode, shape, wavelet):
    transform = WaveletTransform2D(shape, wavelet, levels=3, mode=mode)
    x = random_images(2, shape, torch.complex128)
    c = random_coefficients(transform, 2, torch.complex128)
    lhs, rhs = inner(transform.forward(x), c), inner([x], [transform.inverse(c)])
    scale = inner([x], [x]).abs().sqrt() * inner(c, c).abs().sqrt()  # Cauchy-Schwarz bound on |lhs|
    assert float((lhs - rhs).abs() / scale) <= 1e-15
    energy = float(sum(coeff.abs().square().sum() for coeff in transform.forward(x)))
    assert energy == pytest.approx(float(x.abs().square().sum()), rel=1e-14)


@pytest.mark.parametrize("shape, levels", [((32, 32), 2), ((48, 40), 3), ((16, 64), 4)])
@pytest.mark.parametrize("wavelet", ["db4", "haar"])
def test_periodization_on_multiples_of_two_to_the_levels_is_square_and_orthogonal(shape, levels, wavelet):
    transform = WaveletTransform2D(shape, wavelet, levels=levels)
    assert sum(np.prod(s) for s in transform.coefficient_shapes) == np.prod(shape)
    c = random_coefficients(transform, 2, torch.complex128)
    for got, expected in zip(transform.forward(transform.inverse(c)), c):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_zero_mode_is_redundant_so_forward_of_inverse_is_a_projection():
    transform = WaveletTransform2D((32, 32), "db4", mode="zero")
    c = random_coefficients(transform, 1, torch.float64)
    projected = transform.forward(transform.inverse(c))
    assert sum(np.prod(s) for s in transform.coefficient_shapes) > 32 * 32
    assert float(sum((p - q).norm() ** 2 for p, q in zip(projected, c))) > 1.0
    twice = transform.forward(transform.inverse(projected))
    for got, expected in zip(twice, projected):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("mode, shape", [
    ("periodization", (32, 32)), ("periodization", (48, 40)),  # sizes where PyWavelets' periodization agrees
    ("zero", (32, 32)), ("zero", (48, 40)), ("zero", (33, 27)), ("zero", (7, 5)),
])
@pytest.mark.parametrize("wavelet", ["db4", "haar", "db2"])
def test_coefficients_equal_pywavelets_wavedec2(mode, shape, wavelet):
    levels = 2 if mode == "periodization" else None  # periodization: sizes multiples of 2^levels
    transform = WaveletTransform2D(shape, wavelet, levels=levels, mode=mode)
    x = random_images(2, shape, torch.complex128)
    coeffs = transform.forward(x)
    for b in range(2):
        expected = pywt_coefficients(x[b], wavelet, mode, transform.levels or None)
        assert len(expected) == len(coeffs)
        for got, want in zip(coeffs, expected):
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("mode, shape", [("periodization", (48, 40)), ("zero", (33, 27))])
def test_inverse_equals_pywavelets_waverec2_cropped(mode, shape):
    transform = WaveletTransform2D(shape, "db4", levels=2, mode=mode)
    c = random_coefficients(transform, 1, torch.float64)
    as_pywt = [c[0][0].numpy()] + [tuple(d[0].numpy()) for d in c[1:]]
    expected = pywt.waverec2(as_pywt, "db4", mode=mode)[:shape[0], :shape[1]]
    torch.testing.assert_close(transform.inverse(c)[0], torch.from_numpy(expected), rtol=0, atol=1e-13)


def test_odd_periodization_pads_each_level_by_one():
    transform = WaveletTransform2D((33, 27), "db4", levels=3)
    assert transform.level_shapes == [(33, 27), (17, 14), (9, 7), (5, 4)]
    x = random_images(1, (33, 27), torch.float64)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))  # one level's padding, by hand, against pywt
    level1 = WaveletTransform2D((33, 27), "db4", levels=1).forward(x)
    expected = pywt_coefficients(padded[0], "db4", "periodization", 1)
    for got, want in zip(level1, expected):
        torch.testing.assert_close(got[0], want, rtol=0, atol=1e-13)


def test_zero_levels_is_the_identity():
    x = random_images(2, (5, 6), torch.complex64)
    transform = WaveletTransform2D((5, 6), "db4", levels=0)
    (coeffs,) = transform.forward(x)
    torch.testing.assert_close(coeffs, x, rtol=0, atol=0)
    torch.testing.assert_close(transform.inverse([coeffs]), x, rtol=0, atol=0)


def test_soft_threshold_shrinks_complex_magnitudes_and_keeps_phase():
    values = torch.tensor([[3 + 4j, 0.3j, 0, -2]], dtype=torch.complex128)
    shrunk = soft_threshold(values, 1.0)
    torch.testing.assert_close(shrunk, torch.tensor([[(3 + 4j) * 0.8, 0, 0, -1]], dtype=torch.complex128))
    real = soft_threshold(torch.tensor([[-3.0, 0.5, 2.0]]), 1.0)
    torch.testing.assert_close(real, torch.tensor([[-2.0, 0.0, 1.0]]))


def test_soft_threshold_per_sample_threshold():
    values = torch.full((2, 3, 4), 2.0 + 0j, dtype=torch.complex64)
    shrunk = soft_threshold(values, torch.tensor([0.5, 3.0]))
    assert torch.all(shrunk[0] == 1.5) and torch.all(shrunk[1] == 0)


@pytest.mark.parametrize("call, match", [
    (lambda: WaveletTransform2D((32, 32), "sym4"), "wavelet"),
    (lambda: WaveletTransform2D((32, 32), mode="symmetric"), "mode"),
    (lambda: WaveletTransform2D((32,)), "image_shape"),
    (lambda: WaveletTransform2D((32, 32), levels=-1), "levels"),
    (lambda: WaveletTransform2D((32, 32)).forward(torch.zeros(1, 32, 31)), "x"),
    (lambda: WaveletTransform2D((32, 32)).forward(torch.zeros(32, 32)), "x"),
    (lambda: WaveletTransform2D((32, 32)).forward(torch.zeros(1, 32, 32, dtype=torch.int64)), "x"),
    (lambda: WaveletTransform2D((32, 32)).inverse([torch.zeros(1, 8, 8)]), "coeffs"),
    (lambda: soft_threshold(torch.zeros(2, 3), -1.0), "threshold"),
    (lambda: soft_threshold(torch.zeros(2, 3), torch.ones(3)), "threshold"),
    (lambda: daubechies_lowpass(11), "order"),
])
def test_invalid_arguments_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_inverse_rejects_mismatched_coefficient_shapes():
    transform = WaveletTransform2D((32, 32), "db4")
    coeffs = transform.forward(random_images(2, (32, 32), torch.complex64))
    coeffs[2] = coeffs[2][:1]
    with pytest.raises(ValueError, match=r"coeffs\[2\]"):
        transform.inverse(coeffs)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["periodization", "zero"])
def test_cuda_matches_cpu(mode):
    transform = WaveletTransform2D((33, 40), "db4", mode=mode)
    x = random_images(2, (33, 40), torch.complex64)
    coeffs = transform.forward(x.cuda())
    for got, expected in zip(coeffs, transform.forward(x)):
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(transform.inverse(coeffs).cpu(), x, rtol=1e-5, atol=1e-5)
