"""Fused SENSE kernels for 1D (phase-encode) masks: per-row centred DFTs by ``tl.dot``.

With a mask along W only, the W-direction transform of each image row is a product with the
sampled rows of the centred DFT matrix, ``F_s`` (n_s × W, mask values folded in). One program owns
one (batch entry, coil, BLOCK_H image rows) tile, so a batch-1 launch has cdiv(H, BLOCK_H)·C
programs (600 at 15×640×368) instead of one per row block:

* ``row_dft_forward_kernel``  z_c = F_s (S_c · x)         per row, compact (B,C,H,n_s) output
* ``row_dft_adjoint_kernel``  x = Σ_c conj(S_c) · F_s^H z_c  per row, (B,H,W) output
* ``sense_normal_kernel``     both in one launch: A^H A x = Σ_c conj(S_c) F_s^H F_s (S_c x) (the
  H-direction transforms cancel), optionally as the gradient step x − γ(A^H A x − A^H y).

The normal kernel writes its coil's compact spectra of its rows (BLOCK_H × n_s, n_s/W of the
k-space size) to a scratch buffer between its two halves, separated by a CTA barrier; tl.dot keeps
a whole operand in registers, so the spectrum is re-read BLOCK_S samples at a time from L1/L2. The
sum over coils is an fp32 ``atomic_add`` into a zero-filled output (each coil's add resolves in L2;
DRAM sees the zero fill and the final write), so there is no second pass over memory and the last
bits depend on the order of the adds. Complex data are float32 interleaved (``torch.view_as_real``,
contiguous); the DFT operand is planar, (Bm, 2, n_s, W). Complex products are four real ``tl.dot``
at ``PRECISION`` (``"ieee"`` fp32 FMA, or ``"tf32x3"`` on tensor cores; its error against float64
on hardware is still to be measured on a GPU). Batch and coil offsets are int64 (tensors above 2³¹
elements); every load/store is masked, so odd sizes work. An optional per-row phase (the centring
modulation of the H-direction FFT done outside) multiplies the forward output rows or the adjoint output rows.
"""
from __future__ import annotations

import triton
import triton.language as tl

PRECISIONS = ("ieee", "tf32x3")


@triton.jit
def _complex_dot(ar, ai, br, bi, cr, ci, PRECISION: tl.constexpr):
    """(cr + i·ci) += (ar + i·ai) @ (br + i·bi), accumulated inside the dots."""
    cr = tl.dot(ar, br, cr, input_precision=PRECISION)
    cr = tl.dot(-ai, bi, cr, input_precision=PRECISION)
    ci = tl.dot(ar, bi, ci, input_precision=PRECISION)
    ci = tl.dot(ai, br, ci, input_precision=PRECISION)
    return cr, ci


