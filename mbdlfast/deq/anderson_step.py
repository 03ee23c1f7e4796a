"""The two memory-bound halves of an Anderson step, in torch and in Triton.

History layout: ring buffers ``x_hist`` and ``g_hist`` of shape (m, B, N) (slot-major, so the
iterate handed to ``f`` is one contiguous (B, N) slab), in the state's dtype.

* ``residual_gram(fx, x_hist, g_hist, slot)``: g = f(x_k) - x_k with x_k = x_hist[slot]; stores g in
  g_hist[slot]; returns the new Gram column ``col[b, i] = <g_i, g> = Σ conj(g_i)·g`` (B, m) and
  ``||f(x_k)||²`` (B,). Only this one column is new per step: the Gram matrix is updated, never
  recomputed.
* ``mix(x_hist, g_hist, alpha, running, improved, best, slot, next_slot, n_valid, beta)``: writes
  x_{k+1} = Σ_{i<n_valid} α_i (x_i + β g_i) into x_hist[next_slot] for running samples (x_k for
  frozen ones) and copies x_k into ``best`` where ``improved``.

Both are registered with :mod:`mbdlfast.ops.dispatch` as ``deq.residual_gram`` and ``deq.mix``
(backends ``torch`` and ``triton``); :func:`step_functions` picks a consistent pair.
"""
from __future__ import annotations

from typing import Callable

import torch

from mbdlfast.ops.dispatch import Case, kernel, register

_BLOCK = 1024


# Both backends take real and complex states in single and double precision.
_STATES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


@register("deq.residual_gram", "torch", dtypes=_STATES)
def residual_gram_torch(fx, x_hist, g_hist, slot: int):
    g = fx - x_hist[slot]
    g_hist[slot] = g
    # conj(col) = G_b @ conj(g_b) per sample: one batched matrix-vector product over the ring
    col = torch.bmm(g_hist.transpose(0, 1), g.conj().unsqueeze(-1)).squeeze(-1).conj()
    fx_norm2 = torch.linalg.vector_norm(fx, dim=1).square()
    return col, fx_norm2


@register("deq.mix", "torch", dtypes=_STATES)
def mix_torch(x_hist, g_hist, alpha, running, improved, best, slot: int, next_slot: int, n_valid: int, beta: float):
    x = x_hist[slot]
    torch.where(improved[:, None], x, best, out=best)
    weights = alpha[:, None, :n_valid]
    mixed = torch.bmm(weights, x_hist[:n_valid].transpose(0, 1)).squeeze(1)
    mixed += beta * torch.bmm(weights, g_hist[:n_valid].transpose(0, 1)).squeeze(1)
    x_hist[next_slot] = torch.where(running[:, None], mixed, x)


def _as_real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def residual_gram_launch(fx, x_hist, g_hist, slot: int):
    """``(launch, partial)`` of the Triton residual/Gram pass; partial (B, blocks, 2m+1) per-block sums."""
    from mbdlfast.kernels.anderson_step import residual_gram_kernel
    from mbdlfast.ops.triton_launch import TritonLaunch

    m, batch, numel = x_hist.shape
    num_blocks = -(-numel // _BLOCK)
    real = fx.real.dtype if fx.is_complex() else fx.dtype
    partial = torch.empty(batch, num_blocks, 2 * m + 1, dtype=real, device=fx.device)
    args = (_as_real(fx.contiguous()), _as_real(x_hist), _as_real(g_hist), partial, slot, batch, numel)
    meta = {"M": m, "IS_COMPLEX": fx.is_complex(), "BLOCK": _BLOCK}
    return TritonLaunch(residual_gram_kernel, (batch, num_blocks), args, meta), partial


@register("deq.residual_gram", "triton", dtypes=_STATES)
def residual_gram_triton(fx, x_hist, g_hist, slot: int):
    launch, partial = residual_gram_launch(fx, x_hist, g_hist, slot)
    launch.run()
    m, batch, _ = x_hist.shape
    sums = partial.sum(dim=1)
    col = sums[:, : 2 * m].reshape(batch, m, 2)
    col = torch.view_as_complex(col.contiguous()) if fx.is_complex() else col[..., 0]
    return col, sums[:, 2 * m]


def mix_launch(x_hist, g_hist, alpha, running, improved, best, slot: int, next_slot: int, n_valid: int, beta: float):
    """The Triton mixing pass as a launch (it writes x_hist[next_slot] and ``best`` in place)."""
    from mbdlfast.kernels.anderson_step import mix_kernel
    from mbdlfast.ops.triton_launch import TritonLaunch

    m, batch, numel = x_hist.shape
    alpha_pairs = torch.view_as_real(alpha) if alpha.is_complex() else torch.stack((alpha, torch.zeros_like(alpha)), -1)
    args = (_as_real(x_hist), _as_real(g_hist), alpha_pairs.contiguous(), running.to(torch.int8),
            improved.to(torch.int8), _as_real(best), slot, next_slot, n_valid, batch, numel, float(beta))
    meta = {"M": m, "IS_COMPLEX": x_hist.is_complex(), "BLOCK": _BLOCK}
    return TritonLaunch(mix_kernel, (batch, -(-numel // _BLOCK)), args, meta)


@register("deq.mix", "triton", dtypes=_STATES)
def mix_triton(x_hist, g_hist, alpha, running, improved, best, slot: int, next_slot: int, n_valid: int, beta: float):
    mix_launch(x_hist, g_hist, alpha, running, improved, best, slot, next_slot, n_valid, beta).run()


def step_functions(state: torch.Tensor, backend: str = "auto") -> tuple[str, Callable, Callable]:
    """``(backend, residual_gram, mix)`` for iterates like ``state``; ``auto`` as the dispatcher decides
    (torch on CUDA until a committed GPU measurement finds triton faster)."""
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"step_backend: expected 'auto', 'torch' or 'triton', got {backend!r}")
    name, residual_gram = kernel(Case("deq.residual_gram", state.device, state.dtype), backend)
    _, mix = kernel(Case("deq.mix", state.device, state.dtype), name)
    return name, residual_gram, mix
