"""Test images of the DIP / LIP experiments: names, loading, cropping and resizing.

Images live in ``../shared/data/images`` next to the repository (or ``$MBDLFAST_SHARED_DATA/images``);
they are not shipped with the package. :data:`KNOWN_IMAGES` maps short names (case-insensitive) to
paths below that folder; any existing file path works too. :data:`IMAGE_SETS` groups them as the
benchmark uses them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mbdlfast.shared_data import missing_message, shared_data_dir

__all__ = ["IMAGE_SETS", "KNOWN_IMAGES", "default_image_root", "load_image", "load_inpainting_mask", "resolve_image"]

_DIP = "deep-image-prior"
_SET5 = ("baby", "bird", "butterfly", "head", "woman")
_SET14 = ("baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman", "lenna", "man",
          "monarch", "pepper", "ppt3", "zebra")

KNOWN_IMAGES: dict[str, str] = {
    "f16": f"{_DIP}/denoising/F16_GT.png",
    "snail": f"{_DIP}/denoising/snail.jpg",
    "kate": f"{_DIP}/inpainting/kate.png",
    "library": f"{_DIP}/inpainting/library.png",
    "vase": f"{_DIP}/inpainting/vase.png",
    "barbara": f"{_DIP}/restoration/barbara.png",
    "zebra": f"{_DIP}/sr/zebra_GT.png",
    **{f"set5/{name}": f"set5/{name}.png" for name in _SET5},
    **{f"set14/{name}": f"set14/{name}.png" for name in _SET14},
}

# inpainting images with their published masks (the mask file lies beside the image)
INPAINTING_MASKS = {"kate": f"{_DIP}/inpainting/kate_mask.png", "library": f"{_DIP}/inpainting/library_mask.png",
                    "vase": f"{_DIP}/inpainting/vase_mask.png"}

IMAGE_SETS: dict[str, tuple[str, ...]] = {
    "dip": ("f16",),
    "set5": tuple(f"set5/{name}" for name in _SET5),
    "set14": tuple(f"set14/{name}" for name in _SET14),
    "inpainting": tuple(INPAINTING_MASKS),
}


def default_image_root() -> Path:
    """``images/`` of the shared data folder (:func:`mbdlfast.shared_data.shared_data_dir`)."""
    return shared_data_dir() / "images"


def resolve_image(name: str, root: Path | str | None = None) -> Path:
    """The file of a known image name (see :data:`KNOWN_IMAGES`) or an existing path."""
    if not isinstance(name, (str, Path)):
        raise TypeError(f"image: expected a name or a path, got {type(name).__name__}")
    key = str(name).lower()
    if key in KNOWN_IMAGES:
        path = Path(root or default_image_root()) / KNOWN_IMAGES[key]
        if not path.is_file():
            raise FileNotFoundError(f"image: {name!r}: {missing_message(path)}")
        return path
    path = Path(name)
    if path.is_file():
        return path
    raise ValueError(f"image: {name!r} is neither a known image ({', '.join(sorted(KNOWN_IMAGES))}) nor a file")


def _read(path: Path) -> np.ndarray:
    from skimage import io

    return np.asarray(io.imread(path))


def _crop_resize(array: np.ndarray, size: int | None, multiple: int, *, order: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` (when given), else centre-crop to multiples of ``multiple``."""
    height, width = array.shape[:2]
    if size is None:
        new_h, new_w = height - height % multiple, width - width % multiple
        if not new_h or not new_w:
            raise ValueError(f"image: {height}x{width} is smaller than one block of {multiple} pixels")
        top, left = (height - new_h) // 2, (width - new_w) // 2
        return array[top:top + new_h, left:left + new_w]
    if size % multiple:
        raise ValueError(f"size: expected a multiple of {multiple}, got {size}")
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = array[top:top + side, left:left + side]
    if side == size:
        return square
    from skimage.transform import resize

    return resize(square, (size, size, *square.shape[2:]), order=order, anti_aliasing=order > 0,
                  preserve_range=True)


def load_image(name: str, *, size: int | None = None, grayscale: bool = False, multiple: int = 32,
               root: Path | str | None = None) -> torch.Tensor:
    """An image as a float32 (1, C, H, W) tensor in [0, 1] (C = 3, or 1 when ``grayscale`` or a gray file).

    ``size``: centre-crop to a square and resize to ``size`` x ``size`` (anti-aliased); without it the
    image is centre-cropped to multiples of ``multiple`` (the hourglass needs multiples of 2**levels).
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size: expected a positive integer, got {size!r}")
    array = _read(resolve_image(name, root)).astype(np.float64) / 255.0
    if array.ndim == 3:
        array = array[..., :3]
        if grayscale:
            array = array @ np.array([0.299, 0.587, 0.114])
    array = _crop_resize(array, size, multiple, order=1)
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float().clamp(0, 1)
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.unsqueeze(0)


def load_inpainting_mask(name: str, *, size: int | None = None, multiple: int = 32,
                         root: Path | str | None = None) -> torch.Tensor:
    """The published inpainting mask of ``name`` (kate, library, vase) as an (H, W) 0/1 float tensor,
    cropped and resized like :func:`load_image` (nearest neighbour)."""
    key = str(name).lower()
    if key not in INPAINTING_MASKS:
        raise ValueError(f"image: no inpainting mask for {name!r}; known: {', '.join(INPAINTING_MASKS)}")
    array = _read(Path(root or default_image_root()) / INPAINTING_MASKS[key])
    array = array[..., 0] if array.ndim == 3 else array
    array = _crop_resize((array > 127).astype(np.float64), size, multiple, order=0)
    return torch.from_numpy(np.ascontiguousarray(array > 0.5)).float()
