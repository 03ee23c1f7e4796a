"""Linear forward models y = A·x as modules: the interface every physics object of mbdlfast has.

A subclass defines ``A`` and ``A_adjoint``; it inherits the normal map ``A_adjoint_A`` (override it
when a fused form exists, as :class:`~mbdlfast.physics.sense.SenseOperator` does), the least-squares
pseudo-inverse ``A_dagger`` by conjugate gradient on the normal equations, and composition
``outer @ inner`` (A = A_outer·A_inner). Being modules, physics objects move with ``.to()`` and keep
their tensors as buffers, but they are inputs of a reconstruction, never a model's submodule.
"""
from __future__ import annotations

import torch
from torch import nn

from mbdlfast.physics.linalg import cg_sense


class LinearPhysics(nn.Module):
    """A linear operator with ``A``, ``A_adjoint``, ``A_adjoint_A``, ``A_dagger`` and composition."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define A")

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define A_adjoint")

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        """The normal map Aᴴ·A."""
        return self.A_adjoint(self.A(x))

    def A_dagger(self, y: torch.Tensor, *, lam: float = 0.0, max_iter: int = 50, tol: float = 1e-6,
                 x0: torch.Tensor | None = None) -> torch.Tensor:
        """The regularised least-squares solution argmin ||A·x − y||² + lam·||x||², by conjugate gradient
        on (AᴴA + lam·I)·x = Aᴴy (for SENSE: CG-SENSE). Each sample stops at relative residual ``tol``;
        :func:`~mbdlfast.physics.linalg.cg_sense` returns the solver's convergence report too."""
        return cg_sense(self, y, lam=lam, max_iter=max_iter, tol=tol, x0=x0)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def __matmul__(self, inner: "LinearPhysics") -> "ComposedPhysics":
        if not isinstance(inner, LinearPhysics):
            return NotImplemented
        return ComposedPhysics(self, inner)


class ComposedPhysics(LinearPhysics):
    """A = A_outer·A_inner, so Aᴴ = A_innerᴴ·A_outerᴴ (``outer @ inner``)."""

    def __init__(self, outer: LinearPhysics, inner: LinearPhysics):
        super().__init__()
        self.outer, self.inner = outer, inner

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.A(self.inner.A(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.A_adjoint(self.outer.A_adjoint(y))

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.A_adjoint(self.outer.A_adjoint_A(self.inner.A(x)))
