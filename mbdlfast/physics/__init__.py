"""Multicoil MRI physics in pure torch: the SENSE operator, masks, coil maps, ESPIRiT and solvers.

(ESPIRiT lives in ``espirit_maps`` so that the submodule does not shadow the ``espirit`` function.)
"""
from mbdlfast.ops.fft import fft2c, fftc, ifft2c, ifftc
from mbdlfast.physics import masks
from mbdlfast.physics.coils import simulate_coil_maps
from mbdlfast.physics.espirit_maps import espirit
from mbdlfast.physics.linalg import adjointness_error, cg_sense, conjugate_gradient, power_iteration, rss
from mbdlfast.physics.sense import SenseOperator

__all__ = [
    "SenseOperator", "adjointness_error", "cg_sense", "conjugate_gradient", "espirit", "fft2c", "fftc", "ifft2c",
    "ifftc", "masks", "power_iteration", "rss", "simulate_coil_maps",
]
