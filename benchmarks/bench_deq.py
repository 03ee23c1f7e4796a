"""DEQ-EDSR fixed-point solvers on the MRI problem: plain iteration, mbdlfast's Anderson, torchdeq's Anderson.

The fixed-point map is one DEQ iteration T(z) = α·D(z − γAᴴ(Az − y)) + (1 − α)·(z − γAᴴ(Az − y))
of a DEQ-EDSR (the shipped default weights, or a randomly initialised paper-size EDSR with
``--model random``) on one synthetic multicoil slice (default 15 coils, 640x368, R=4 equispaced,
8 % centre, k-space scaled by max|Aᴴy| as in training), started from z₀ = Aᴴy. Each solver runs
at each relative tolerance ||T(z) − z|| / ||T(z)|| (1e-3 and 1e-4 by default) with the same history
size m and max_iter.

Reported per solver and tolerance: f-evaluations, median wall time (the solvers interleaved
round-robin, see benchmarks/common.py), the per-step solver overhead beyond the f-evaluations,
(time − fevals × median time of one f) / fevals, the relative residual of the returned iterate
(recomputed here the same way for all) and its PSNR against the true image.

torchdeq (``pip install --no-deps torchdeq==0.1.0``, a benchmark-only dependency) is optional: when
it is not installed its rows are skipped with a warning and the results file records
``"torchdeq": null``. Its Anderson solver works on real tensors only, so it is fed the real view
(``torch.view_as_real``, trailing dim 2) of the complex state: its Gram matrix G·Gᵀ of the real
view equals the real part of the Hermitian Gram and its mixing weights are real, as are mbdlfast's
here (``weights="real"``, what the DEQ uses: its map is only real-linear). Its λ is absolute,
mbdlfast's relative to the largest Gram diagonal.

    python benchmarks/bench_deq.py                                   # 15 coils, 640x368 (GPU)
    python benchmarks/bench_deq.py --quick                           # 8 coils, 128x128 (CPU)
"""
from __future__ import annotations

import argparse
import importlib.metadata
import sys
import warnings
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_output_argument, cpu_load_note, environment, results_folder, time_call, time_calls, write_results,
)
from mbdlfast.data.synthetic import SyntheticMulticoil  # noqa: E402
from mbdlfast.deq import anderson, fixed_point  # noqa: E402
from mbdlfast.training.data import line_mask  # noqa: E402
from mbdlfast.training.registry import build_model  # noqa: E402
from mbdlfast.metrics import psnr_batch  # noqa: E402
from mbdlfast.physics.sense import SenseOperator  # noqa: E402

SOLVERS = ("plain", "ours", "torchdeq")


def load_torchdeq_anderson():
    """torchdeq's Anderson solver, or None (with a warning) when torchdeq is not installed."""
    try:
        from torchdeq.solver.anderson import anderson_solver
    except ImportError:
        warnings.warn("torchdeq is not installed (pip install --no-deps torchdeq==0.1.0): skipping its rows",
                      stacklevel=2)
        return None
    return anderson_solver


def torchdeq_version() -> str | None:
    try:
        return importlib.metadata.version("torchdeq")
    except importlib.metadata.PackageNotFoundError:
        return None


def build_deq(kind: str, device: torch.device) -> torch.nn.Module:
    """The shipped default DEQ (``"shipped"``) or a paper-size DEQ-EDSR with random weights (``"random"``)."""
    if kind == "shipped":
        from mbdlfast.pretrained import load_default

        return load_default("deq", map_location=device).model
    torch.manual_seed(0)
    return build_model("deq", {})[0].to(device).eval()


def mri_problem(batch: int, coils: int, height: int, width: int, acceleration: int, center_fraction: float,
                device: torch.device):
    """(AHy, operator, target): synthetic slices undersampled along the width and scaled by max|Aᴴy|."""
    sample = SyntheticMulticoil(height, width, coils, snr_db=30.0, seed=0).batch(range(batch))
    mask = torch.stack([line_mask("equispaced", width, acceleration, center_fraction, seed=(0, i))
                        for i in range(batch)])
    op = SenseOperator(sample["maps"].to(device), mask.to(device))
    AHy = op.A_adjoint(sample["kspace"].to(device) * mask[:, None, None, :].to(device))
    scale = AHy.abs().amax(dim=(-2, -1), keepdim=True)
    return AHy / scale, op, sample["target"].to(device) / scale


def relative_residual(f, z: torch.Tensor) -> float:
    """max over the batch of ||f(z) − z|| / ||f(z)||."""
    fz = f(z)
    return float(((fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1)).max())


def solver_calls(f, z0: torch.Tensor, tol: float, args, torchdeq_anderson) -> dict:
    """solver name -> zero-argument call returning the (complex) solution."""
    calls = {
        "plain": lambda: fixed_point(f, z0, tol=tol, max_iter=args.max_iter)[0],
        "ours": lambda: anderson(f, z0, m=args.m, lam=args.lam, tol=tol, max_iter=args.max_iter, weights="real")[0],
    }
    if torchdeq_anderson is not None:
        def f_real(x):
            return torch.view_as_real(f(torch.view_as_complex(x)))

        def torchdeq_call():
            z, _, _ = torchdeq_anderson(f_real, torch.view_as_real(z0), max_iter=args.max_iter, tol=tol,
                                        stop_mode="rel", m=args.m, lam=args.lam, tau=1.0)
            return torch.view_as_complex(z.contiguous())

        calls["torchdeq"] = torchdeq_call
    return calls


