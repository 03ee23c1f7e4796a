"""Super-resolution quality with the conventions of USRNet's evaluation (and the seed's Table 4).

Images are real (B,C,H,W) in [0, 1]. Both are scored as the 8-bit images a user would save: clipped
to [0, 1] and rounded to multiples of 1/255; a frame of ``border`` pixels (the scale, by convention)
is left out. PSNR uses a peak of 1 and the MSE over all channels; SSIM is Wang et al.'s with an 11×11
Gaussian window of width 1.5 (MATLAB's ``ssim``), population statistics, K1 = 0.01, K2 = 0.03, over
the valid positions of each channel, averaged over the channels. (:mod:`mbdlfast.metrics` keeps
fastMRI's conventions for MRI.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mbdlfast._validation import check_ndim, check_tensor

WINDOW, WINDOW_SIGMA = 11, 1.5
K1, K2 = 0.01, 0.03


def _prepared(name: str, image: torch.Tensor, border: int) -> torch.Tensor:
    image = check_tensor(name, image)
    check_ndim(name, image, (4,), "real images (B,C,H,W)")
    if image.is_complex():
        raise TypeError(f"{name}: expected real images, got {image.dtype}")
    height, width = image.shape[-2:]
    if min(height, width) - 2 * border < WINDOW:
        raise ValueError(f"{name}: {height}x{width} less a border of {border} is smaller than the {WINDOW}x{WINDOW} "
                         "SSIM window")
    image = image[..., border:height - border, border:width - border].double()
    return torch.round(image.clamp(0.0, 1.0) * 255.0) / 255.0


def _gaussian_window(dtype, device) -> torch.Tensor:
    offsets = torch.arange(WINDOW, dtype=dtype, device=device) - WINDOW // 2
    profile = torch.exp(-offsets.square() / (2 * WINDOW_SIGMA**2))
    profile = profile / profile.sum()
    return (profile[:, None] * profile[None, :])[None, None]


def sr_quality(target: torch.Tensor, prediction: torch.Tensor, border: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR in dB, SSIM) of each sample, two (B,) float64 tensors; see the module docstring."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border: expected an integer >= 0, got {border!r}")
    target, prediction = _prepared("target", target, border), _prepared("prediction", prediction, border)
    if target.shape != prediction.shape:
        raise ValueError(f"prediction: shape {tuple(prediction.shape)} differs from the target's {tuple(target.shape)}")
    mse = (target - prediction).square().mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-20))

    batch, channels = target.shape[:2]
    window = _gaussian_window(target.dtype, target.device)
    stacked = torch.stack([target, prediction, target * target, prediction * prediction, target * prediction], dim=2)
    means = F.conv2d(stacked.flatten(0, 2)[:, None], window)[:, 0].unflatten(0, (batch, channels, 5))
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = means.unbind(dim=2)
    var_x, var_y, cov = mu_xx - mu_x.square(), mu_yy - mu_y.square(), mu_xy - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return psnr, ssim_map.mean(dim=(1, 2, 3))
