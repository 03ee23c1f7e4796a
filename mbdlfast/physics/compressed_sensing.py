"""l1-wavelet compressed sensing: the classical baseline argmin_x 1/2 ||A x - y||^2 + lam ||W x||_1, by FISTA.

A is a :class:`~mbdlfast.physics.sense.SenseOperator`, W a :class:`~mbdlfast.physics.wavelets.WaveletTransform2D`.
Like the solvers in :mod:`mbdlfast.physics.linalg`, it treats dim 0 as the batch (step size, stopping
and freezing are per sample), decides convergence on the device and looks at it on the host only
every few iterations.
"""
from __future__ import annotations

import math
import numbers

import torch

from mbdlfast._validation import check_complex, check_int, check_same_device, check_shape
from mbdlfast.physics.linalg import _HOST_CHECK_EVERY, _any_active, _dot, _per_sample
from mbdlfast.physics.wavelets import WaveletTransform2D, soft_threshold


def lipschitz_bound(op) -> torch.Tensor:
    """Upper bound on the largest eigenvalue of A^H A per sample: max over pixels of sum_c |S_c|^2.

    ||M F S x|| <= ||S x|| <= max RSS(S) ||x|| since the mask M is a 0/1 projection and the centred
    FFT F is unitary. The bound is exact for an unmasked operator, equals 1 for maps normalised to
    RSS 1 (simulate_coil_maps; ESPIRiT's inside their support), costs one pass over the maps and, unlike power iteration, never
    underestimates, so FISTA's step 1/L is always safe. Returns (B,) for maps (B,C,H,W) and (1,) for
    maps (C,H,W) shared by the batch.
    """
    maps = op.maps.detach()
    maps = maps if maps.dim() == 4 else maps.unsqueeze(0)
    return (maps.real ** 2 + maps.imag ** 2).sum(dim=1).flatten(1).amax(dim=1)


def l1_wavelet(
    op,
    y: torch.Tensor,
    lam,
    *,
    wavelet: str = "db4",
    levels: int | None = None,
    mode: str = "periodization",
    max_iter: int = 200,
    tol: float = 1e-5,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """l1-wavelet regularised SENSE: argmin_x 1/2 ||A x - y||_2^2 + lam ||W x||_1 per batch entry, by FISTA.

    Args:
        op: the :class:`~mbdlfast.physics.sense.SenseOperator` A.
        y: k-space (B,C,H,W) (or compact (B,C,H,n_s)), as ``op.A_adjoint`` takes it.
        lam: the regularisation weight, a number >= 0, absolute (not scaled by the data): the problem is
            homogeneous, so y -> s·y with lam -> s·lam gives x -> s·x. A step keeps a wavelet coefficient
            only if its magnitude exceeds lam/L (L of :func:`lipschitz_bound`, 1 for unit-RSS maps), so
            pick lam on the scale of the coefficients of A^H y, e.g. a small fraction of their maximum.
            This is SigPy's ``lamda`` of ``L1WaveletRecon``.
        wavelet, levels, mode: the wavelet transform W (see :mod:`mbdlfast.physics.wavelets`);
            ``mode="zero"`` is SigPy's / PyWavelets' boundary rule.
        max_iter: at most this many iterations.
        tol: a sample stops (its iterate is frozen) once ||x_k - x_{k-1}|| <= tol·||x_k||.
        x0: starting image (B,H,W); zeros (SigPy's start) by default.

    Each iteration is x_k = W^H soft(W(z - ∇f(z)/L), lam/L), then Nesterov's extrapolation z. The
    step 1/L uses :func:`lipschitz_bound`. When W is square (periodization with H and W multiples of
    2^levels) the middle step is the exact proximal map of lam ||W·||_1 and FISTA solves the problem
    stated; otherwise (padding, or the redundant zero mode) W W^H != I and it is the same
    "unitary transform" prox SigPy applies, whose fixed point is close to but not exactly the minimiser.

    Returns ``(x, info)``: info["iterations"] (B,) the iterations each sample ran, info["changes"] (k, B)
    the relative change ||x_k - x_{k-1}|| / ||x_k|| of each of the k iterations run (0 once frozen),
    info["objective"] (k+1, B) the objective at x_0 ... x_k, info["converged"] (B,) bool and
    info["lipschitz"] (B,) the L used. The objective's data term comes from A^H A x by linearity (no
    extra pass through A), so its rounding error is relative to ||y||^2.
    """
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not lam >= 0:
        raise ValueError(f"lam: expected a number >= 0, got {lam!r}")
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
        raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
    AHy = op.A_adjoint(y)
    if x0 is not None:
        check_complex("x0", x0, AHy.dtype)
        check_same_device(x0=x0, y=y)
        check_shape("x0", x0, tuple(AHy.shape), "image (B,H,W)")
    transform = WaveletTransform2D(op.image_shape, wavelet, levels, mode)

    lipschitz = lipschitz_bound(op).to(AHy.real.dtype).expand(AHy.shape[0])
    step = 1 / torch.where(lipschitz > 0, lipschitz, torch.ones_like(lipschitz))
    threshold = lam * step
    y_energy = _dot(y, y)

    def objective(x: torch.Tensor, Nx: torch.Tensor) -> torch.Tensor:
        # ||A x - y||^2 = <x, A^H A x> - 2 Re<x, A^H y> + ||y||^2
        data = 0.5 * (_dot(x, Nx) - 2 * _dot(x, AHy) + y_energy)
        return data + lam * sum(c.abs().flatten(1).sum(dim=1) for c in transform.forward(x))

    x = torch.zeros_like(AHy) if x0 is None else x0
    Nx = op.A_adjoint_A(x)
    z, Nz = x, Nx  # the extrapolated point and A^H A there, kept by linearity
    t = 1.0
    objectives, changes = [objective(x, Nx)], []
    active = torch.ones_like(step, dtype=torch.bool)
    iterations = torch.zeros_like(active, dtype=torch.long)
    for it in range(max_iter):
        if it % _HOST_CHECK_EVERY == 0 and not _any_active(active):
            break
        descent = z - _per_sample(step, z) * (Nz - AHy)
        shrunk = transform.inverse([soft_threshold(c, threshold) for c in transform.forward(descent)])
        x_next = torch.where(_per_sample(active, x), shrunk, x)
        Nx_next = op.A_adjoint_A(x_next)
        delta = x_next - x
        norm = _dot(x_next, x_next).sqrt()
        change = _dot(delta, delta).sqrt() / torch.where(norm > 0, norm, torch.ones_like(norm))
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = (t - 1) / t_next
        z, Nz = x_next + momentum * delta, Nx_next + momentum * (Nx_next - Nx)
        x, Nx, t = x_next, Nx_next, t_next
        objectives.append(objective(x, Nx))
        changes.append(change)
        iterations = iterations + active.long()
        active = active & (change > tol)
    info = {
        "iterations": iterations,
        "changes": torch.stack(changes) if changes else step.new_zeros(0, step.shape[0]),
        "objective": torch.stack(objectives),
        "converged": ~active,
        "lipschitz": lipschitz,
    }
    return x, info