class CountingMap:
    """Wraps f and counts its calls (the f-evaluations of one solve)."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, z):
        self.calls += 1
        return self.f(z)


def resolve_device(name: str) -> torch.device:
    return torch.device(name if name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))


def run(args) -> dict:
    device = resolve_device(args.device)
    model = build_deq(args.model, device)
    AHy, op, target = mri_problem(args.batch, args.coils, args.height, args.width, args.acceleration,
                                  args.center_fraction, device)
    torchdeq_anderson = load_torchdeq_anderson()
    iteration = partial(model.iteration, physics=op, AHy=AHy)
    counter = CountingMap(iteration)
    with torch.no_grad():
        f_ms = time_call(lambda: counter(AHy), device, warmup=2, repeats=args.f_repeats)["median_ms"]
        rows = []
        for tol in args.tols:
            calls = solver_calls(counter, AHy, tol, args, torchdeq_anderson)
            measured = {}
            for name, call in calls.items():  # one counted solve each: f-evaluations and quality
                counter.calls = 0
                z = call()
                measured[name] = {"fevals": counter.calls, "rel_residual": relative_residual(iteration, z),
                                  "psnr_db": float(psnr_batch(target.abs(), z.abs()).mean())}
            timings = time_calls(calls, device, warmup=args.warmup, repeats=args.repeats)
            for name in calls:
                fevals, timing = measured[name]["fevals"], timings[name]
                overhead = timing["median_ms"] - fevals * f_ms
                rows.append({"solver": name, "tol": tol, "fevals": fevals, "median_ms": timing["median_ms"],
                             "p20_ms": timing["p20_ms"], "p80_ms": timing["p80_ms"], "overhead_ms": overhead,
                             "overhead_ms_per_step": overhead / fevals,
                             "rel_residual": measured[name]["rel_residual"], "psnr_db": measured[name]["psnr_db"]})
    zero_filled_psnr = float(psnr_batch(target.abs(), AHy.abs()).mean())
    return {**environment(device), "torchdeq": torchdeq_version(), "load": cpu_load_note(),
            "model": args.model, "batch": args.batch, "coils": args.coils, "height": args.height,
            "width": args.width, "acceleration": args.acceleration, "center_fraction": args.center_fraction,
            "m": args.m, "lam": args.lam, "max_iter": args.max_iter, "f_ms": f_ms,
            "zero_filled_psnr_db": zero_filled_psnr, "rows": rows}


def plot(result: dict, path: Path) -> None:
    """Bars of wall time per solver and tolerance, split into f-evaluations and solver overhead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tols = sorted({row["tol"] for row in result["rows"]}, reverse=True)
    names = [name for name in SOLVERS if any(row["solver"] == name for row in result["rows"])]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(names):
        for j, tol in enumerate(tols):
            row = next((r for r in result["rows"] if r["solver"] == name and r["tol"] == tol), None)
            if row is None:
                continue
            x = j + (i - (len(names) - 1) / 2) * width
            f_part = row["fevals"] * result["f_ms"]
            ax.bar(x, f_part, width, color=f"C{i}", label=name if j == 0 else None)
            ax.bar(x, max(row["overhead_ms"], 0.0), width, bottom=f_part, color=f"C{i}", alpha=0.4, hatch="//")
            ax.text(x, row["median_ms"], f"{row['fevals']}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(tols)), [f"rel tol {tol:g}" for tol in tols])
    ax.set_ylabel("median wall time (ms)")
    ax.set_title(f"DEQ-EDSR solve, {result['coils']} coils {result['height']}x{result['width']}, "
                 f"R={result['acceleration']} ({result['device']})\nsolid: f-evaluations (count on top), "
                 "hatched: solver overhead", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


QUICK = {"coils": 8, "height": 128, "width": 128, "repeats": 3, "tols": [1e-3]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coils", type=int, default=None, help="default 15 (quick 8)")
    parser.add_argument("--height", type=int, default=None, help="default 640 (quick 128)")
    parser.add_argument("--width", type=int, default=None, help="default 368 (quick 128)")
    parser.add_argument("--acceleration", type=int, default=4)
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model", choices=("shipped", "random"), default="shipped",
                        help="shipped default weights (6 blocks, 48 features) or a random paper-size EDSR")
    parser.add_argument("--tols", type=float, nargs="+", default=None, help="default 1e-3 1e-4 (quick 1e-3)")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--m", type=int, default=5, help="Anderson history size (both Anderson solvers)")
    parser.add_argument("--lam", type=float, default=1e-4, help="Anderson regularisation (both Anderson solvers)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (quick 3)")
    parser.add_argument("--f-repeats", type=int, default=10, help="timed calls of one f")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="8 coils, 128x128, tol 1e-3: a CPU smoke run")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    full = {"coils": 15, "height": 640, "width": 368, "repeats": 5, "tols": [1e-3, 1e-4]}
    for key, value in (QUICK if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    out = results_folder(args.out, args.quick)

    result = run(args)
    path = write_results(result, out, "deq", resolve_device(args.device), plot)
    print(f"{result['device']}, {result['load']}; one f = {result['f_ms']:.1f} ms; "
          f"zero-filled PSNR {result['zero_filled_psnr_db']:.2f} dB")
    print(f"{'solver':9s} {'tol':>7s} {'f-evals':>7s} {'median ms':>10s} {'overhead ms/step':>17s} "
          f"{'rel resid':>10s} {'PSNR dB':>8s}")
    for row in result["rows"]:
        print(f"{row['solver']:9s} {row['tol']:7.0e} {row['fevals']:7d} {row['median_ms']:10.1f} "
              f"{row['overhead_ms_per_step']:17.3f} {row['rel_residual']:10.2e} {row['psnr_db']:8.2f}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
