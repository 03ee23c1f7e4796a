"""The super-resolution forward model y = (k ⊛ x)↓s against a direct circular-convolution reference,
its bad-input errors, and the blur kernels (Gaussian, motion, USRNet's twelve, loading .npy / .mat).
Adjointness is checked with every other physics in tests/test_physics.py."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from devices import DEVICES
from mbdlfast.physics import BlurDownsample
from mbdlfast.physics.blur_kernels import (
    ISOTROPIC_WIDTHS, gaussian_kernel, load_kernels, motion_kernel, usrnet_test_kernels
)


def circular_blur_reference(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(k ⊛ x)[i,j] = Σ_ab k[a,b] · x[i − (a − kh//2), j − (b − kw//2)], indices modulo the image size."""
    kh, kw = kernel.shape[-2:]
    out = torch.zeros_like(x)
    for a in range(kh):
        for b in range(kw):
            weight = kernel[..., a, b].reshape(-1, 1, 1, 1) if kernel.dim() == 3 else kernel[a, b]
            out += weight * torch.roll(x, shifts=(a - kh // 2, b - kw // 2), dims=(-2, -1))
    return out


@pytest.mark.parametrize("scale,height,width", [(1, 7, 9), (2, 10, 8), (3, 9, 15), (4, 16, 12)])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_blur_downsample_matches_the_direct_circular_convolution(scale, height, width, per_sample, channels):
    generator = torch.Generator().manual_seed(scale * 100 + height)
    x = torch.rand(2, channels, height, width, dtype=torch.float64, generator=generator)
    kernel = torch.rand(*((2,) if per_sample else ()), 5, 3, dtype=torch.float64, generator=generator)
    expected = circular_blur_reference(x, kernel)[..., ::scale, ::scale]
    torch.testing.assert_close(BlurDownsample(kernel, scale).A(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_per_sample_kernels_on_each_device(device):
    x = torch.rand(3, 3, 24, 18, dtype=torch.float64)
    kernels = torch.stack([gaussian_kernel(7, s) for s in (0.7, 1.2, 2.0)])
    op = BlurDownsample(kernels, 3)
    expected, adjoint = op.A(x), op.A_adjoint(op.A(x))
    moved = BlurDownsample(kernels.to(device), 3)
    torch.testing.assert_close(moved.A(x.to(device)).cpu(), expected)
    torch.testing.assert_close(moved.A_adjoint(moved.A(x.to(device))).cpu(), adjoint)


def test_float32_matches_float64_and_the_centred_delta_is_the_identity():
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    kernel = gaussian_kernel(7, 1.2)
    y64 = BlurDownsample(kernel, 2).A(x)
    y32 = BlurDownsample(kernel.float(), 2).A(x.float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-6)
    delta = torch.zeros(5, 5, dtype=torch.float64)
    delta[2, 2] = 1
    torch.testing.assert_close(BlurDownsample(delta, 1).A(x), x)
    torch.testing.assert_close(BlurDownsample(delta, 3).A(x), x[..., ::3, ::3])
    shifted = torch.zeros(5, 5, dtype=torch.float64)
    shifted[2, 3] = 1  # one pixel right of the centre: the image moves one pixel right
    torch.testing.assert_close(BlurDownsample(shifted, 1).A(x), torch.roll(x, 1, dims=-1))


@pytest.mark.parametrize("kernel,scale,error,match", [
    (torch.ones(4, 5), 2, ValueError, "kernel: expected odd kernel sides.*4x5"),
    (torch.ones(5, 5, dtype=torch.int64), 2, TypeError, "kernel: expected a float32 or float64"),
    (torch.ones(5, 5, dtype=torch.complex64), 2, TypeError, "kernel: expected a float32 or float64"),
    (torch.full((3, 3), float("nan")), 2, ValueError, "kernel: contains NaN or Inf"),
    (torch.ones(2, 2, 3, 3), 2, ValueError, "kernel: expected \\(kh,kw\\) or \\(B,kh,kw\\)"),
    (torch.ones(3, 3), 0, ValueError, "scale: expected an integer >= 1"),
    (torch.ones(3, 3), 2.0, TypeError, "scale: expected an integer"),
])
def test_bad_kernels_and_scales_name_the_argument(kernel, scale, error, match):
    with pytest.raises(error, match=match):
        BlurDownsample(kernel, scale)


def test_bad_images_name_the_argument():
    op = BlurDownsample(torch.ones(3, 3), 2)
    with pytest.raises(ValueError, match="x: the image size 9x8 is not a multiple of scale=2"):
        op.A(torch.ones(1, 1, 9, 8))
    with pytest.raises(ValueError, match="x: expected real images \\(B,C,H,W\\)"):
        op.A(torch.ones(8, 8))
    with pytest.raises(TypeError, match="x: expected real images"):
        op.A(torch.ones(1, 1, 8, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="x: expected torch.float32"):
        op.A(torch.ones(1, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="y: the 3x3 kernel is larger than the 2x2 image"):
        op.A_adjoint(torch.ones(1, 1, 1, 1))
    with pytest.raises(ValueError, match="x: batch of 3, but 2 per-sample kernels"):
        BlurDownsample(torch.ones(2, 3, 3), 1).A(torch.ones(3, 1, 8, 8))


def kernel_moments(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (x, y), covariance) of a kernel as a distribution over pixel offsets from the centre."""
    size = kernel.shape[-1]
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    points = torch.stack([cols.flatten(), rows.flatten()], dim=1)
    weights = kernel.flatten()
    mean = weights @ points
    centred = points - mean
    return mean, (weights[:, None] * centred).T @ centred


@pytest.mark.parametrize("sigma", ISOTROPIC_WIDTHS)
def test_isotropic_gaussians_have_their_width(sigma):
    kernel = gaussian_kernel(25, sigma)
    assert kernel.shape == (25, 25) and float(kernel.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(kernel, kernel.T)
    mean, covariance = kernel_moments(kernel)
    torch.testing.assert_close(mean, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(covariance, sigma ** 2 * torch.eye(2, dtype=torch.float64), rtol=1e-3, atol=1e-3)


def test_anisotropic_gaussian_has_its_axes_and_angle():
    kernel = gaussian_kernel(25, (3.0, 1.0), angle=30.0)
    _, covariance = kernel_moments(kernel)
    values, vectors = torch.linalg.eigh(covariance)
    torch.testing.assert_close(values, torch.tensor([1.0, 9.0], dtype=torch.float64), rtol=2e-2, atol=0)
    major = vectors[:, 1] * torch.sign(vectors[0, 1])
    assert math.degrees(math.atan2(float(major[1]), float(major[0]))) == pytest.approx(30.0, abs=0.5)


def test_motion_kernels_are_seeded_centred_distributions_of_a_path():
    first, again, other = motion_kernel(25, 0), motion_kernel(25, 0), motion_kernel(25, 1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    for kernel in (first, other):
        assert float(kernel.sum()) == pytest.approx(1.0) and float(kernel.min()) >= 0
        mean, _ = kernel_moments(kernel)
        assert float(mean.abs().max()) < 1.0  # centred on its centre of mass
        assert 10 < int((kernel > 1e-3).sum()) < 25 * 25 // 2  # a path: neither a dot nor a blob


def test_usrnet_test_set_has_twelve_25x25_kernels():
    kernels = usrnet_test_kernels()
    assert len(kernels) == 12 and all(k.shape == (25, 25) for k in kernels)
    assert all(float(k.sum()) == pytest.approx(1.0) and float(k.min()) >= 0 for k in kernels)
    assert len({k.numpy().tobytes() for k in kernels}) == 12


@pytest.mark.parametrize("bad", [dict(size=4), dict(size=0), dict(sigma=0.0), dict(sigma=(1.0, -1.0)),
                                 dict(angle=float("inf"))])
def test_gaussian_arguments_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        gaussian_kernel(**{"size": 25, **bad})


def write_v73_mat(path, kernels: list[np.ndarray]) -> None:
    """A MATLAB v7.3 file (HDF5 behind a 512-byte header) with a cell array 'kernels'."""
    header = b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM"
    with h5py.File(path, "w", userblock_size=512) as hf:
        references = []
        for index, kernel in enumerate(kernels):
            references.append(hf.create_dataset(f"#refs#/k{index}", data=kernel.T).ref)
        hf.create_dataset("kernels", data=np.array(references, dtype=h5py.ref_dtype).reshape(-1, 1))
    with open(path, "r+b") as handle:
        handle.write(header.ljust(512, b"\0"))


def test_load_kernels_reads_npy_and_mat_files(tmp_path):
    kernels = [gaussian_kernel(7, 1.0).numpy(), motion_kernel(9, 2).numpy() * 3]
    np.save(tmp_path / "one.npy", kernels[0])
    np.save(tmp_path / "stack.npy", np.stack([kernels[0], kernels[0] * 2]))
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = kernels
    scipy.io.savemat(tmp_path / "cell.mat", {"kernels": cell})
    scipy.io.savemat(tmp_path / "stack.mat", {"k": np.stack([kernels[0]] * 3, axis=-1), "note": np.ones(1)})
    write_v73_mat(tmp_path / "v73.mat", kernels)
    assert len(load_kernels(tmp_path / "one.npy")) == 1
    torch.testing.assert_close(load_kernels(tmp_path / "stack.npy")[1], torch.from_numpy(kernels[0]))
    for name in ("cell.mat", "v73.mat"):
        loaded = load_kernels(tmp_path / name)
        assert [k.shape for k in loaded] == [(7, 7), (9, 9)]
        torch.testing.assert_close(loaded[1], torch.from_numpy(kernels[1] / kernels[1].sum()))
    assert len(load_kernels(tmp_path / "stack.mat", key="k")) == 3


def test_load_kernels_refuses_bad_files_with_the_reason(tmp_path):
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    np.save(tmp_path / "zero.npy", np.zeros((3, 3)))
    np.save(tmp_path / "complex.npy", np.ones((3, 3), dtype=np.complex64))
    (tmp_path / "corrupt.mat").write_bytes(b"not a mat file at all" * 10)
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY\x01\x00")
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.ones((3, 3)), "b": np.ones((3, 3))})
    with pytest.raises(ValueError, match="kernel 0 of .*even.npy: expected odd kernel sides"):
        load_kernels(tmp_path / "even.npy")
    with pytest.raises(ValueError, match="sums to 0"):
        load_kernels(tmp_path / "zero.npy")
    with pytest.raises(ValueError, match="complex64, expected real numbers"):
        load_kernels(tmp_path / "complex.npy")
    for name in ("corrupt.mat", "corrupt.npy"):
        with pytest.raises(ValueError, match=f"path: .*{name} could not be read"):
            load_kernels(tmp_path / name)
    with pytest.raises(ValueError, match="key: .*holds the variables \\['a', 'b'\\]"):
        load_kernels(tmp_path / "two.mat")
    with pytest.raises(ValueError, match="key: .*has no variable 'c'"):
        load_kernels(tmp_path / "two.mat", key="c")
    with pytest.raises(ValueError, match="is not a file"):
        load_kernels(tmp_path / "missing.npy")


def dense_matrix(op: BlurDownsample, channels: int, height: int, width: int) -> torch.Tensor:
    """A as a matrix on one sample's flattened (C,H,W) image."""
    basis = torch.eye(channels * height * width, dtype=torch.float64).reshape(-1, channels, height, width)
    return op.A(basis).reshape(basis.shape[0], -1).T


@pytest.mark.parametrize("scale,height,width", [(1, 6, 8), (2, 8, 6), (3, 9, 6), (4, 8, 8)])
def test_data_step_is_the_exact_regularised_least_squares_solution(scale, height, width):
    generator = torch.Generator().manual_seed(scale)
    kernel = torch.rand(3, 5, dtype=torch.float64, generator=generator)
    op = BlurDownsample(kernel, scale)
    z = torch.rand(2, 2, height, width, dtype=torch.float64, generator=generator)
    y = torch.rand(2, 2, height // scale, width // scale, dtype=torch.float64, generator=generator)
    alpha = torch.tensor([0.05, 0.7], dtype=torch.float64)
    matrix = dense_matrix(op, 1, height, width)  # channels are independent
    for b in range(2):
        for c in range(2):
            normal = matrix.T @ matrix + alpha[b] * torch.eye(height * width, dtype=torch.float64)
            expected = torch.linalg.solve(normal, matrix.T @ y[b, c].flatten() + alpha[b] * z[b, c].flatten())
            torch.testing.assert_close(op.data_step(z, y, alpha)[b, c].flatten(), expected, rtol=1e-9, atol=1e-10)
    per_sample = BlurDownsample(torch.stack([kernel, kernel.flip(0)]), scale)
    stepped = per_sample.data_step(z, y, 0.3)
    torch.testing.assert_close(stepped[1:], BlurDownsample(kernel.flip(0), scale).data_step(z[1:], y[1:], 0.3))


def test_data_step_checks_the_measurement_size():
    op = BlurDownsample(torch.ones(3, 3, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="z: expected real images of shape \\(1, 1, 6, 8\\) \\(y's size times scale=2\\)"):
        op.data_step(torch.ones(1, 1, 8, 8, dtype=torch.float64), torch.ones(1, 1, 3, 4, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="alpha: expected a finite number > 0"):
        op.data_step(torch.ones(1, 1, 8, 8, dtype=torch.float64), torch.ones(1, 1, 4, 4, dtype=torch.float64), 0.0)
