"""Hutchinson estimate of a fixed-point map's Jacobian norm: the regulariser that keeps a DEQ contractive.

Bai, Koltun & Kolter (2021, "Stabilizing Equilibrium Models by Jacobian Regularization") add
μ·‖J_f(z*)‖²_F / d to the training loss: a map whose Jacobian is small near its equilibrium is a
contraction there, so the fixed point is unique and a solver reaches it in few steps, and training
cannot move the model towards a fixed point that no solver reaches (what a DEQ trained only on a
capped iteration count learns). For a probe ε with independent standard normal real components,
E‖εᵀJ‖² = ‖J‖²_F, and εᵀJ is one vector-Jacobian product.

Complex states are treated as the real-linear maps they are (a real CNN on real and imaginary
channels): ε has standard normal real and imaginary parts and d counts real components, so the
estimate is the mean squared singular value of the 2n×2n real Jacobian.
"""
from __future__ import annotations

from typing import Callable

import torch


def _real_size(z: torch.Tensor) -> int:
    return z.numel() * (2 if z.is_complex() else 1)


def jacobian_frobenius(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, *, samples: int = 1,
                       create_graph: bool = True) -> torch.Tensor:
    """Hutchinson estimate of ‖J_f(z)‖²_F / d (d: real components of z) over ``samples`` probes.

    ``z`` is taken as a constant point (detached); with ``create_graph`` the estimate is
    differentiable in f's parameters, to be added to a training loss. Returns a real scalar.
    """
    if samples < 1:
        raise ValueError(f"samples: expected >= 1, got {samples}")
    point = z.detach().requires_grad_(True)
    with torch.enable_grad():
        value = f(point)
        if value.shape != point.shape:
            raise ValueError(f"f: expected an output of the input's shape {tuple(point.shape)}, got {tuple(value.shape)}")
        total = value.new_zeros((), dtype=value.real.dtype)
        for sample in range(samples):
            probe = torch.randn_like(value)  # complex randn: real and imaginary parts of variance 1/2
            if probe.is_complex():
                probe = probe * 2 ** 0.5
            (vjp,) = torch.autograd.grad(value, point, probe, create_graph=create_graph,
                                         retain_graph=create_graph or sample + 1 < samples)
            total = total + vjp.abs().square().sum()
    return total / (samples * _real_size(point))
