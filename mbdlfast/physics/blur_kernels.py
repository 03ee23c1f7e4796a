"""Blur kernels for super-resolution: Gaussian (isotropic and anisotropic), camera-shake motion blur,
the twelve-kernel test set of USRNet's evaluation, and user kernels from .npy / .mat files.

Every kernel is a float64 (n,n) tensor with odd n, non-negative and summing to 1.

``usrnet_test_kernels()`` follows the composition USRNet's paper describes (and the seed follows):
four isotropic Gaussians of widths 0.7, 1.2, 1.6 and 2.0, four anisotropic Gaussians and four motion
kernels, all 25×25. The official ``kernels_12.mat`` is not available here, so the anisotropic
parameters (:data:`ANISOTROPIC`) are ours and the motion kernels are drawn with fixed seeds by
:func:`motion_kernel`; load the official file with :func:`load_kernels` where you have it.

Training draws a fresh kernel per patch with :func:`random_kernel`, as USRNet's training does
(anisotropic Gaussians of random widths and angle, motion kernels for a fraction of the patches), so
that the twelve test kernels are never seen in training.
"""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import torch

from mbdlfast.physics.blur import check_kernel

KERNEL_SIZE = 25
ISOTROPIC_WIDTHS = (0.7, 1.2, 1.6, 2.0)
ANISOTROPIC = ((2.0, 0.7, 30.0), (2.6, 1.0, 75.0), (3.2, 1.3, 120.0), (3.8, 1.6, 165.0))  # (σ1, σ2, angle in °)
MOTION_SEEDS = (0, 1, 2, 3)
TRAINING_SIGMA_RANGE = (0.6, 4.0)  # covers the test widths 0.7..3.8
TRAINING_MOTION_FRACTION = 0.25  # as in the test set: 4 of 12 kernels


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd positive kernel side, got {size!r}")
    return size


def _normalised(kernel: torch.Tensor) -> torch.Tensor:
    return kernel / kernel.sum()


def gaussian_kernel(size: int = KERNEL_SIZE, sigma: float | tuple[float, float] = 1.6,
                    angle: float = 0.0) -> torch.Tensor:
    """A Gaussian with standard deviations ``sigma`` (one for isotropic, (σ1, σ2) along its axes) and
    its first axis at ``angle`` degrees from the horizontal, centred on the middle pixel."""
    size = _check_size(size)
    sigmas = (sigma, sigma) if isinstance(sigma, (int, float)) else tuple(sigma)
    if len(sigmas) != 2 or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in sigmas):
        raise ValueError(f"sigma: expected a positive width or a pair of them, got {sigma!r}")
    if not math.isfinite(angle):
        raise ValueError(f"angle: expected a finite angle in degrees, got {angle!r}")
    theta = math.radians(angle)
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                            dtype=torch.float64)
    covariance = rotation @ torch.diag(torch.tensor(sigmas, dtype=torch.float64) ** 2) @ rotation.T
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    points = torch.stack([cols, rows], dim=-1)  # (x, y): x along the columns
    exponent = -0.5 * torch.einsum("...i,ij,...j->...", points, torch.linalg.inv(covariance), points)
    return _normalised(torch.exp(exponent))


def motion_kernel(size: int = KERNEL_SIZE, seed: int = 0, *, length: float | None = None,
                  steps: int = 2000) -> torch.Tensor:
    """A camera-shake kernel: the path of a point moving with inertia and random jerks (after Boracchi
    and Foi's trajectory model), splatted with bilinear weights onto the grid, time-weighted and
    centred on its centre of mass. ``length``: the path's extent in pixels (default 60 % of ``size``)."""
    size = _check_size(size)
    rng = np.random.default_rng(seed)
    extent = (0.6 * size) if length is None else float(length)
    if not (math.isfinite(extent) and 0 < extent < size):
        raise ValueError(f"length: expected a path extent in (0, {size}) pixels, got {length!r}")
    velocity = np.exp(1j * rng.uniform(0, 2 * np.pi))
    position, path = 0j, []
    for _ in range(steps):
        jerk = rng.normal() + 1j * rng.normal()
        velocity = 0.995 * velocity + 0.1 * jerk - 0.01 * position  # inertia, shake, pull back to the start
        velocity /= max(abs(velocity), 1e-12)
        position += velocity
        path.append(position)
    path = np.asarray(path)
    path -= path.mean()
    path *= (extent / 2) / max(np.abs(path).max(), 1e-12)
    kernel = np.zeros((size, size))
    centre = size // 2
    for point in path:
        x, y = point.real + centre, point.imag + centre
        left, top = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - left, y - top
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= top + dy < size and 0 <= left + dx < size:
                    kernel[top + dy, left + dx] += wx * wy
    return _normalised(torch.from_numpy(kernel))


