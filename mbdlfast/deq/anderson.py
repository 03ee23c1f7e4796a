"""Anderson acceleration for batched fixed points x = f(x), correct for complex states.

Each sample is one vector. With the last n residuals g_i = f(x_i) - x_i, the mixing weights minimise
||Σ α_i g_i||² subject to Σ α_i = 1. For complex states the quadratic form is the Hermitian Gram
matrix H_ij = <g_i, g_j> = g_iᴴ g_j (conj(G)·Gᵀ); the unconjugated G·Gᵀ used by the public DEQ
solvers is only right for real states. With H regularised as H + λ·max_i(H_ii)·I (positive
definite), the weights are α = w / Σw with (H + λ·s·I) w = 1, solved by Cholesky in double
precision; a sample whose solve fails or is non-finite takes a plain step instead. The next iterate
is x_{k+1} = Σ α_i (x_i + β g_i).

Complex weights are right when f is complex-affine (f(a·x) = a·f(x) + b for complex a, e.g. pure
physics). A map that is only real-affine, as every DEQ whose denoiser is a real CNN on the real and
imaginary channels, breaks that assumption and complex weights stall on it; ``weights="real"``
restricts α to real numbers, which minimises over Re(H) (the Gram matrix of the real view) and is
right for any map.

Per step: one f evaluation, one new Gram column (the Gram matrix is updated in place, not
recomputed), one m×m solve, one mixing pass. No host synchronisation: convergence is decided on the
device (:mod:`mbdlfast.deq.convergence`), and the host looks only every ``check_every`` steps.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from mbdlfast.deq.anderson_step import step_functions
from mbdlfast.deq.convergence import ConvergenceTracker, FlatMap, check_solver_args

logger = logging.getLogger(__name__)


def mixing_weights(gram: torch.Tensor, lam: float, newest: int) -> torch.Tensor:
    """Anderson weights (B, n) from a Hermitian Gram (B, n, n); ``newest`` = slot of the latest residual.

    Samples whose regularised system is not positive definite or yields non-finite weights get the
    plain-step weights (1 on ``newest``).
    """
    batch, n, _ = gram.shape
    scale = gram.diagonal(dim1=-2, dim2=-1).real.amax(dim=-1)
    shift = torch.diag_embed((lam * scale)[:, None].expand(batch, n)).to(gram.dtype)
    chol, failed = torch.linalg.cholesky_ex(gram + shift)
    ones = torch.ones(batch, n, 1, dtype=gram.dtype, device=gram.device)
    w = torch.cholesky_solve(ones, chol).squeeze(-1)
    alpha = w / w.sum(dim=-1, keepdim=True)
    ok = (failed == 0) & torch.isfinite(alpha).all(dim=-1)
    plain = torch.zeros_like(alpha)
    plain[:, newest] = 1
    return torch.where(ok[:, None], alpha, plain)


@torch.no_grad()
def anderson(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *, m: int = 5, lam: float = 1e-4,
             beta: float = 1.0, tol: float = 1e-3, max_iter: int = 100, stop_mode: str = "rel",
             check_every: int = 5, divergence_factor: float | None = 1e4, weights: str = "complex",
             step_backend: str = "auto") -> tuple[torch.Tensor, dict]:
    """Solve x = f(x) per sample by Anderson acceleration; returns ``(x, info)``.

    ``x0``: (B, ...) real or complex; ``f`` maps such a tensor to one of the same shape and dtype
    (no gradients are tracked). ``m``: history size; ``lam``: Tikhonov regularisation relative to
    the largest Gram diagonal; ``beta``: damping of the mixing; ``tol`` on the relative
    (||f(x)-x|| / ||f(x)||) or absolute residual per ``stop_mode``. Converged, diverged (absolute
    residual above ``divergence_factor`` times its minimum) and non-finite samples are frozen; the
    loop stops when none runs (checked every ``check_every`` steps) or after ``max_iter``
    f-evaluations. ``weights``: "complex" (f complex-affine) or "real" (any f; see the module
    docstring); real states always get real weights. ``step_backend``: "auto" (the dispatcher's choice),
    "torch" or "triton".

    Returns the lowest-residual iterate of each sample. ``info``: ``status`` (per sample:
    "converged", "max_iter", "diverged" or "nan"), ``converged`` (B,) bool, ``nstep`` (f-evaluations
    of the batch), ``sample_nstep`` (B,) (f-evaluations until each sample stopped),
    ``abs_residual`` / ``rel_residual`` (B,) at the returned iterate, ``abs_trace`` / ``rel_trace``
    (nstep, B), ``stop_mode`` and ``step_backend``.
    """
    check_solver_args(x0, tol=tol, max_iter=max_iter, stop_mode=stop_mode, check_every=check_every,
                      divergence_factor=divergence_factor)
    if not (isinstance(m, int) and m >= 1):
        raise ValueError(f"m: expected an integer >= 1, got {m!r}")
    if not (isinstance(lam, (int, float)) and lam >= 0):
        raise ValueError(f"lam: expected a number >= 0, got {lam!r}")
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta: expected a number > 0, got {beta!r}")
    if weights not in ("complex", "real"):
        raise ValueError(f"weights: expected 'complex' or 'real', got {weights!r}")
    real_weights = weights == "real" or not x0.is_complex()
    backend, residual_gram, mix = step_functions(x0, step_backend)

    fmap = FlatMap(f, x0)
    x0_flat = fmap.flatten(x0.detach())
    batch, numel = x0_flat.shape
    x_hist = torch.zeros(m, batch, numel, dtype=x0.dtype, device=x0.device)
    g_hist = torch.zeros_like(x_hist)
    x_hist[0] = x0_flat
    solve_dtype = torch.complex128 if x0.is_complex() else torch.float64
    gram = torch.zeros(batch, m, m, dtype=solve_dtype, device=x0.device)
    alpha = torch.zeros(batch, m, dtype=x0.dtype, device=x0.device)
    tracker = ConvergenceTracker(x0_flat, tol=tol, stop_mode=stop_mode, max_iter=max_iter,
                                 divergence_factor=divergence_factor)

    for step in range(max_iter):
        slot = step % m
        fx = fmap(x_hist[slot])
        col, fx_norm2 = residual_gram(fx, x_hist, g_hist, slot)
        improved, running = tracker.record(step, col[:, slot].real.clamp_min(0).sqrt(), fx_norm2.sqrt())
        col = col.to(solve_dtype)
        gram[:, :, slot] = col
        gram[:, slot, :] = col.conj()
        n_valid = min(step + 1, m)
        small = gram[:, :n_valid, :n_valid]
        alpha[:, :n_valid] = mixing_weights(small.real if real_weights else small, lam, slot).to(x0.dtype)
        mix(x_hist, g_hist, alpha, running, improved, tracker.best_x, slot, (step + 1) % m, n_valid, beta)
        if (step + 1) % check_every == 0 and not tracker.any_running():
            break

    x_flat, info = tracker.finish(step_backend=backend)
    logger.debug("anderson: %d f-evaluations, status %s", info["nstep"], info["status"])
    return fmap.unflatten(x_flat), info
