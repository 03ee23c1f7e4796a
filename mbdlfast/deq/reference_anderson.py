"""The Anderson solver of the public DEQ code, reimplemented as the paper-style baseline.

The published MBDL/DEQ code runs Anderson acceleration on real tensors (complex images as two real
channels) and, at every step, recomputes the whole Gram matrix G·Gᵀ from the history, solves the
bordered (m+1)×(m+1) system with an unscaled λ, and copies the residual to the host to test
convergence. It is kept here, faithfully, so that baselines (``benchmarks/bench_anderson.py``,
:data:`mbdlfast.inference.BASELINE`) time the algorithm the paper timed; use
:func:`mbdlfast.deq.anderson` for real work. Complex states are solved on their real view, as the
published code does, because G·Gᵀ without a conjugate is only right for real states.
"""
from __future__ import annotations

from typing import Callable

import torch

from mbdlfast.deq.convergence import FlatMap, check_solver_args


@torch.no_grad()
def reference_anderson(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *, m: int = 5,
                       lam: float = 1e-4, beta: float = 1.0, tol: float = 1e-3,
                       max_iter: int = 100) -> tuple[torch.Tensor, dict]:
    """Solve x = f(x) the way the public DEQ solver does; returns ``(x, info)``.

    Stops when the largest relative residual ||f(x)−x|| / (1e-5 + ||f(x)||) of the batch is below
    ``tol`` (checked on the host every step) or after ``max_iter`` f-evaluations. Returns the last
    iterate. ``info``: ``nstep`` (f-evaluations), ``rel_residual`` (B,) of the last step, ``converged``.
    """
    check_solver_args(x0, tol=tol, max_iter=max_iter, stop_mode="rel", check_every=1, divergence_factor=None)
    if not (isinstance(m, int) and m >= 2):
        raise ValueError(f"m: expected an integer >= 2, got {m!r}")
    fmap = FlatMap(f, x0)

    def real_f(v: torch.Tensor) -> torch.Tensor:
        out = fmap(torch.view_as_complex(v.reshape(*v.shape[:-1], -1, 2)) if x0.is_complex() else v)
        return torch.view_as_real(out).reshape(v.shape) if x0.is_complex() else out

    start = fmap.flatten(x0.detach())
    start = torch.view_as_real(start).reshape(start.shape[0], -1) if x0.is_complex() else start
    batch, n = start.shape
    x_hist = torch.zeros(batch, m, n, dtype=start.dtype, device=start.device)
    f_hist = torch.zeros_like(x_hist)
    x_hist[:, 0], f_hist[:, 0] = start, real_f(start)
    x_hist[:, 1], f_hist[:, 1] = f_hist[:, 0], real_f(f_hist[:, 0])
    bordered = torch.zeros(batch, m + 1, m + 1, dtype=start.dtype, device=start.device)
    bordered[:, 0, 1:] = bordered[:, 1:, 0] = 1
    rhs = torch.zeros(batch, m + 1, 1, dtype=start.dtype, device=start.device)
    rhs[:, 0] = 1
    nstep, newest = 2, 1
    residual = (f_hist[:, 1] - x_hist[:, 1]).norm(dim=1) / (1e-5 + f_hist[:, 1].norm(dim=1))
    for k in range(2, max_iter):
        if residual.max().item() < tol:
            break
        size = min(k, m)
        g = f_hist[:, :size] - x_hist[:, :size]
        bordered[:, 1:size + 1, 1:size + 1] = g @ g.transpose(1, 2) + lam * torch.eye(size, dtype=start.dtype,
                                                                                          device=start.device)
        alpha = torch.linalg.solve(bordered[:, :size + 1, :size + 1], rhs[:, :size + 1])[:, 1:size + 1, 0]
        newest = k % m
        x_hist[:, newest] = beta * (alpha[:, None] @ f_hist[:, :size])[:, 0] + \
            (1 - beta) * (alpha[:, None] @ x_hist[:, :size])[:, 0]
        f_hist[:, newest] = real_f(x_hist[:, newest])
        nstep += 1
        residual = (f_hist[:, newest] - x_hist[:, newest]).norm(dim=1) / (1e-5 + f_hist[:, newest].norm(dim=1))
    x = x_hist[:, newest]
    if x0.is_complex():
        x = torch.view_as_complex(x.reshape(batch, -1, 2))
    info = {"nstep": nstep, "rel_residual": residual, "converged": residual < tol}
    return fmap.unflatten(x.contiguous()), info