@triton.jit
def _coil_spectrum(x_ptr, map_ptr, dft_ptr, z_ptr, rows, row_ok, W, NS, HAS_PHASE: tl.constexpr, phase_ptr,
                   PRECISION: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """z rows = phase_row · F_s (S_c · x), BLOCK_S samples at a time; pointers at b / (b, c) / (b, c, rows)."""
    if HAS_PHASE:
        pr = tl.load(phase_ptr + 2 * rows, mask=row_ok, other=0.0)[:, None]
        pi = tl.load(phase_ptr + 2 * rows + 1, mask=row_ok, other=0.0)[:, None]
    for s0 in range(0, NS, BLOCK_S):
        samples = s0 + tl.arange(0, BLOCK_S)
        s_ok = samples < NS
        zr = tl.zeros((BLOCK_H, BLOCK_S), dtype=tl.float32)
        zi = tl.zeros((BLOCK_H, BLOCK_S), dtype=tl.float32)
        for k0 in range(0, W, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            col_ok = cols < W
            tile_ok = row_ok[:, None] & col_ok[None, :]
            pix = 2 * (rows[:, None] * W + cols[None, :])
            xr = tl.load(x_ptr + pix, mask=tile_ok, other=0.0)
            xi = tl.load(x_ptr + pix + 1, mask=tile_ok, other=0.0)
            sr = tl.load(map_ptr + pix, mask=tile_ok, other=0.0)
            si = tl.load(map_ptr + pix + 1, mask=tile_ok, other=0.0)
            # F_s^T tile (BLOCK_K, BLOCK_S): element (k, s) = F_s[s, k]
            f_ok = col_ok[:, None] & s_ok[None, :]
            f_off = samples[None, :] * W + cols[:, None]
            fr = tl.load(dft_ptr + f_off, mask=f_ok, other=0.0)
            fi = tl.load(dft_ptr + NS * W + f_off, mask=f_ok, other=0.0)
            zr, zi = _complex_dot(sr * xr - si * xi, sr * xi + si * xr, fr, fi, zr, zi, PRECISION)
        if HAS_PHASE:
            zr, zi = zr * pr - zi * pi, zr * pi + zi * pr
        z_off = 2 * (rows[:, None] * NS + samples[None, :])
        z_ok = row_ok[:, None] & s_ok[None, :]
        tl.store(z_ptr + z_off, zr, mask=z_ok)
        tl.store(z_ptr + z_off + 1, zi, mask=z_ok)


@triton.jit
def _add_coil_image(z_ptr, map_ptr, dft_ptr, phase_ptr, x_ptr, ahy_ptr, gamma_ptr, out_ptr, rows, row_ok, first_coil,
                    W, NS, HAS_PHASE: tl.constexpr, DC_STEP: tl.constexpr, PRECISION: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """out rows += phase_row · conj(S_c) · F_s^H z_c by atomics; pointers at b / (b, c) / (b, c, rows).

    With DC_STEP the contribution is −γ·(that), and the first coil's program also adds x + γ·A^H y,
    so the zero-filled output ends at x − γ(A^H A x − A^H y).
    """
    if HAS_PHASE:
        pr = tl.load(phase_ptr + 2 * rows, mask=row_ok, other=0.0)[:, None]
        pi = tl.load(phase_ptr + 2 * rows + 1, mask=row_ok, other=0.0)[:, None]
    if DC_STEP:
        gamma = tl.load(gamma_ptr)
    for k0 in range(0, W, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < W
        tile_ok = row_ok[:, None] & col_ok[None, :]
        pix = 2 * (rows[:, None] * W + cols[None, :])
        ur = tl.zeros((BLOCK_H, BLOCK_K), dtype=tl.float32)
        ui = tl.zeros((BLOCK_H, BLOCK_K), dtype=tl.float32)
        for s0 in range(0, NS, BLOCK_S):
            samples = s0 + tl.arange(0, BLOCK_S)
            s_ok = samples < NS
            z_ok = row_ok[:, None] & s_ok[None, :]
            z_off = 2 * (rows[:, None] * NS + samples[None, :])
            zr = tl.load(z_ptr + z_off, mask=z_ok, other=0.0)
            zi = tl.load(z_ptr + z_off + 1, mask=z_ok, other=0.0)
            # conj(F_s) tile (BLOCK_S, BLOCK_K)
            f_ok = s_ok[:, None] & col_ok[None, :]
            f_off = samples[:, None] * W + cols[None, :]
            fr = tl.load(dft_ptr + f_off, mask=f_ok, other=0.0)
            fi = tl.load(dft_ptr + NS * W + f_off, mask=f_ok, other=0.0)
            ur, ui = _complex_dot(zr, zi, fr, -fi, ur, ui, PRECISION)
        sr = tl.load(map_ptr + pix, mask=tile_ok, other=0.0)
        si = tl.load(map_ptr + pix + 1, mask=tile_ok, other=0.0)
        vr = sr * ur + si * ui
        vi = sr * ui - si * ur
        if HAS_PHASE:
            vr, vi = vr * pr - vi * pi, vr * pi + vi * pr
        if DC_STEP:
            vr = -gamma * vr
            vi = -gamma * vi
            if first_coil:
                vr += tl.load(x_ptr + pix, mask=tile_ok, other=0.0) + gamma * tl.load(ahy_ptr + pix, mask=tile_ok,
                                                                                         other=0.0)
                vi += tl.load(x_ptr + pix + 1, mask=tile_ok, other=0.0) + gamma * tl.load(ahy_ptr + pix + 1,
                                                                                             mask=tile_ok, other=0.0)
        tl.atomic_add(out_ptr + pix, vr, mask=tile_ok, sem="relaxed")
        tl.atomic_add(out_ptr + pix + 1, vi, mask=tile_ok, sem="relaxed")


@triton.jit
def _tile(C, H, W, NS, maps_batch_stride, dft_batch_stride, BLOCK_H: tl.constexpr):
    """This program's rows and the int64 offsets of its image, coil map, DFT and compact coil rows."""
    rows = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    c = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    coil_map = 2 * (b * maps_batch_stride + c * H * W)
    return rows, rows < H, c == 0, 2 * b * H * W, coil_map, b * dft_batch_stride, 2 * (b * C + c) * H * NS


@triton.jit
def row_dft_forward_kernel(x_ptr, maps_ptr, dft_ptr, phase_ptr, z_ptr, C, H, W, NS, maps_batch_stride,
                           dft_batch_stride, HAS_PHASE: tl.constexpr, PRECISION: tl.constexpr,
                           BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(H, BLOCK_H), C, B): compact k-space rows before the H-direction transform.

    Must move x, S, F_s, the row phase in and z out: 37.49 MB at 15×640×368, n_s = 92, ≈ 11.19 µs
    at 3.35 TB/s (an H100); the C re-reads of the x rows hit L2.
    """
    rows, row_ok, _, image, coil_map, dft, coil_rows = _tile(C, H, W, NS, maps_batch_stride, dft_batch_stride,
                                                             BLOCK_H)
    _coil_spectrum(x_ptr + image, maps_ptr + coil_map, dft_ptr + dft, z_ptr + coil_rows, rows, row_ok, W, NS,
                   HAS_PHASE, phase_ptr, PRECISION, BLOCK_H, BLOCK_S, BLOCK_K)


@triton.jit
def row_dft_adjoint_kernel(z_ptr, maps_ptr, dft_ptr, phase_ptr, out_ptr, C, H, W, NS, maps_batch_stride,
                           dft_batch_stride, HAS_PHASE: tl.constexpr, PRECISION: tl.constexpr,
                           BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(H, BLOCK_H), C, B): coil-combined image rows from compact rows; ``out`` zero-filled.

    Must move z, S, F_s, the row phase in and the output twice (zero fill, final write): 39.37 MB at
    15×640×368, n_s = 92, ≈ 11.75 µs at 3.35 TB/s (an H100); the C atomic adds per pixel hit L2.
    """
    rows, row_ok, first_coil, image, coil_map, dft, coil_rows = _tile(C, H, W, NS, maps_batch_stride,
                                                                      dft_batch_stride, BLOCK_H)
    _add_coil_image(z_ptr + coil_rows, maps_ptr + coil_map, dft_ptr + dft, phase_ptr, out_ptr, out_ptr, out_ptr,
                    out_ptr + image, rows, row_ok, first_coil, W, NS, HAS_PHASE, False, PRECISION, BLOCK_H, BLOCK_S,
                    BLOCK_K)


@triton.jit
def sense_normal_kernel(x_ptr, maps_ptr, dft_ptr, scratch_ptr, ahy_ptr, gamma_ptr, out_ptr, C, H, W, NS,
                        maps_batch_stride, dft_batch_stride, DC_STEP: tl.constexpr, PRECISION: tl.constexpr,
                        BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(H, BLOCK_H), C, B): A^H A x (or the gradient DC step) in one launch; ``out`` zero-filled.

    Must move x, S, F_s in, the scratch spectra out (read back from L2) and the output twice (zero
    fill, final write): 41.25 MB at 15×640×368, n_s = 92, ≈ 12.31 µs at 3.35 TB/s (an H100); the DC
    step also reads A^H y: 43.14 MB, ≈ 12.88 µs. The second half's re-reads of the map rows and the
    C atomic adds per pixel hit L2.
    """
    rows, row_ok, first_coil, image, coil_map, dft, coil_rows = _tile(C, H, W, NS, maps_batch_stride,
                                                                      dft_batch_stride, BLOCK_H)
    _coil_spectrum(x_ptr + image, maps_ptr + coil_map, dft_ptr + dft, scratch_ptr + coil_rows, rows, row_ok, W, NS,
                   False, x_ptr, PRECISION, BLOCK_H, BLOCK_S, BLOCK_K)
    # the second half reads scratch rows written by other threads of this program
    tl.debug_barrier()
    _add_coil_image(scratch_ptr + coil_rows, maps_ptr + coil_map, dft_ptr + dft, x_ptr, x_ptr + image, ahy_ptr + image,
                    gamma_ptr, out_ptr + image, rows, row_ok, first_coil, W, NS, False, DC_STEP, PRECISION, BLOCK_H,
                    BLOCK_S, BLOCK_K)


def launch_config(batch: int, coils: int, height: int, num_sampled: int, precision: str = "ieee"):
    """``(grid, meta)`` of the three kernels: what the launchers run and the GPU report compiles.

    16 rows per tile (tl.dot needs ≥ 16) by 32 samples by 16 columns: four fp32 dots of that size
    fit in registers without spilling at sm_80 / sm_90. The FMA (``ieee``) dots get 8 warps (about
    170 registers per thread instead of 230–250 at 4), the tensor-core dots 4 (about 220).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    meta = {"PRECISION": precision, "BLOCK_H": 16, "BLOCK_S": 32, "BLOCK_K": 16,
            "num_warps": 8 if precision == "ieee" else 4, "num_stages": 2}
    return (triton.cdiv(height, meta["BLOCK_H"]), coils, batch), meta
