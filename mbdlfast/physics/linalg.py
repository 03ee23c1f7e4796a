"""Batched linear algebra on images: conjugate gradient, CG-SENSE, power iteration, adjoint test, RSS.

Every solver treats dim 0 as the batch: inner products, step sizes and convergence are per sample,
so one badly conditioned sample neither stops nor slows the others' arithmetic. Convergence is
decided on the device; the host looks at it only every few iterations, to stop the loop early.
The solvers are written out of place, so autograd can run through them (e.g. MoDL's unrolled CG).
"""
from __future__ import annotations

from typing import Callable

import torch

from mbdlfast._validation import check_tensor
from mbdlfast.sync_guard import allow_host_sync

# How many iterations run between two host checks of "every sample converged" (each is a sync on GPU).
_HOST_CHECK_EVERY = 4


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real part of <a, b> = Σ conj(a)·b over all dims but the first: shape (B,)."""
    return (a.conj() * b).real.reshape(a.shape[0], -1).sum(dim=1)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) to (B,1,...,1) for broadcasting against ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    lam=0.0,
    max_iter: int = 50,
    tol: float = 1e-6,
    host_check_every: int | None = _HOST_CHECK_EVERY,
) -> tuple[torch.Tensor, dict]:
    """Solve (normal + lam·I) x = rhs for each batch entry, with ``normal`` Hermitian positive semi-definite.

    A sample stops (its iterate is frozen) once ||rhs − (normal + lam·I) x|| ≤ tol·||rhs||. Every
    ``host_check_every`` iterations the host looks whether all have stopped, to end the loop early
    (a synchronisation); ``None`` never looks and runs ``max_iter`` iterations (the frozen samples do
    not change), with no host synchronisation at all (e.g. an unrolled network, a CUDA graph).

    Returns ``(x, info)`` with info["iterations"] (B,) the iterations each sample used,
    info["residuals"] (k+1, B) the relative residual norms after each of the k iterations run, and
    info["converged"] (B,) bool.
    """
    check_tensor("rhs", rhs)
    if rhs.dim() < 1 or rhs.shape[0] == 0:
        raise ValueError(f"rhs: expected a batch (B,...) with B >= 1, got shape {tuple(rhs.shape)}")
    if max_iter < 0:
        raise ValueError(f"max_iter: expected >= 0, got {max_iter}")
    if x0 is not None and (not isinstance(x0, torch.Tensor) or x0.shape != rhs.shape or x0.dtype != rhs.dtype):
        raise ValueError(f"x0: expected a tensor of rhs's shape {tuple(rhs.shape)} and dtype {rhs.dtype}")

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = normal(v)
        if out.shape != v.shape:
            raise ValueError(f"normal: expected it to map shape {tuple(v.shape)} to itself, got {tuple(out.shape)}")
        return out if isinstance(lam, (int, float)) and lam == 0 else out + lam * v

    rhs_norm = _dot(rhs, rhs).sqrt()
    scale = torch.where(rhs_norm > 0, rhs_norm, torch.ones_like(rhs_norm))
    x = torch.zeros_like(rhs) if x0 is None else x0
    r = rhs if x0 is None else rhs - apply(x0)
    p = r
    rs = _dot(r, r)
    residuals = [rs.sqrt() / scale]
    active = residuals[0] > tol
    iterations = torch.zeros_like(rhs_norm, dtype=torch.long)
    for it in range(max_iter):
        if host_check_every is not None and it % host_check_every == 0 and not _any_active(active):
            break
        Ap = apply(p)
        pAp = _dot(p, Ap)
        step = active & (pAp > 0)
        alpha = torch.where(step, rs / torch.where(step, pAp, torch.ones_like(pAp)), torch.zeros_like(pAp))
        x = x + _per_sample(alpha, x) * p
        r = r - _per_sample(alpha, r) * Ap
        rs_new = _dot(r, r)
        beta = torch.where(step, rs_new / torch.where(step, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + _per_sample(beta, p) * p
        rs = torch.where(step, rs_new, rs)
        residuals.append(rs.sqrt() / scale)
        iterations = iterations + step.long()
        # A sample whose curvature vanished (pAp <= 0) cannot progress: freeze it too.
        active = step & (residuals[-1] > tol)
    history = torch.stack(residuals)
    info = {"iterations": iterations, "residuals": history, "converged": history[-1] <= tol}
    return x, info


def _any_active(active: torch.Tensor) -> bool:
    with allow_host_sync("iterative solver: early-stop check"):
        return bool(active.any())


def cg_sense(
    op, y: torch.Tensor, *, lam=0.0, max_iter: int = 50, tol: float = 1e-6, x0=None
) -> tuple[torch.Tensor, dict]:
    """CG-SENSE: solve (A^H A + lam·I) x = A^H y with the operator's normal map; returns ``(x, info)``."""
    return conjugate_gradient(op.A_adjoint_A, op.A_adjoint(y), x0=x0, lam=lam, max_iter=max_iter, tol=tol)


def power_iteration(
    normal: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *, num_iter: int = 30
) -> torch.Tensor:
    """Per-sample largest eigenvalue (B,) of a Hermitian PSD ``normal``, by power iteration from ``x0``.

    Used for the Lipschitz constant of the data term (a safe step size is 1/λ_max). Returns the
    Rayleigh quotient of the last iterate, which converges from below.
    """
    check_tensor("x0", x0)
    if num_iter < 1:
        raise ValueError(f"num_iter: expected >= 1, got {num_iter}")
    x = x0
    for _ in range(num_iter):
        norm = _dot(x, x).sqrt()
        unit = x / _per_sample(torch.where(norm > 0, norm, torch.ones_like(norm)), x)
        x = normal(unit)
    return _dot(unit, x)


def adjointness_error(A: Callable, A_adjoint: Callable, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative adjoint mismatch |<Ax, y> − <x, A^H y>| / |<Ax, y>| over the whole batch.

    The inner products accumulate in complex128, so the number measures the operator, not the sum.
    """
    lhs = torch.vdot(A(x).flatten().to(torch.complex128), y.flatten().to(torch.complex128))
    rhs = torch.vdot(x.flatten().to(torch.complex128), A_adjoint(y).flatten().to(torch.complex128))
    return float((lhs - rhs).abs() / lhs.abs())


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares magnitude sqrt(Σ |x_c|²) over the coil dim (real or complex input)."""
    check_tensor("coil_images", coil_images)
    return torch.linalg.vector_norm(coil_images, ord=2, dim=dim)
