"""Rotations of complex images and coil maps, the group actions T_g of equivariant imaging.

Both functions rotate each sample of a (B, ..., H, W) tensor about the pixel (H//2, W//2), the
pixel the centred FFT (:func:`mbdlfast.ops.fft.fft2c`) treats as the origin, so a rotation
commutes with it: F·T_g = T_g·F.

* :func:`rotate_quarter_turns` (square images only): multiples of 90°. These are permutations of
  the pixels (with a circular wrap of the one row/column the even-size centre leaves unpaired), so
  the commutation is exact and nothing is blurred: the rotated image is as sharp as the original.
* :func:`rotate_bilinear`: any angle, with bilinear interpolation (``grid_sample``) and zeros
  outside the field of view; it commutes with F only up to the interpolation.

Complex tensors are rotated on their real and imaginary parts alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mbdlfast._validation import check_tensor

__all__ = ["rotate_bilinear", "rotate_quarter_turns"]


def _check_batch(name: str, x: torch.Tensor, per_sample: torch.Tensor, what: str) -> None:
    check_tensor(name, x)
    check_tensor(what, per_sample)
    if x.dim() < 3:
        raise ValueError(f"{name}: expected (B, ..., H, W), got shape {tuple(x.shape)}")
    if per_sample.shape != (x.shape[0],):
        raise ValueError(f"{what}: expected one value per sample, shape ({x.shape[0]},), got {tuple(per_sample.shape)}")


def _quarter_turn(image: torch.Tensor, turns: int) -> torch.Tensor:
    """One sample (..., N, N) turned ``turns`` times by 90° (the direction of torch.rot90) about pixel N//2."""
    size = image.shape[-1]
    mirror = (2 * (size // 2) - torch.arange(size, device=image.device)) % size  # i -> 2c - i about c = N//2
    turns %= 4
    if turns == 0:
        return image
    if turns == 1:
        return image.transpose(-2, -1)[..., mirror, :]
    if turns == 2:
        return image[..., mirror, :][..., mirror]
    return image.transpose(-2, -1)[..., mirror]


def rotate_quarter_turns(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Sample ``b`` of ``x`` (B, ..., N, N) rotated by ``turns[b]`` × 90° about pixel (N//2, N//2), exactly."""
    _check_batch("x", x, turns, "turns")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x: quarter turns need square images, got {x.shape[-2]}x{x.shape[-1]}; "
                         "use rotate_bilinear for other shapes")
    return torch.stack([_quarter_turn(sample, int(k)) for sample, k in zip(x, turns.tolist())])


def rotate_bilinear(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Sample ``b`` of ``x`` (B, ..., H, W) rotated by ``angles[b]`` radians about pixel (H//2, W//2).

    Bilinear interpolation in pixel units (so non-square images rotate without distortion); points
    that come from outside the image are zero. A positive angle turns the way :func:`rotate_quarter_turns`
    does, and an angle of k·π/2 reproduces it away from the wrapped border row/column.
    """
    _check_batch("x", x, angles, "angles")
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    real = torch.view_as_real(x) if x.is_complex() else x.unsqueeze(-1)
    channels = real.movedim(-1, 1).reshape(batch, -1, height, width)
    work_dtype = channels.dtype if channels.dtype in (torch.float32, torch.float64) else torch.float32
    rows = torch.arange(height, device=x.device, dtype=work_dtype) - height // 2
    cols = torch.arange(width, device=x.device, dtype=work_dtype) - width // 2
    dy, dx = torch.meshgrid(rows, cols, indexing="ij")
    cos = angles.to(x.device, work_dtype).cos()[:, None, None]
    sin = angles.to(x.device, work_dtype).sin()[:, None, None]
    source_x = cos * dx - sin * dy + width // 2  # the pixel each output pixel reads (inverse rotation)
    source_y = sin * dx + cos * dy + height // 2
    grid = torch.stack([(2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1], dim=-1)
    rotated = F.grid_sample(channels.to(work_dtype), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False).to(channels.dtype)
    rotated = rotated.reshape(batch, real.shape[-1], *x.shape[1:]).movedim(1, -1)
    return torch.view_as_complex(rotated.contiguous()) if x.is_complex() else rotated.squeeze(-1)
