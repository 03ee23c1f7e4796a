"""Magnitudes for the synthetic multicoil generator drawn from real images instead of phantoms.

``SyntheticMulticoil(family="images:<path>[,<path>...]")`` simulates coils, phase and noise on top of
randomly transformed views of real magnitude images: a user can fine-tune on anatomy that looks like
their target data while keeping the generator's known ground truth. Each view is a deterministic
function of the generator's random stream: one of the images, a random rotation, an optional
left-right flip, a zoom of 1 to 1.4 about a jittered centre, and a gamma in [0.8, 1.25], resampled
(bilinear, after an anti-aliased reduction) to the requested size. Images are ``.npy`` 2D arrays
(any real or complex dtype; the magnitude is used) or image files that scikit-image reads (RGB is
converted to luminance); each is scaled to a maximum of 1.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

IMAGES_PREFIX = "images:"
ZOOM_RANGE = (1.0, 1.4)
GAMMA_RANGE = (0.8, 1.25)


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
    if path.suffix.lower() == ".npy":
        array = np.load(path)
        if array.ndim != 2:
            raise ValueError(f"family: {str(path)!r} must hold a 2D array, got shape {array.shape}")
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
    return array / peak


@functools.lru_cache(maxsize=8)
def _reduced(path: Path, side: int) -> np.ndarray:
    """The image anti-aliased down to about ``side`` pixels on its shorter side (never enlarged)."""
    from skimage.transform import rescale

    image = _read_magnitude(path)
    factor = min(1.0, side / min(image.shape))
    return image if factor == 1.0 else rescale(image, factor, anti_aliasing=True, preserve_range=True)


def image_view(family: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float64 magnitude in [0, 1]: a random view of one of ``family``'s images."""
    from skimage.transform import AffineTransform, warp

    paths = image_paths(family)
    source = _reduced(paths[rng.integers(len(paths))], 2 * max(height, width))
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
