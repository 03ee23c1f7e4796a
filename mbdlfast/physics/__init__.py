"""Physics in pure torch: the multicoil SENSE operator, masks, coil maps, ESPIRiT and solvers; the
blur-and-downsample model of super-resolution and its blur kernels.

(ESPIRiT lives in ``espirit_maps`` so that the submodule does not shadow the ``espirit`` function.)
"""
from mbdlfast.ops.fft import fft2c, fftc, ifft2c, ifftc
from mbdlfast.physics import blur_kernels, masks
from mbdlfast.physics.blur import BlurDownsample
from mbdlfast.physics.coils import simulate_coil_maps
from mbdlfast.physics.espirit_maps import espirit
from mbdlfast.physics.linalg import adjointness_error, cg_sense, conjugate_gradient, power_iteration, rss
from mbdlfast.physics.sense import SenseOperator

__all__ = [
    "BlurDownsample", "SenseOperator", "adjointness_error", "blur_kernels", "cg_sense", "conjugate_gradient", "espirit",
    "fft2c", "fftc", "ifft2c", "ifftc", "masks", "power_iteration", "rss", "simulate_coil_maps",
]
