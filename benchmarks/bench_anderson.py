"""Solver-only microbenchmark: f-evaluations and per-step overhead of fixed-point solvers.

Compares plain iteration, mbdlfast's Anderson, and the Anderson solver of the public DEQ code
(:func:`mbdlfast.deq.reference_anderson.reference_anderson`: real view, Gram G·Gᵀ recomputed from the
whole history each step, unscaled λ, bordered system, host-side convergence check every step).
The problem is a complex DEQ-like contraction (non-normal, spectral radius 0.95, mild nonlinearity).
Overhead per step = (solver time − f-evaluations × time of one f) / f-evaluations. The rows go to
``anderson_<device>.json`` in ``--out`` (default benchmarks/results).

    python benchmarks/bench_anderson.py [--batch 4] [--n 512] [--tol 1e-5] [--device cpu] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_output_argument, environment, results_folder, write_results  # noqa: E402

from mbdlfast.deq import anderson, fixed_point  # noqa: E402
from mbdlfast.deq.reference_anderson import reference_anderson  # noqa: E402


def complex_contraction(batch: int, n: int, device: str, radius: float = 0.95, seed: int = 1):
    """f(z) = J z + b + 0.03·z/(1+|z|²) with a non-normal complex J of spectral radius ``radius``."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.complex128, generator=gen))
    theta = 2 * torch.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    mags = radius * (0.5 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64))
    mags[0] = radius
    upper = torch.triu(torch.randn(n, n, dtype=torch.complex128, generator=gen), 1) * 0.5 / n**0.5
    jac = (q @ (torch.diag(mags * torch.exp(1j * theta)) + upper) @ q.mH).to(torch.complex64).to(device)
    shift = torch.randn(batch, n, dtype=torch.complex64, generator=gen).to(device)

    def f(z):
        return z @ jac.T + shift + 0.03 * z / (1 + z.abs() ** 2)

    return f, torch.zeros(batch, n, dtype=torch.complex64, device=device)


def _timed(fn, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def run(batch: int = 4, n: int = 512, tol: float = 1e-5, max_iter: int = 400, device: str = "cpu") -> list[dict]:
    """One row per solver: f-evaluations, total time and per-step overhead (seconds)."""
    f, x0 = complex_contraction(batch, n, device)
    f(x0)
    _, f_time = _timed(lambda: [f(x0) for _ in range(20)], device)
    f_time /= 20
    solvers = {
        "plain": lambda: fixed_point(f, x0, tol=tol, max_iter=max_iter, check_every=5)[1]["nstep"],
        "mbdlfast anderson": lambda: anderson(f, x0, tol=tol, max_iter=max_iter, check_every=5)[1]["nstep"],
        "public-style anderson": lambda: reference_anderson(f, x0, tol=tol, max_iter=max_iter)[1]["nstep"],
    }
    rows = []
    for name, solve in solvers.items():
        solve()  # warm-up
        nstep, seconds = _timed(solve, device)
        rows.append({"solver": name, "f_evals": nstep, "seconds": seconds,
                     "overhead_per_step_s": (seconds - nstep * f_time) / nstep})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    add_output_argument(parser)
    args = parser.parse_args()
    out = results_folder(args.out, quick=False)
    rows = run(args.batch, args.n, args.tol, args.max_iter, args.device)
    print(f"{'solver':24s} {'f-evals':>8s} {'time (s)':>9s} {'overhead/step (µs)':>19s}")
    for row in rows:
        print(f"{row['solver']:24s} {row['f_evals']:8d} {row['seconds']:9.3f} {row['overhead_per_step_s'] * 1e6:19.1f}")
    device = torch.device(args.device)
    config = {"batch": args.batch, "n": args.n, "tol": args.tol, "max_iter": args.max_iter}
    path = write_results({**environment(device), "config": config, "rows": rows}, out, "anderson", device, None)
    print(f"# wrote {path}")


if __name__ == "__main__":
    main()
