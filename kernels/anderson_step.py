"""Triton kernels of one Anderson-acceleration step (see ``mbdlfast.deq.anderson_step``).

The history lives in two ring buffers of shape (m, B, N): iterates X and residuals G = f(X) - X,
stored as real tensors (complex data as interleaved real/imaginary pairs, ``IS_COMPLEX``). Each step
reads the history twice instead of the 2m + 3 passes of separate torch ops:

* ``residual_gram_kernel`` forms g = f(x_k) - x_k, stores it in the ring, and reduces the new Gram
  column <g_i, g> = Σ conj(g_i)·g for all m slots plus ||f(x_k)||² in the same pass (per-block
  partial sums; the caller adds the blocks up, so the result is deterministic);
* ``mix_kernel`` writes x_{k+1} = Σ_i α_i (x_i + β g_i) into the next ring slot, holds frozen samples
  at x_k, and copies x_k to the best iterate of the samples whose residual improved.

Slot indices, the history count and the batch size are runtime values Triton must not specialise
on (it would compile anew when one becomes 1 or a multiple of 16): one compile serves a whole solve.
Offsets are int64 (histories above 2³¹ elements).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_complex(ptr, offs, mask, IS_COMPLEX: tl.constexpr):
    """Real and imaginary parts at complex indices ``offs`` (imaginary part 0 for real data)."""
    if IS_COMPLEX:
        re = tl.load(ptr + 2 * offs, mask=mask, other=0.0)
        im = tl.load(ptr + 2 * offs + 1, mask=mask, other=0.0)
    else:
        re = tl.load(ptr + offs, mask=mask, other=0.0)
        im = tl.zeros_like(re)
    return re, im


@triton.jit
def _store_complex(ptr, offs, re, im, mask, IS_COMPLEX: tl.constexpr):
    if IS_COMPLEX:
        tl.store(ptr + 2 * offs, re, mask=mask)
        tl.store(ptr + 2 * offs + 1, im, mask=mask)
    else:
        tl.store(ptr + offs, re, mask=mask)


@triton.jit(do_not_specialize=["slot", "batch"])
def residual_gram_kernel(fx_ptr, x_hist_ptr, g_hist_ptr, partial_ptr, slot, batch, numel,
                         M: tl.constexpr, IS_COMPLEX: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (B, blocks). partial[b, block, 2i:2i+2] = (re, im) of <g_i, g> for i < M, [2M] = ||f||².

    Must move f(x_k), x_k, the M − 1 older residuals in and g out: 13.19 MB for a 640×368 complex64
    state at M = 5, ≈ 3.94 µs at 3.35 TB/s (an H100).
    """
    b = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    num_blocks = tl.num_programs(1)
    width = 2 if IS_COMPLEX else 1
    offs = block * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    sample = b * numel * width
    slot_stride = batch.to(tl.int64) * numel * width
    f_re, f_im = _load_complex(fx_ptr + sample, offs, mask, IS_COMPLEX)
    x_re, x_im = _load_complex(x_hist_ptr + slot * slot_stride + sample, offs, mask, IS_COMPLEX)
    g_re = f_re - x_re
    g_im = f_im - x_im
    out = partial_ptr + (b * num_blocks + block) * (2 * M + 1)
    for i in tl.static_range(M):
        # slot `slot` is about to be overwritten by g itself: use the registers, skip the read
        is_new = (offs * 0 + i) == slot
        h_re, h_im = _load_complex(g_hist_ptr + i * slot_stride + sample, offs, mask & ~is_new, IS_COMPLEX)
        h_re = tl.where(is_new, g_re, h_re)
        h_im = tl.where(is_new, g_im, h_im)
        tl.store(out + 2 * i, tl.sum(h_re * g_re + h_im * g_im, axis=0))
        tl.store(out + 2 * i + 1, tl.sum(h_re * g_im - h_im * g_re, axis=0))
    tl.store(out + 2 * M, tl.sum(f_re * f_re + f_im * f_im, axis=0))
    _store_complex(g_hist_ptr + slot * slot_stride + sample, offs, g_re, g_im, mask, IS_COMPLEX)


@triton.jit(do_not_specialize=["slot", "next_slot", "n_valid", "batch"])
def mix_kernel(x_hist_ptr, g_hist_ptr, alpha_ptr, running_ptr, improved_ptr, best_ptr, slot, next_slot,
               n_valid, batch, numel, beta, M: tl.constexpr, IS_COMPLEX: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (B, blocks). alpha: (B, M, 2) real; running / improved: (B,) int8.

    Must move x_k, M iterates, M residuals in and x_{k+1}, the best iterate out (at most): 24.49 MB
    for a 640×368 complex64 state at M = 5, ≈ 7.31 µs at 3.35 TB/s (an H100).
    """
    b = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    width = 2 if IS_COMPLEX else 1
    offs = block * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    sample = b * numel * width
    slot_stride = batch.to(tl.int64) * numel * width
    # per-sample flags, broadcast to the block (a vector load of one address)
    running = tl.load(running_ptr + b + offs * 0) != 0
    improved = tl.load(improved_ptr + b + offs * 0) != 0
    x_re, x_im = _load_complex(x_hist_ptr + slot * slot_stride + sample, offs, mask, IS_COMPLEX)
    _store_complex(best_ptr + sample, offs, x_re, x_im, mask & improved, IS_COMPLEX)
    acc_re = tl.zeros_like(x_re)
    acc_im = tl.zeros_like(x_im)
    for i in tl.static_range(M):
        a_re = tl.load(alpha_ptr + (b * M + i) * 2)
        a_im = tl.load(alpha_ptr + (b * M + i) * 2 + 1)
        valid = mask & running & ((offs * 0 + i) < n_valid)
        xi_re, xi_im = _load_complex(x_hist_ptr + i * slot_stride + sample, offs, valid, IS_COMPLEX)
        gi_re, gi_im = _load_complex(g_hist_ptr + i * slot_stride + sample, offs, valid, IS_COMPLEX)
        y_re = xi_re + beta * gi_re
        y_im = xi_im + beta * gi_im
        acc_re += a_re * y_re - a_im * y_im
        acc_im += a_re * y_im + a_im * y_re
    out_re = tl.where(running, acc_re, x_re)
    out_im = tl.where(running, acc_im, x_im)
    _store_complex(x_hist_ptr + next_slot * slot_stride + sample, offs, out_re, out_im, mask, IS_COMPLEX)
