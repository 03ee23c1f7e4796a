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
(Zhao et al.'s fast single-image super-resolution). The spectral part is the dispatched op
:func:`mbdlfast.ops.sr_data_solve` (torch reference, fused Triton kernel).
"""
from __future__ import annotations

import math

import torch

from mbdlfast import ops
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


def check_noise_level(noise_level):
    """A finite number >= 0 or a 1-D real tensor of them (not read on a GPU: values are checked on CPU only)."""
    if isinstance(noise_level, torch.Tensor):
        check_ndim("noise_level", noise_level, (0, 1), "a number or one per sample (B,)")
        if noise_level.is_complex() or not noise_level.is_floating_point():
            raise TypeError(f"noise_level: expected real values, got {noise_level.dtype}")
        if noise_level.device.type == "cpu" and not bool(((noise_level >= 0) & torch.isfinite(noise_level)).all()):
            raise ValueError("noise_level: expected finite values >= 0")
        return noise_level
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) \
            or not (math.isfinite(noise_level) and noise_level >= 0):
        raise ValueError(f"noise_level: expected a finite number >= 0 or a (B,) tensor, got {noise_level!r}")
    return float(noise_level)


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
        noise_level: the standard deviation of the white Gaussian noise on y (images in [0,1]), a
            number or one per sample (B,): what USRNet's hyper-network is told.
    """

    def __init__(self, kernel: torch.Tensor, scale: int, noise_level: float | torch.Tensor = 0.0):
        super().__init__()
        self.register_buffer("kernel", check_kernel("kernel", kernel), persistent=False)
        self.scale = check_int("scale", scale, minimum=1)
        self.noise_level = check_noise_level(noise_level)

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

    def data_term(self, y: torch.Tensor) -> "BlurDataTerm":
        """What every data step on measurements ``y`` shares (the transfer function and F Aᴴy),
        computed once per reconstruction."""
        y = self._checked("y", y)
        height, width = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        self._check_against(y, "y", height, width)
        otf = torch.fft.fft2(centred_kernel_image(self.kernel, height, width))  # full spectrum: aliases along W too
        return BlurDataTerm(otf if otf.dim() == 3 else otf[None], torch.fft.fft2(self.A_adjoint(y)), self.scale)

    def data_step(self, z: torch.Tensor, y: torch.Tensor, alpha) -> torch.Tensor:
        """argmin_x ‖A x − y‖² + α‖x − z‖² in closed form (module docstring); ``alpha`` > 0, a number or
        one per sample (B,). Several steps on one ``y``: :meth:`data_term` once, then its ``solve``."""
        return self.data_term(y).solve(z, alpha)

    def noise_levels(self, batch: int) -> torch.Tensor:
        """The noise standard deviation of each of ``batch`` samples, (B,), in the kernel's dtype."""
        levels = torch.as_tensor(self.noise_level, dtype=self.kernel.dtype, device=self.kernel.device).reshape(-1)
        if levels.numel() not in (1, batch):
            raise ValueError(f"noise_level: {levels.numel()} values for a batch of {batch}")
        return levels.expand(batch)


class BlurDataTerm:
    """The data step of :class:`BlurDownsample` on fixed measurements: ``solve(z, alpha)`` runs
    :func:`mbdlfast.ops.sr_data_solve` (the backend the dispatcher picks) between two FFTs."""

    def __init__(self, otf: torch.Tensor, adjoint_spectrum: torch.Tensor, scale: int):
        self.otf, self.adjoint_spectrum, self.scale = otf, adjoint_spectrum, scale

    def solve(self, z: torch.Tensor, alpha) -> torch.Tensor:
        """argmin_x ‖A x − y‖² + α‖x − z‖² for (B,C,H,W) ``z``; α > 0, a number or (B,)."""
        z = check_tensor("z", z)
        check_ndim("z", z, (4,), "real images (B,C,H,W)")
        if z.is_complex() or z.shape != self.adjoint_spectrum.shape:
            raise ValueError(f"z: expected real images of shape {tuple(self.adjoint_spectrum.shape)} (y's size times "
                             f"scale={self.scale}), got {z.dtype} {tuple(z.shape)}")
        if isinstance(alpha, (int, float)) and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha: expected a finite number > 0, got {alpha!r}")
        spectrum = ops.sr_data_solve(torch.fft.fft2(z), self.adjoint_spectrum, self.otf, alpha, self.scale)
        return torch.fft.ifft2(spectrum).real
