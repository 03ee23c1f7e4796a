"""DEQ with a plug-and-play proximal-gradient iteration (Gilton, Ongie & Willett, 2021).

The reconstruction is the fixed point z* = T(z*) of

    v = z − γ·Aᴴ(Az − y),        T(z) = α·D(v) + (1 − α)·v,

with a CNN denoiser D (EDSR by default), learned α and γ, z₀ = Aᴴy (computed once) and the
gradient step through :func:`mbdlfast.ops.dc_gradient_step` (via ``SenseOperator.dc_step``). The
fixed point is found by Anderson acceleration in :class:`mbdlfast.deq.DEQFixedPoint`, which also
gives the backward (JFB, as the published DEQ-MRI code trains, or the implicit-function gradient).
"""
from __future__ import annotations

import torch
from torch import nn

from mbdlfast.deq import SOLVERS, DEQFixedPoint, accepted_kwargs, jacobian_frobenius
from mbdlfast.models.channels import ComplexAdapter
from mbdlfast.models.edsr import EDSR
from mbdlfast.physics.sense import SenseOperator

_PUBLISHED_SOLVER_SETTINGS = dict(m=5, lam=1e-4, beta=1.0, tol=1e-3, max_iter=100, weights="real")


class DEQ(nn.Module):
    """Deep-equilibrium PnP proximal-gradient reconstruction on complex64 multicoil data.

    Args:
        denoiser: complex (B,H,W) → complex (B,H,W) module; default ``ComplexAdapter(EDSR())``, the
            published 13-block, 64-feature prior.
        alpha: initial denoiser weight α (learned).
        gamma: initial gradient step γ (learned); γ ≤ 1 keeps I − γAᴴA non-expansive for maps
            with RSS ≤ 1 and orthonormal FFTs.
        backward: "jfb" or "ift", see :class:`mbdlfast.deq.DEQFixedPoint`.
        solver: the forward fixed-point solver, a name of :data:`mbdlfast.deq.SOLVERS` (``"fixed_point"``
            is the seed's plain iteration).
        solver_kwargs: for the solver; over the defaults m=5, lam=1e-4, beta=1, tol=1e-3,
            max_iter=100 (the published settings) and weights="real" (T is only real-linear, a real
            CNN on the real and imaginary channels, so complex Anderson weights would stall), of
            which each solver gets those it takes.

    After a forward, ``last_info`` holds the solver's info (``nstep`` f-evaluations of the batch,
    ``sample_nstep``, ``converged``, residuals, ...).
    """

    def __init__(self, denoiser: nn.Module | None = None, alpha: float = 0.5, gamma: float = 1.0,
                 backward: str = "jfb", solver: str = "anderson", solver_kwargs: dict | None = None):
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {sorted(SOLVERS)}, got {solver!r}")
        self.denoiser = denoiser if denoiser is not None else ComplexAdapter(EDSR())
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))
        self.backward = backward
        self.solver = solver
        self.solver_kwargs = {**accepted_kwargs(solver, _PUBLISHED_SOLVER_SETTINGS), **(solver_kwargs or {})}
        self.last_info: dict | None = None

    def iteration(self, z: torch.Tensor, physics: SenseOperator, AHy: torch.Tensor) -> torch.Tensor:
        """One application of T: a gradient step on the data term, then the relaxed denoiser."""
        v = physics.dc_step(z, AHy, self.gamma)
        return self.alpha * self.denoiser(v) + (1 - self.alpha) * v

    def forward(self, kspace: torch.Tensor, physics: SenseOperator) -> torch.Tensor:
        """Undersampled k-space (B,C,H,W) and its SENSE operator → image (B,H,W)."""
        AHy = physics.A_adjoint(kspace)
        equilibrium = DEQFixedPoint(self.iteration, solver=self.solver, backward=self.backward,
                                    solver_kwargs=self.solver_kwargs)
        out = equilibrium(AHy, physics, AHy)
        self.last_info = equilibrium.last_info
        return out

    def jacobian_penalty(self, image: torch.Tensor, kspace: torch.Tensor, physics: SenseOperator, *,
                         samples: int = 1) -> torch.Tensor:
        """Hutchinson estimate of ‖J_T(image)‖²_F / d, differentiable in the parameters: the Jacobian
        regulariser of training (``train.jacobian_weight``), evaluated at the reconstruction ``image``
        (the equilibrium up to the solver's tolerance) of ``kspace``."""
        AHy = physics.A_adjoint(kspace)
        return jacobian_frobenius(lambda z: self.iteration(z, physics, AHy), image, samples=samples)
