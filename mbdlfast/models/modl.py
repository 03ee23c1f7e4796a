"""MoDL (Aggarwal, Mani & Jacob, 2019): unrolled alternation of a shared CNN denoiser and CG data consistency.

x₀ = Aᴴy, then ``num_iter`` times x ← (AᴴA + λI)⁻¹ (Aᴴy + λ·D(x)), with the same denoiser D and
the same learned λ in every iteration. The inverse is ``cg_iter`` conjugate-gradient steps on the
SENSE normal operator; autograd runs through the unrolled CG, so D and λ train end to end. The CG
runs its ``cg_iter`` iterations without looking at convergence on the host (a sample that reached
``cg_tol`` is frozen on the device), so a forward never waits on the device.
"""
from __future__ import annotations

import torch
from torch import nn

from mbdlfast.models.channels import ComplexAdapter
from mbdlfast.models.dncnn import DnCNN
from mbdlfast.physics.linalg import conjugate_gradient
from mbdlfast.physics.sense import SenseOperator


class MoDL(nn.Module):
    """Unrolled MoDL on complex64 multicoil data.

    Args:
        denoiser: complex (B,H,W) → complex (B,H,W) module; default the MoDL paper's residual CNN,
            ``ComplexAdapter(DnCNN(depth=5, channels=64, batch_norm=True))``.
        num_iter: unrolled iterations (denoiser + CG each), weights shared.
        cg_iter: conjugate-gradient iterations per data-consistency solve.
        lam: initial regularisation weight λ (learned; keep it positive, CG needs AᴴA + λI > 0).
        cg_tol: relative residual at which a sample's CG stops early.

    After a forward, ``last_info`` holds the last data-consistency CG's info (iterations, residuals,
    converged; see :func:`mbdlfast.physics.linalg.conjugate_gradient`).
    """

    def __init__(self, denoiser: nn.Module | None = None, num_iter: int = 10, cg_iter: int = 10, lam: float = 0.05,
                 cg_tol: float = 1e-6):
        super().__init__()
        if num_iter < 1 or cg_iter < 1:
            raise ValueError(f"MoDL: expected num_iter >= 1 and cg_iter >= 1, got {num_iter}, {cg_iter}")
        if lam <= 0:
            raise ValueError(f"lam: expected > 0, got {lam}")
        if denoiser is None:
            denoiser = ComplexAdapter(DnCNN(depth=5, channels=64, batch_norm=True))
        self.denoiser = denoiser
        self.num_iter, self.cg_iter, self.cg_tol = num_iter, cg_iter, cg_tol
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.last_info: dict | None = None

    def forward(self, kspace: torch.Tensor, physics: SenseOperator) -> torch.Tensor:
        """Undersampled k-space (B,C,H,W) and its SENSE operator → image (B,H,W)."""
        AHy = physics.A_adjoint(kspace)
        x = AHy
        for _ in range(self.num_iter):
            rhs = AHy + self.lam * self.denoiser(x)
            x, info = conjugate_gradient(physics.A_adjoint_A, rhs, x0=x, lam=self.lam, max_iter=self.cg_iter,
                                         tol=self.cg_tol, host_check_every=None)
        self.last_info = {key: value.detach() for key, value in info.items()}
        return x
