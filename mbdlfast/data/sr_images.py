"""Colour images for super-resolution, split by image into training and test sets.

CBSD68, USRNet's test set, is not available here; the shared images are (Set5, Set14 and the deep
image prior's). A source is an image file or a folder searched recursively; images in a folder named
in ``test_folders`` (default Set5, the classic SR test set) are the test images and never train,
every other image trains. Masks (files whose name ends in ``_mask``) are not images to restore and
are skipped. Versions of one scene (``zebra.png``, ``zebra_GT.png``, ``zebra_crop.png``; a Kate in
two folders) share a :func:`scene_name`, the unit a validation split holds out. Pixels are float32 RGB in [0, 1], (3,H,W); grey images are repeated to three channels
and an alpha channel is dropped.

:func:`degrade` is the training and test degradation of USRNet: circular blur, keeping every s-th
pixel, then white Gaussian noise of a given standard deviation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mbdlfast.physics.blur import BlurDownsample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TEST_FOLDERS = ("set5",)


def read_rgb(path) -> torch.Tensor:
    """The image at ``path`` as (3,H,W) float32 in [0, 1]; ValueError naming the file when unreadable."""
    import skimage.io  # imported here: reading images is the only use, and scikit-image loads slowly

    path = Path(path)
    try:
        array = np.asarray(skimage.io.imread(path))
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"image: {path} could not be read as an image ({err})") from err
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"image: {path} has shape {array.shape}; expected a grey, RGB or RGBA image")
    if np.issubdtype(array.dtype, np.integer):
        scaled = array[..., :3].astype(np.float32) / np.iinfo(array.dtype).max
    else:
        scaled = np.clip(array[..., :3].astype(np.float32), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def image_files(source) -> list[Path]:
    """The image files of ``source`` (a file, or a folder searched recursively), sorted, masks skipped."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ValueError(f"data.source: {source} is neither an image file nor a folder")
    files = sorted(path for path in source.rglob("*")
                   if path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.lower().endswith("_mask"))
    if not files:
        raise ValueError(f"data.source: {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


SCENE_SUFFIXES = ("_gt", "_crop")


def scene_name(path: Path) -> str:
    """The scene an image shows: its lower-case stem without a ``_GT`` / ``_crop`` suffix."""
    stem = path.stem.lower()
    for suffix in SCENE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return stem


def is_test_image(path: Path, test_folders=TEST_FOLDERS) -> bool:
    folders = {name.lower() for name in test_folders}
    return any(part.lower() in folders for part in path.parent.parts)


def split_images(source, test_folders=TEST_FOLDERS) -> tuple[list[Path], list[Path]]:
    """(training, test) image files of ``source``: the test images are those in ``test_folders``."""
    files = image_files(source)
    test = [path for path in files if is_test_image(path, test_folders)]
    return [path for path in files if path not in test], test


def degrade(image: torch.Tensor, kernel: torch.Tensor, scale: int, noise_level,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """USRNet's low-resolution observation of (B,C,H,W) ``image``: ``(kernel ⊛ image)↓scale`` plus
    white Gaussian noise of standard deviation ``noise_level`` (a number or (B,)), drawn from
    ``generator``. H and W must be multiples of ``scale``."""
    physics = BlurDownsample(kernel.to(image), scale, noise_level)
    clean = physics.A(image)
    sigma = physics.noise_levels(image.shape[0]).to(image)[:, None, None, None]
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device="cpu").to(clean.device)
    return clean + sigma * noise


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """``image`` (…,H,W) cropped at the bottom and right to multiples of ``scale`` (how SR test images
    are prepared)."""
    height, width = image.shape[-2:]
    return image[..., :height - height % scale, :width - width % scale]
