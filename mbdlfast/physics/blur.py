"""The super-resolution forward model y = (k ⊛ x)↓s (USRNet's degradation, the seed's section 4.2).

``k ⊛ x`` is the circular convolution of each channel with a blur kernel whose centre is its middle
pixel (odd sizes), computed with real FFTs; ``↓s`` keeps the pixels (s·i, s·j), the top-left one of
every s×s block, as USRNet does. The adjoint is zero-filling upsampling followed by correlation with
the kernel (convolution with the conjugate transfer function). Images are real (B,C,H,W) with H and
W multiples of s; one (kh,kw) kernel for the whole batch or one per sample (B,kh,kw).

:meth:`BlurDownsample.data_step` is the exact minimiser of ‖A x − y‖² + α‖x − z‖², USRNet's data
module: with K the kernel's transfer function and SᴴS (keeping every s-th pixel) averaging each
frequency with its s² aliases (ω + (aH/s, bW/s)), Woodbury's identity on the rank-one alias blocks
gives X = (R − K̄ · ⟨K R⟩ / (α + ⟨|K|²⟩)) / α with R = F(Aᴴy + α z) and ⟨·⟩ the alias mean
(Zhao et al.'s fast single-image super-resolution; the reference of the fused op to come).
"""
from __future__ import annotations

import math

import torch

from mbdlfast._validation import check_finite, check_int, check_ndim, check_tensor
from mbdlfast.physics.linear import LinearPhysics

REAL_DTYPES = (torch.float32, torch.float64)


def check_kernel(name: str, kernel) -> torch.Tensor:
    """A real, finite (kh,kw) or (B,kh,kw) kernel with odd sides (so that its centre is a pixel)."""
    kernel = check_tensor(name, kernel)
    if kernel.dtype not in REAL_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 blur kernel, got {kernel.dtype}")
    check_ndim(name, kernel, (2, 3), "(kh,kw) or (B,kh,kw)")
    height, width = kernel.shape[-2:]
    if height % 2 == 0 or width % 2 == 0:
        raise ValueError(f"{name}: expected odd kernel sides (its centre is the middle pixel), got {height}x{width}")
    return check_finite(name, kernel)


def centred_kernel_image(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``kernel`` zero-padded to H×W and rolled so that its centre lands on pixel (0,0): the image whose
    FFT is the transfer function of circular convolution with it."""
    kh, kw = kernel.shape[-2:]
    padded = torch.nn.functional.pad(kernel, (0, width - kw, 0, height - kh))
    return torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))


def transfer_function(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The real-FFT transfer function (…,H,W//2+1) of circular convolution with ``kernel`` on H×W images."""
    return torch.fft.rfft2(centred_kernel_image(kernel, height, width))


class BlurDownsample(LinearPhysics):
    """``A x = (kernel ⊛ x)↓scale`` on real (B,C,H,W) images; see the module docstring.

    Args:
        kernel: (kh,kw) for every sample, or (B,kh,kw) one per sample; odd sides, real, finite.
        scale: the downsampling factor s >= 1 (1: deblurring only).
    """

    def __init__(self, kernel: torch.Tensor, scale: int):
        super().__init__()
        self.register_buffer("kernel", check_kernel("kernel", kernel), persistent=False)
        self.scale = check_int("scale", scale, minimum=1)

    def _transfer(self, x: torch.Tensor, name: str, height: int, width: int) -> torch.Tensor:
        self._check_against(x, name, height, width)
        otf = transfer_function(self.kernel, height, width)
        return otf[:, None] if otf.dim() == 3 else otf

    def _check_against(self, x: torch.Tensor, name: str, height: int, width: int) -> None:
        kh, kw = self.kernel.shape[-2:]
        if kh > height or kw > width:
            raise ValueError(f"{name}: the {kh}x{kw} kernel is larger than the {height}x{width} image")
        if self.kernel.dim() == 3 and self.kernel.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: batch of {x.shape[0]}, but {self.kernel.shape[0]} per-sample kernels")
        if x.dtype != self.kernel.dtype or x.device != self.kernel.device:
            raise TypeError(f"{name}: expected {self.kernel.dtype} on {self.kernel.device} (the kernel's), "
                            f"got {x.dtype} on {x.device}")

    def _checked(self, name: str, value: torch.Tensor) -> torch.Tensor:
        value = check_tensor(name, value)
        check_ndim(name, value, (4,), "real images (B,C,H,W)")
        if value.is_complex():
            raise TypeError(f"{name}: expected real images, got {value.dtype}")
        return value

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,C,H/s,W/s)."""
        x = self._checked("x", x)
        height, width = x.shape[-2:]
        if height % self.scale or width % self.scale:
            raise ValueError(f"x: the image size {height}x{width} is not a multiple of scale={self.scale}")
        otf = self._transfer(x, "x", height, width)
        blurred = torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=(height, width))
        return blurred[..., ::self.scale, ::self.scale]

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """(B,C,h,w) -> (B,C,h·s,w·s)."""
        y = self._checked("y", y)
        height, width = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        otf = self._transfer(y, "y", height, width)
        upsampled = y.new_zeros(*y.shape[:-2], height, width)
        upsampled[..., ::self.scale, ::self.scale] = y
        return torch.fft.irfft2(torch.fft.rfft2(upsampled) * otf.conj(), s=(height, width))

    def data_step(self, z: torch.Tensor, y: torch.Tensor, alpha) -> torch.Tensor:
        """argmin_x ‖A x − y‖² + α‖x − z‖² in closed form (module docstring); ``alpha`` > 0, a number or
        one per sample (B,)."""
        z, y = self._checked("z", z), self._checked("y", y)
        height, width = z.shape[-2:]
        if (y.shape[-2] * self.scale, y.shape[-1] * self.scale) != (height, width) or y.shape[:2] != z.shape[:2]:
            raise ValueError(f"y: expected {tuple(z.shape[:2])} images of {height // self.scale}x{width // self.scale} "
                             f"(z's size over scale={self.scale}), got {tuple(y.shape)}")
        if isinstance(alpha, (int, float)) and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha: expected a finite number > 0, got {alpha!r}")
        alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1)
        self._check_against(z, "z", height, width)
        otf = torch.fft.fft2(centred_kernel_image(self.kernel, height, width))  # full spectrum: aliases along W too
        otf = otf[:, None] if otf.dim() == 3 else otf
        rhs = torch.fft.fft2(self.A_adjoint(y) + alpha * z)
        blurred = self._alias_mean(otf * rhs)
        energy = self._alias_mean(otf.abs().square())
        correction = otf.conj() * (blurred / (alpha + energy)).repeat(*([1] * (rhs.dim() - 2)), self.scale, self.scale)
        return torch.fft.ifft2((rhs - correction) / alpha).real

    def _alias_mean(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The mean of each frequency's s² aliases: (…,H,W) -> (…,H/s,W/s)."""
        s = self.scale
        height, width = spectrum.shape[-2:]
        return spectrum.reshape(*spectrum.shape[:-2], s, height // s, s, width // s).mean(dim=(-4, -2))