def usrnet_test_kernels() -> list[torch.Tensor]:
    """The twelve 25×25 test kernels: 4 isotropic, 4 anisotropic Gaussians, 4 motion (module docstring)."""
    return ([gaussian_kernel(KERNEL_SIZE, width) for width in ISOTROPIC_WIDTHS]
            + [gaussian_kernel(KERNEL_SIZE, (s1, s2), angle) for s1, s2, angle in ANISOTROPIC]
            + [motion_kernel(KERNEL_SIZE, seed) for seed in MOTION_SEEDS])


def random_kernel(rng: np.random.Generator, size: int = KERNEL_SIZE,
                  motion_fraction: float = TRAINING_MOTION_FRACTION,
                  sigma_range: tuple[float, float] = TRAINING_SIGMA_RANGE) -> torch.Tensor:
    """A training kernel drawn from ``rng``: with probability ``motion_fraction`` a motion kernel of a
    random seed, else an anisotropic Gaussian with both widths uniform in ``sigma_range`` and a
    uniform angle."""
    if not 0 <= motion_fraction <= 1:
        raise ValueError(f"motion_fraction: expected a probability in [0, 1], got {motion_fraction!r}")
    low, high = sigma_range
    if not 0 < low <= high:
        raise ValueError(f"sigma_range: expected 0 < low <= high, got {sigma_range!r}")
    if rng.uniform() < motion_fraction:
        return motion_kernel(size, int(rng.integers(2**31)))
    sigmas = tuple(float(s) for s in rng.uniform(low, high, size=2))
    return gaussian_kernel(size, sigmas, float(rng.uniform(0.0, 180.0)))


def _variable(path: Path, key: str | None, names: list[str]) -> str:
    if key is None:
        if len(names) != 1:
            raise ValueError(f"key: {path} holds the variables {sorted(names)}; name the one with the kernels")
        return names[0]
    if key not in names:
        raise ValueError(f"key: {path} has no variable {key!r} (it holds {sorted(names)})")
    return key


def _unstacked(array: np.ndarray) -> list[np.ndarray]:
    """A MATLAB (n,n) kernel or (n,n,K) stack as a list of (n,n) arrays."""
    return [array] if array.ndim == 2 else list(np.moveaxis(array, -1, 0))


def _mat_arrays(path: Path, key: str | None) -> list[np.ndarray]:
    """The kernels of a MATLAB file: v5 through SciPy, v7.3 (HDF5, stored transposed) through h5py."""
    try:
        contents = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except (ValueError, TypeError, OSError, EOFError) as err:  # not a MAT file, or a truncated one
        raise ValueError(f"path: {path} could not be read as .mat ({err})") from err
    except NotImplementedError:
        with h5py.File(path, "r") as hf:
            value = hf[_variable(path, key, [k for k in hf.keys() if not k.startswith("#")])]
            if value.dtype == h5py.ref_dtype:  # a cell array: references to the kernels
                return [np.asarray(hf[ref]).T for ref in np.asarray(value).flat]
            return _unstacked(np.asarray(value).T)
    value = contents[_variable(path, key, list(contents))]
    if value.dtype == object:  # a cell array of kernels
        return [np.asarray(item) for item in value.flat]
    return _unstacked(value)


def load_kernels(path, key: str | None = None) -> list[torch.Tensor]:
    """The blur kernels in a .npy file ((n,n) or (K,n,n)) or a MATLAB .mat file (a 2D array, an
    (n,n,K) stack, or a cell array such as the official ``kernels_12.mat``; ``key`` names the variable
    when the file holds several). Each is checked (real, finite, odd sides) and normalised to sum 1."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: {path} is not a file")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:  # truncated, or not an npy file
            raise ValueError(f"path: {path} could not be read as .npy ({err})") from err
        if array.ndim not in (2, 3):
            raise ValueError(f"path: {path} holds a {array.ndim}-D array; expected (n,n) or (K,n,n) kernels")
        arrays = [array] if array.ndim == 2 else list(array)
    elif path.suffix == ".mat":
        arrays = _mat_arrays(path, key)
    else:
        raise ValueError(f"path: {path} is not a .npy or .mat file")
    kernels = []
    for index, array in enumerate(np.asarray(array) for array in arrays):
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"path: kernel {index} of {path} is {array.dtype}, expected real numbers")
        kernel = check_kernel(f"kernel {index} of {path}", torch.as_tensor(np.asarray(array, dtype=np.float64)))
        if kernel.dim() != 2:
            raise ValueError(f"path: kernel {index} of {path} has shape {tuple(kernel.shape)}; expected (n,n)")
        if kernel.sum() <= 0:
            raise ValueError(f"path: kernel {index} of {path} sums to {float(kernel.sum())}; expected a positive sum")
        kernels.append(_normalised(kernel))
    return kernels
