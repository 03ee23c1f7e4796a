"""Magnitudes for the synthetic multicoil generator drawn from real images instead of phantoms.

``SyntheticMulticoil(family="images:<path>[,<path>...]")`` simulates coils, phase and noise on top of
randomly transformed views of real magnitude images: a user can fine-tune on anatomy that looks like
their target data while keeping the generator's known ground truth. Each view is a deterministic
function of the generator's random stream: one of the images, a random rotation, an optional
left-right flip, a zoom of 1 to 1.4 about a jittered centre, and a gamma in [0.8, 1.25], resampled
(bilinear, after an anti-aliased reduction) to the requested size. Images are ``.npy`` 2D arrays
(any real or complex dtype; the magnitude is used) or image files that scikit-image reads (RGB is
converted to luminance); each is scaled to a maximum of 1. A 3D ``.npy`` array is a volume of slices
along its last axis (the axial axis of a volume stored in NIfTI order, e.g. the T1, PD and Colin27
brains in ``shared/data/mri``): a view first draws one of its central slices
(:data:`CENTRAL_SLICES`, where there is anatomy), the volume scaled to a maximum of 1.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

IMAGES_PREFIX = "images:"
ZOOM_RANGE = (1.0, 1.4)
GAMMA_RANGE = (0.8, 1.25)
CENTRAL_SLICES = (0.25, 0.75)  # the fraction of a volume's last axis whose slices a view may draw


def is_image_family(family: str) -> bool:
    return isinstance(family, str) and family.startswith(IMAGES_PREFIX)


@functools.lru_cache(maxsize=32)
def image_paths(family: str) -> tuple[Path, ...]:
    """The files named by ``images:<path>[,<path>...]``; a clear error when one is missing. Cached, so
    that drawing a sample does not check the files again."""
    names = [name.strip() for name in family[len(IMAGES_PREFIX):].split(",") if name.strip()]
    if not names:
        raise ValueError(f"family: expected 'images:<path>[,<path>...]' naming at least one image, got {family!r}")
    paths = tuple(Path(name).expanduser() for name in names)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"family: image {str(path)!r} (from {family!r}) does not exist")
    return paths


def _read_magnitude(path: Path) -> np.ndarray:
    """(slices, H, W) float64 in [0, 1]: one slice for an image, the central slices of a volume."""
    if path.suffix.lower() == ".npy":
        array = np.load(path)
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise ValueError(f"family: {str(path)!r} must hold a non-empty 2D image or 3D volume, "
                             f"got shape {array.shape}")
        if array.ndim == 3:
            first, last = (round(fraction * array.shape[-1]) for fraction in CENTRAL_SLICES)
            array = np.moveaxis(array[..., first:max(last, first + 1)], -1, 0)
        array = np.abs(array).astype(np.float64)
    else:
        from skimage import io

        array = np.asarray(io.imread(path), dtype=np.float64)
        if array.ndim == 3:
            array = array[..., :3] @ np.array([0.299, 0.587, 0.114])[: array.shape[-1]]
    if not np.isfinite(array).all():
        raise ValueError(f"family: {str(path)!r} contains NaN or Inf")
    peak = array.max()
    if peak <= 0:
        raise ValueError(f"family: {str(path)!r} is all zeros")
    return (array / peak).reshape(-1, *array.shape[-2:])


@functools.lru_cache(maxsize=8)
def _reduced(path: Path, side: int) -> np.ndarray:
    """The slices anti-aliased down to about ``side`` pixels on their shorter side (never enlarged)."""
    from skimage.transform import rescale

    slices = _read_magnitude(path)
    factor = min(1.0, side / min(slices.shape[1:]))
    if factor == 1.0:
        return slices
    return np.stack([rescale(image, factor, anti_aliasing=True, preserve_range=True) for image in slices])


def image_view(family: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float64 magnitude in [0, 1]: a random view of one of ``family``'s images."""
    from skimage.transform import AffineTransform, warp

    paths = image_paths(family)
    slices = _reduced(paths[rng.integers(len(paths))], 2 * max(height, width))
    source = slices[rng.integers(len(slices))] if len(slices) > 1 else slices[0]  # images draw no slice
    angle = rng.uniform(0.0, 2.0 * math.pi)
    zoom = rng.uniform(*ZOOM_RANGE)
    flip = rng.uniform() < 0.5
    gamma = rng.uniform(*GAMMA_RANGE)
    # Output pixel (row, col) -> source pixel: centre, scale to the source's fit, rotate, shift to a jittered centre.
    fit = min(source.shape) / (zoom * max(height, width))
    jitter = 0.05 * np.array(source.shape[::-1]) * rng.uniform(-1.0, 1.0, size=2)
    to_centre = AffineTransform(translation=(-(width - 1) / 2, -(height - 1) / 2))
    turn = AffineTransform(scale=(-fit if flip else fit, fit), rotation=angle)
    to_source = AffineTransform(translation=(np.array(source.shape[::-1]) - 1) / 2 + jitter)
    view = warp(source, (to_centre + turn + to_source), output_shape=(height, width), order=1, mode="constant", cval=0.0)
    return np.clip(view, 0.0, 1.0) ** gamma
