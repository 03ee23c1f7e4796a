"""Microbenchmark of the SENSE operator: A, A^H, A^H A and the gradient DC step, per backend.

Providers: ``naive`` (mbdlfast.ops.reference, the fastMRI-style oracle), ``torch`` (shift-free
torch), ``triton``, ``cuda``, ``cpp`` and ``auto`` (what the dispatcher picks for the inputs; its rows
name the pick); a provider that cannot run here is skipped with its reason.
Providers are timed interleaved (round-robin) so that a shared machine's load hits them alike.
Inputs are complex64; a 1D equispaced mask (centre fraction 0.08) along W; maps shared over the batch.

Bytes each op must move at least (complex64 = 8 bytes; the mask is negligible), with image size
N = B·H·W, coil data K = B·C·H·W and maps S = C·H·W:
    A: 8·(N + S + K)      A_adjoint: 8·(K + S + N)      A_adjoint_A: 8·(N + S + N)      dc: 8·(N + S + 2N)
GB/s = bytes / median time; it is compared with a same-device copy bandwidth measured in the run.
The relative error is ||out − ref||/||ref|| against the complex128 reference on the same inputs.

    python benchmarks/bench_sense.py --quick
    python benchmarks/bench_sense.py --shapes 15x320x368 --accels 4 --batches 1 --providers naive,torch,cpp
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_output_argument, copy_bandwidth_gbps, cpu_load_note, environment, results_folder, time_calls, write_results,
)

from mbdlfast import ops  # noqa: E402
from mbdlfast.ops import reference  # noqa: E402
from mbdlfast.physics.masks import equispaced  # noqa: E402

PROVIDERS = ("naive", "torch", "triton", "cuda", "cpp", "auto")
OPS = {"A": "sense_forward", "A_adjoint": "sense_adjoint", "A_adjoint_A": "sense_normal", "dc": "dc_gradient_step"}
SHAPES = ((15, 640, 368), (15, 320, 320), (8, 230, 180), (20, 768, 396))
QUICK_SHAPES = ((15, 320, 368), (8, 230, 180))
GAMMA = 0.5
CENTER_FRACTION = 0.08


def minimum_bytes(op: str, coils: int, height: int, width: int, batch: int) -> int:
    image, coil_data, maps = batch * height * width, batch * coils * height * width, coils * height * width
    elements = {"A": image + maps + coil_data, "A_adjoint": coil_data + maps + image,
                "A_adjoint_A": image + maps + image, "dc": image + maps + 2 * image}[op]
    return 8 * elements


def resolve(provider: str, op: str, sample: tuple):
    """(the public op with the provider forced, the backend that runs, None), or (None, None, the
    reasons it cannot run these inputs)."""
    try:
        chosen = ops.explain(OPS[op], *sample, backend=provider).backend
    except RuntimeError as err:
        return None, None, str(err)
    return functools.partial(getattr(ops, OPS[op]), backend=provider), chosen, None


def make_inputs(coils: int, height: int, width: int, batch: int, accel: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, height, width, dtype=torch.complex128, generator=generator)
    maps = torch.randn(coils, height, width, dtype=torch.complex128, generator=generator)
    maps = maps / maps.abs().square().sum(0).sqrt()
    mask = equispaced(width, accel, CENTER_FRACTION, offset=0)
    y = reference.sense_forward(x, maps, mask)
    AHy = reference.sense_adjoint(y, maps, mask)
    exact = {"x": x, "maps": maps, "y": y, "AHy": AHy}
    single = {key: value.to(device=device, dtype=torch.complex64) for key, value in exact.items()}
    return {"exact": exact, "single": single, "mask": mask, "mask_device": mask.to(device)}


def arguments(op: str, tensors: dict, mask: torch.Tensor) -> tuple:
    if op == "A_adjoint":
        return tensors["y"], tensors["maps"], mask
    if op == "dc":
        return tensors["x"], tensors["maps"], mask, tensors["AHy"], GAMMA
    return tensors["x"], tensors["maps"], mask


def relative_error(result: torch.Tensor, expected: torch.Tensor) -> float:
    result = result.detach().to(device="cpu", dtype=torch.complex128)
    return float((result - expected).norm() / expected.norm())


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    header = environment(device)
    copy_gbps = copy_bandwidth_gbps(device)
    print(f"# {header['device']} | torch {header['torch']} | triton {header['triton']} | git {header['git_sha'][:10]}")
    print(f"# copy bandwidth {copy_gbps:.1f} GB/s" + ("" if device.type == "cuda" else f" | {cpu_load_note()}"))
    rows, skipped = [], set()
    print(f"{'op':<12}{'provider':<8}{'C':>4}{'H':>5}{'W':>5}{'R':>3}{'B':>3}{'median':>10}{'p20':>9}{'p80':>9}"
          f"{'GB/s':>8}{'%copy':>7}{'rel_err':>10}")
    with torch.no_grad():
        for coils, height, width in args.shapes:
            for accel in args.accels:
                for batch in args.batches:
                    data = make_inputs(coils, height, width, batch, accel, device)
                    for op in args.ops:
                        expected = getattr(reference, OPS[op])(*arguments(op, data["exact"], data["mask"]))
                        calls, chosen = {}, {}
                        for provider in args.providers:
                            sample = arguments(op, data["single"], data["mask_device"])
                            fn, chosen[provider], reason = resolve(provider, op, sample)
                            if fn is None:
                                if (provider, op) not in skipped:
                                    print(f"# skip {provider} {op}: {reason}")
                                    skipped.add((provider, op))
                                continue
                            calls[provider] = functools.partial(fn, *arguments(op, data["single"], data["mask_device"]))
                        timings = time_calls(calls, device, warmup=args.warmup, repeats=args.repeats)
                        nbytes = minimum_bytes(op, coils, height, width, batch)
                        for provider, call in calls.items():
                            timing = timings[provider]
                            gbps = nbytes / (timing["median_ms"] * 1e-3) / 1e9
                            row = {"op": op, "provider": provider, "coils": coils, "height": height, "width": width,
                                   "accel": accel, "batch": batch, **timing, "bytes": nbytes, "gbps": gbps,
                                   "rel_err": relative_error(call(), expected), "backend": chosen[provider]}
                            rows.append(row)
                            print(f"{op:<12}{provider:<8}{coils:>4}{height:>5}{width:>5}{accel:>3}{batch:>3}"
                                  f"{timing['median_ms']:>10.3f}{timing['p20_ms']:>9.3f}{timing['p80_ms']:>9.3f}"
                                  f"{gbps:>8.2f}{100 * gbps / copy_gbps:>6.1f}%{row['rel_err']:>10.1e}")
    return {**header, "copy_gbps": copy_gbps, "rows": rows}


def plot(results: dict, path: Path) -> None:
    """One panel per op: median time per case, one bar per provider (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in OPS if any(r["op"] == op for r in results["rows"])]
    providers = [p for p in PROVIDERS if any(r["provider"] == p for r in results["rows"])]
    fig, axes = plt.subplots(1, len(ops), figsize=(4.5 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        rows = [r for r in results["rows"] if r["op"] == op]
        cases = sorted({(r["coils"], r["height"], r["width"], r["accel"], r["batch"]) for r in rows})
        width = 0.8 / max(len(providers), 1)
        for i, provider in enumerate(providers):
            times = {(r["coils"], r["height"], r["width"], r["accel"], r["batch"]): r["median_ms"]
                     for r in rows if r["provider"] == provider}
            if not times:
                continue
            xs = [j + i * width for j, case in enumerate(cases) if case in times]
            ax.bar(xs, [times[case] for case in cases if case in times], width, label=provider,
                   color=f"C{PROVIDERS.index(provider)}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
        ax.set_xticklabels([f"{c}x{h}x{w}\nR{r} B{b}" for c, h, w, r, b in cases], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("median ms")
        ax.set_title(op)
    handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="upper right", fontsize=8)
    fig.suptitle(f"SENSE ops on {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in text.lower().split("x"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"shape: expected COILSxHEIGHTxWIDTH, got {text!r}")
    return parts


def csv(kind, choices=None):
    def parse(text: str):
        values = [kind(v) for v in text.split(",") if v]
        if choices is not None and (bad := [v for v in values if v not in choices]):
            raise argparse.ArgumentTypeError(f"expected values in {choices}, got {bad}")
        return values
    return parse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", type=csv(parse_shape), default=None, help="e.g. 15x640x368,8x230x180")
    parser.add_argument("--providers", type=csv(str, PROVIDERS), default=list(PROVIDERS))
    parser.add_argument("--ops", type=csv(str, tuple(OPS)), default=list(OPS))
    parser.add_argument("--accels", type=csv(int), default=None, help="default 4,8 (quick: 4)")
    parser.add_argument("--batches", type=csv(int), default=None, help="default 1,4 (quick: 1)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="two shapes, R=4, batch 1, fewer repeats")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    out = results_folder(args.out, args.quick)
    args.shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    args.accels = args.accels or ([4] if args.quick else [4, 8])
    args.batches = args.batches or ([1] if args.quick else [1, 4])
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.repeats = args.repeats if args.repeats is not None else (7 if args.quick else 30)

    results = run(args)
    path = write_results(results, out, "sense", torch.device(args.device), plot)
    print(f"# wrote {path} and .png")


if __name__ == "__main__":
    main()
