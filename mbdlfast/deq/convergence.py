"""Per-sample convergence bookkeeping shared by the fixed-point solvers.

Everything here stays on the device: the residuals, the status of each sample, the best iterate and
its residuals are updated with masked tensor ops, so a solver step needs no host synchronisation.
The host reads the state only when it asks :meth:`ConvergenceTracker.any_running` (every
``check_every`` steps) and once in :meth:`ConvergenceTracker.finish`.

A sample stops ("freezes") when its residual reaches ``tol`` (converged), when its absolute residual
grows past ``divergence_factor`` times the smallest one it had (diverged), or when ``f`` returns a
non-finite value for it (nan). The solvers then hold its iterate fixed.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from mbdlfast.sync_guard import allow_host_sync

from mbdlfast._validation import check_tensor

RUNNING, CONVERGED, DIVERGED, NONFINITE = 0, 1, 2, 3
STATUS_NAMES = {RUNNING: "max_iter", CONVERGED: "converged", DIVERGED: "diverged", NONFINITE: "nan"}
STOP_MODES = ("rel", "abs")


def check_solver_args(x0, *, tol, max_iter, stop_mode, check_every, divergence_factor) -> torch.Tensor:
    """Validate the arguments every solver shares; returns ``x0``."""
    check_tensor("x0", x0)
    if x0.dim() < 1 or x0.shape[0] == 0 or x0.numel() == 0:
        raise ValueError(f"x0: expected a non-empty tensor with a leading batch dimension, got shape {tuple(x0.shape)}")
    if not (x0.is_floating_point() or x0.is_complex()):
        raise TypeError(f"x0: expected a floating-point or complex tensor, got {x0.dtype}")
    if not (isinstance(tol, (int, float)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
    for name, value in (("max_iter", max_iter), ("check_every", check_every)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if stop_mode not in STOP_MODES:
        raise ValueError(f"stop_mode: expected one of {STOP_MODES}, got {stop_mode!r}")
    if divergence_factor is not None and not (isinstance(divergence_factor, (int, float)) and divergence_factor > 1):
        raise ValueError(f"divergence_factor: expected a number > 1 or None, got {divergence_factor!r}")
    return x0


class FlatMap:
    """``f`` seen as a map on (B, N) flattened samples, checking its output once."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor):
        if not callable(f):
            raise TypeError(f"f: expected a callable, got {type(f).__name__}")
        self.f = f
        self.shape = x0.shape
        self.dtype = x0.dtype
        self.checked = False

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.shape[0], -1)

    def unflatten(self, x_flat: torch.Tensor) -> torch.Tensor:
        return x_flat.view(self.shape)

    def __call__(self, x_flat: torch.Tensor) -> torch.Tensor:
        fx = self.f(self.unflatten(x_flat))
        if not self.checked:
            if not isinstance(fx, torch.Tensor):
                raise TypeError(f"f: expected it to return a torch.Tensor, got {type(fx).__name__}")
            if fx.shape != self.shape or fx.dtype != self.dtype:
                raise ValueError(f"f: expected it to return shape {tuple(self.shape)} and dtype {self.dtype} "
                                 f"like x0, got {tuple(fx.shape)} and {fx.dtype}")
            self.checked = True
        return fx.reshape(self.shape[0], -1)


class ConvergenceTracker:
    """Status, best iterate and residual traces of a batch of fixed-point iterations, on the device."""

    def __init__(self, x0_flat: torch.Tensor, *, tol: float, stop_mode: str, max_iter: int,
                 divergence_factor: float | None):
        batch = x0_flat.shape[0]
        device = x0_flat.device
        real = x0_flat.real.dtype if x0_flat.is_complex() else x0_flat.dtype
        self.tol = tol
        self.stop_mode = stop_mode
        self.divergence_factor = divergence_factor
        self.tiny = torch.finfo(real).tiny
        self.best_x = x0_flat.clone()
        self.best_abs = torch.full((batch,), math.inf, dtype=real, device=device)
        self.best_rel = torch.full((batch,), math.inf, dtype=real, device=device)
        self.min_abs = torch.full((batch,), math.inf, dtype=real, device=device)
        self.status = torch.zeros(batch, dtype=torch.int8, device=device)
        self.sample_nstep = torch.zeros(batch, dtype=torch.int64, device=device)
        self.abs_trace = torch.empty(max_iter, batch, dtype=real, device=device)
        self.rel_trace = torch.empty(max_iter, batch, dtype=real, device=device)
        self.nstep = 0

    def record(self, step: int, abs_res: torch.Tensor, f_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Record the residual ``||f(x_k) - x_k||`` of iterate ``step``.

        Returns ``(improved, running)``: which samples' iterate ``step`` is their best so far (the
        caller stores it as the best iterate) and which samples keep iterating.
        """
        rel_res = abs_res / f_norm.clamp_min(self.tiny)
        self.abs_trace[step] = abs_res
        self.rel_trace[step] = rel_res
        self.nstep = step + 1
        metric = rel_res if self.stop_mode == "rel" else abs_res
        best_metric = self.best_rel if self.stop_mode == "rel" else self.best_abs
        running = self.status == RUNNING
        finite = torch.isfinite(abs_res) & torch.isfinite(rel_res)
        live = running & finite
        improved = live & (metric < best_metric)
        self.best_abs = torch.where(improved, abs_res, self.best_abs)
        self.best_rel = torch.where(improved, rel_res, self.best_rel)
        converged = live & (metric <= self.tol)
        status = torch.where(running & ~finite, NONFINITE, self.status)
        if self.divergence_factor is not None:
            diverged = live & ~converged & (abs_res > self.divergence_factor * self.min_abs)
            status = torch.where(diverged, DIVERGED, status)
        status = torch.where(converged, CONVERGED, status).to(torch.int8)
        self.min_abs = torch.where(live, torch.minimum(self.min_abs, abs_res), self.min_abs)
        self.sample_nstep = torch.where(running & (status != RUNNING), step + 1, self.sample_nstep)
        self.status = status
        return improved, status == RUNNING

    def keep_best(self, x_flat: torch.Tensor, improved: torch.Tensor) -> None:
        """Store ``x_flat`` as the best iterate of the ``improved`` samples."""
        torch.where(improved[:, None], x_flat, self.best_x, out=self.best_x)

    def any_running(self) -> bool:
        """Host read (one synchronisation): is any sample still iterating?"""
        with allow_host_sync("fixed-point solver: convergence check every check_every steps"):
            return bool((self.status == RUNNING).any())

    def finish(self, **extra) -> tuple[torch.Tensor, dict]:
        """The best iterate per sample (flat) and the info dict."""
        running = self.status == RUNNING
        sample_nstep = torch.where(running, self.nstep, self.sample_nstep)
        with allow_host_sync("fixed-point solver: the final report's status names"):
            status_names = [STATUS_NAMES[int(code)] for code in self.status.tolist()]
        info = {
            "status": status_names,
            "converged": self.status == CONVERGED,
            "nstep": self.nstep,
            "sample_nstep": sample_nstep,
            "abs_residual": self.best_abs,
            "rel_residual": self.best_rel,
            "abs_trace": self.abs_trace[: self.nstep],
            "rel_trace": self.rel_trace[: self.nstep],
            "stop_mode": self.stop_mode,
            **extra,
        }
        return self.best_x, info
