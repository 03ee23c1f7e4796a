"""Inverse problems for untrained priors: each task is a forward operator with a measurement and a loss.

A task sees the prior's output, a real (B, C, H, W) tensor. ``A`` maps it to measurement space,
``measure`` simulates a measurement of a ground truth, and ``loss`` is the mean squared misfit
``mean |A(x) - y|^2`` that fitting minimises. ``image`` turns a network output into the image that
is scored against the ground truth; ``psnr`` and ``score`` (PSNR and SSIM) score it.

* :class:`Denoising`: A = identity, y = clip(x + sigma * n, 0, 1) (sigma = 25/255 by default, as DIP).
* :class:`Inpainting`: A = multiplication by a fixed 0/1 mask of the (H, W) pixels.
* :class:`SuperResolution`: A = a separable Lanczos (a = 2, DIP's "lanczos2") antialiasing filter
  applied as a fixed depthwise convolution with stride ``factor`` and replicate padding.
* :class:`CompressedSensingMRI`: the two output channels are the real and imaginary parts of the image
  (mapped from the sigmoid's [0, 1] to [-1, 1]); A = the multicoil SENSE operator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mbdlfast._validation import check_int, check_tensor
from mbdlfast.metrics import ssim_batch

__all__ = ["CompressedSensingMRI", "DIPTask", "Denoising", "Inpainting", "SuperResolution", "lanczos_kernel"]


class DIPTask:
    """Base class: identity forward operator, noiseless measurement, images scored with data range 1."""

    name = "task"
    channels = 3

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def measure(self, truth: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """The measurement of a ground truth given in :meth:`image`'s layout (real (B, C, H, W) here)."""
        return self.A(self._check_output("truth", truth))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        residual = self.A(x) - y
        return residual.abs().square().mean()

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """The image a network output stands for (real (B, C, H, W) here)."""
        return x

    def to(self, device) -> "DIPTask":
        """Move the task's fixed tensors to ``device``; in place, returns the task."""
        return self

    def psnr(self, truth_image: torch.Tensor, estimate_image: torch.Tensor) -> torch.Tensor:
        """PSNR per batch entry of two images in :meth:`image`'s layout (data range 1; RGB scored over
        all channels at once, as DIP does)."""
        mse = (truth_image - estimate_image).square().flatten(1).mean(dim=1)
        return -10 * torch.log10(mse)

    def score(self, truth_image: torch.Tensor, estimate_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PSNR and SSIM per batch entry (SSIM with data range 1, averaged over the channels)."""
        batch, channels = truth_image.shape[:2]
        ssim = ssim_batch(truth_image.flatten(0, 1).float(), estimate_image.flatten(0, 1).float(), maxval=1.0)
        return self.psnr(truth_image, estimate_image), ssim.view(batch, channels).mean(dim=1)

    def _check_output(self, name: str, x) -> torch.Tensor:
        check_tensor(name, x)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{name}: expected (B, {self.channels}, H, W) for task {self.name}, "
                             f"got {tuple(x.shape)}")
        return x


class Denoising(DIPTask):
    name = "denoise"

    def __init__(self, sigma: float = 25 / 255, channels: int = 3):
        if not sigma >= 0:
            raise ValueError(f"sigma: expected a noise level >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.channels = check_int("channels", channels, minimum=1)

    def measure(self, truth: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        self._check_output("truth", truth)
        noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed)).to(truth)
        return (truth + self.sigma * noise).clamp(0, 1)


class Inpainting(DIPTask):
    """``mask``: 0/1 tensor, 1 where the pixel is known; (H, W) shared by the batch or (B, H, W)."""

    name = "inpaint"

    def __init__(self, mask: torch.Tensor, channels: int = 3):
        check_tensor("mask", mask)
        if mask.dim() not in (2, 3):
            raise ValueError(f"mask: expected an (H, W) or (B, H, W) 0/1 tensor, got shape {tuple(mask.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask: expected only 0/1 values")
        if not bool(mask.any()):
            raise ValueError("mask: keeps no pixel")
        self.mask = mask.float()
        self.channels = check_int("channels", channels, minimum=1)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check_output("x", x)
        if tuple(x.shape[-2:]) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"x: expected spatial size {tuple(self.mask.shape[-2:])} (the mask's), "
                             f"got {tuple(x.shape[-2:])}")
        if self.mask.dim() == 3 and x.shape[0] != self.mask.shape[0]:
            raise ValueError(f"x: expected batch {self.mask.shape[0]} (the mask's), got {x.shape[0]}")
        mask = self.mask.to(x)
        return x * (mask.unsqueeze(1) if mask.dim() == 3 else mask)

    def to(self, device) -> "Inpainting":
        self.mask = self.mask.to(device)
        return self


def lanczos_kernel(factor: int, support: int = 2) -> torch.Tensor:
    """The 1D Lanczos-``support`` antialiasing kernel for downsampling by ``factor``: 2*support*factor
    taps at half-integer offsets (the kernel of an even-size block), normalised to sum 1, float64."""
    factor = check_int("factor", factor, minimum=1)
    support = check_int("support", support, minimum=1)
    taps = 2 * support * factor
    t = (torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2) / factor
    kernel = torch.sinc(t) * torch.sinc(t / support)
    return kernel / kernel.sum()


class SuperResolution(DIPTask):
    """Downsampling by ``factor`` (4 or 8 in the papers; any integer >= 2 works) with a Lanczos-2 filter."""

    name = "sr"

    def __init__(self, factor: int = 4, channels: int = 3):
        self.factor = check_int("factor", factor, minimum=2)
        self.channels = check_int("channels", channels, minimum=1)
        kernel_1d = lanczos_kernel(self.factor).float()
        self.kernel = torch.outer(kernel_1d, kernel_1d)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check_output("x", x)
        height, width = x.shape[-2:]
        if height % self.factor or width % self.factor:
            raise ValueError(f"x: expected H and W to be multiples of factor {self.factor}, got {height}x{width}")
        taps = self.kernel.shape[-1]
        left = (taps - self.factor) // 2
        right = taps - self.factor - left
        padded = F.pad(x, (left, right, left, right), mode="replicate")
        weight = self.kernel.to(x).expand(self.channels, 1, taps, taps)
        return F.conv2d(padded, weight, stride=self.factor, groups=self.channels)

    def to(self, device) -> "SuperResolution":
        self.kernel = self.kernel.to(device)
        return self


class CompressedSensingMRI(DIPTask):
    """Multicoil MRI: the prior outputs (B, 2, H, W) in [0, 1], read as real/imag parts 2*out - 1;
    ``operator`` is a :class:`mbdlfast.physics.sense.SenseOperator`.

    Ground truths given to :meth:`measure` / :meth:`score` are complex (B, H, W) images scaled to
    magnitude <= 1; scores are on magnitude images with ``maxval`` = the truth's maximum (fastMRI).
    """

    name = "mri"
    channels = 2

    def __init__(self, operator, noise_std: float = 0.0):
        # imported here: only this task needs the SENSE operator (and the compiled ops behind it)
        from mbdlfast.physics.sense import SenseOperator

        if not isinstance(operator, SenseOperator):
            raise TypeError(f"operator: expected a SenseOperator, got {type(operator).__name__}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std: expected >= 0, got {noise_std}")
        self.operator = operator
        self.noise_std = float(noise_std)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        self._check_output("x", x)
        signed = 2 * x - 1
        return torch.complex(signed[:, 0], signed[:, 1]).to(self.operator.dtype)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator.A(self.image(x))

    def to(self, device) -> "CompressedSensingMRI":
        self.operator = self.operator.to(device)
        return self

    def measure(self, truth: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """k-space of a complex (B, H, W) ground truth, plus complex Gaussian noise of ``noise_std`` per part."""
        check_tensor("truth", truth)
        kspace = self.operator.A(truth)
        if self.noise_std:
            noise = torch.randn(kspace.shape, dtype=kspace.dtype, generator=torch.Generator().manual_seed(seed))
            kspace = kspace + self.noise_std * math.sqrt(2) * noise.to(kspace.device)
        return kspace

    def psnr(self, truth_image: torch.Tensor, estimate_image: torch.Tensor) -> torch.Tensor:
        truth, estimate = truth_image.abs(), estimate_image.abs()
        maxval = truth.flatten(1).amax(dim=1)
        mse = (truth - estimate).square().flatten(1).mean(dim=1)
        return 10 * torch.log10(maxval.square() / mse)

    def score(self, truth_image: torch.Tensor, estimate_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.psnr(truth_image, estimate_image), ssim_batch(truth_image.abs(), estimate_image.abs())
