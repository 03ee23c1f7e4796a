"""``python -m mbdlfast.gpu_report``: what each Triton kernel compiles to on a GPU, without one.

Every kernel is built by its launcher's own launch function (:class:`mbdlfast.ops.triton_launch.
TritonLaunch`) from meta tensors at the benchmark shapes (batch 1, 15 coils, an R=4 line mask with
n_s = W // 4 sampled columns, complex64), specialised as Triton's runtime would specialise it, and
compiled ahead of time for the target with Triton's bundled ptxas. Per kernel and shape it prints
the compile facts (registers, spill bytes, shared memory, warps, stages, tensor-core instructions in
the PTX, programs in the grid) and the kernel's traffic model: the bytes it must move to and from
DRAM and that traffic's time at an H100's 3.35 TB/s. None of these numbers is a timing. Run it
without ``TRITON_INTERPRET`` (the interpreter's kernels do not compile).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import sys
from typing import Callable

import torch

from mbdlfast.deq.anderson_step import mix_launch, residual_gram_launch
from mbdlfast.ops import triton_library as lib
from mbdlfast.outputs import write_json

ARCHS = {"sm_90": 90, "sm_80": 80}
H100_BYTES_PER_S = 3.35e12
SHAPES = ((640, 368), (320, 320), (320, 368))
COILS = 15
HISTORY = 5  # Anderson m
_C64, _F32 = 8, 4  # bytes per complex64 / float32 element
_TENSOR_CORE = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:mma\.sync|wgmma\.mma_async)\.", re.MULTILINE)


def _meta(*shape, dtype=torch.complex64) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _cases(height: int, width: int, precisions: tuple[str, ...]) -> list[tuple[str, str, str, Callable, int]]:
    """(kernel, variant, data shape, build the launch, bytes to move) at batch 1 for one image shape."""
    ns = width // 4
    image, kspace = height * width * _C64, COILS * height * width * _C64
    compact, dft, phase = COILS * height * ns * _C64, 2 * ns * width * _F32, height * _C64
    x, maps, y = _meta(1, height, width), _meta(1, COILS, height, width), _meta(1, COILS, height, width)
    rows, planar, phases = _meta(1, COILS, height, ns), _meta(1, 2, ns, width, dtype=torch.float32), _meta(height)
    gamma = _meta(1, dtype=torch.float32)
    coil, single = f"1x{COILS}x{height}x{width}", f"1x{height}x{width}"
    weight = _meta(1, 1, width, dtype=torch.float32)
    cases = [
        ("coil_expand", "", coil, lambda: lib.coil_expand_launch(x, maps)[0], image + 2 * kspace),
        ("coil_reduce", "", coil, lambda: lib.coil_reduce_launch(y, maps)[0], 2 * kspace + image),
        ("soft_kspace_dc", "1d mask", coil, lambda: lib.soft_kspace_dc_launch(y, y, weight, gamma)[0],
         3 * kspace + width * _F32),
    ]
    for p in precisions:
        cases += [
            # x, maps, F_s, row phase in; compact rows out
            ("row_dft_forward", p, coil, lambda p=p: lib.row_dft_forward_launch(x, maps, planar, phases, p)[0],
             image + kspace + dft + phase + compact),
            # compact rows, maps, F_s, row phase in; output zero-filled, then written back once
            ("row_dft_adjoint", p, coil, lambda p=p: lib.row_dft_adjoint_launch(rows, maps, planar, phases, p)[0],
             compact + kspace + dft + phase + 2 * image),
            # x, maps, F_s in; scratch spectra out (read back from L2); output zero-filled and written
            ("sense_normal", p, coil, lambda p=p: lib.sense_normal_launch(x, maps, planar, None, None, p)[0],
             image + kspace + dft + compact + 2 * image),
            ("sense_normal", p + " dc_step", coil,
             lambda p=p: lib.sense_normal_launch(x, maps, planar, x, gamma, p)[0],
             2 * image + kspace + dft + compact + 2 * image),
        ]
    hist, state = _meta(HISTORY, 1, height * width), _meta(1, height * width)
    flags, alpha = _meta(1, dtype=torch.bool), _meta(1, HISTORY)
    cases += [
        # f(x), x_k and the other m - 1 residuals in; the new residual out
        ("anderson_residual_gram", f"m={HISTORY}", single, lambda: residual_gram_launch(state, hist, hist, 0)[0],
         (HISTORY + 2) * image),
        # x_k, m iterates and m residuals in; x_{k+1} and the best iterate out
        ("anderson_mix", f"m={HISTORY}", single,
         lambda: mix_launch(hist, hist, alpha, flags, flags, state, 0, 1, HISTORY, 1.0), (2 * HISTORY + 3) * image),
    ]
    colour, otf, weights = _meta(1, 3, height, width), _meta(1, height, width), _meta(1, dtype=torch.float32)
    for scale in (2, 4):
        # F z, F A^H y in (the transfer function once per channel); X out
        cases.append(("sr_data_solve", f"s={scale}", f"1x3x{height}x{width}",
                      lambda scale=scale: lib.sr_data_solve_launch(colour, colour, otf, weights, scale)[0],
                      3 * 3 * image + 3 * image))
    return cases


def compile_facts(launch, arch: int) -> dict:
    """Compile ``launch`` for ``sm_<arch>`` as the runtime would and read ptxas' resource report."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    kernel = launch.kernel
    if not isinstance(kernel, JITFunction):
        raise RuntimeError("the kernels were built for the interpreter (TRITON_INTERPRET): run the report without it")
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.meta)
    options, signature, constexprs, attrs = kernel._pack_args(backend, launch.meta, bound, specialization, options)
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True  # printed by the compile itself: the facts of this very cubin
        knobs.compilation.always_compile = True  # a cache hit would skip ptxas and its log
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)
    text = log.getvalue()
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return {
        "registers": int(re.search(r"Used (\d+) registers", text).group(1)),
        "spill_store_bytes": int(spills.group(1)) if spills else 0,
        "spill_load_bytes": int(spills.group(2)) if spills else 0,
        "shared_bytes": compiled.metadata.shared,
        "num_warps": compiled.metadata.num_warps,
        "num_stages": compiled.metadata.num_stages,
        "tensor_core_instructions": len(_TENSOR_CORE.findall(compiled.asm["ptx"])),
    }


def report(archs=("sm_90",), shapes=SHAPES, precisions=("ieee", "tf32x3")) -> list[dict]:
    """One row per (arch, shape, kernel, variant); a failed compile is a row with ``error``."""
    rows = []
    for arch in archs:
        for height, width in shapes:
            for name, variant, shape, build, moved in _cases(height, width, tuple(precisions)):
                launch = build()
                row = {"arch": arch, "kernel": name, "variant": variant, "shape": shape,
                       "num_sampled": width // 4, "programs": math.prod(launch.grid), "bytes_moved": moved,
                       "h100_roofline_us": moved / H100_BYTES_PER_S * 1e6}
                try:
                    row.update(compile_facts(launch, ARCHS[arch]))
                except Exception as error:  # noqa: BLE001 - a report row, not a crash
                    row["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
                rows.append(row)
    return rows


def problems(rows: list[dict]) -> list[str]:
    """The rows that fail the report: compile errors and any spill."""
    out = []
    for r in rows:
        where = f"{r['arch']} {r['kernel']} {r['variant']} {r['shape']}"
        if "error" in r:
            out.append(f"{where}: {r['error']}")
        elif r["spill_store_bytes"] or r["spill_load_bytes"]:
            out.append(f"{where}: spills {r['spill_store_bytes']} B stored, {r['spill_load_bytes']} B loaded")
    return out


def format_table(rows: list[dict]) -> str:
    head = (f"{'arch':6} {'kernel':23} {'variant':15} {'shape':13} {'regs':>4} {'spill':>6} {'smem':>7} {'warps':>5} "
            f"{'stages':>6} {'tc':>4} {'progs':>6} {'MB':>7} {'H100 us':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        start = f"{r['arch']:6} {r['kernel']:23} {r['variant']:15} {r['shape']:13} "
        end = f"{r['programs']:>6} {r['bytes_moved'] / 1e6:>7.2f} {r['h100_roofline_us']:>8.2f}"
        if "error" in r:
            lines.append(start + f"{'compile error':>37} " + end)
            continue
        lines.append(start + f"{r['registers']:>4} {r['spill_store_bytes'] + r['spill_load_bytes']:>6} "
                     f"{r['shared_bytes']:>7} {r['num_warps']:>5} {r['num_stages']:>6} "
                     f"{r['tensor_core_instructions']:>4} " + end)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbdlfast.gpu_report", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=sorted(ARCHS), help="target (repeatable; default sm_90)")
    parser.add_argument("--shape", action="append", help="HxW image shape (repeatable; default the benchmark set)")
    parser.add_argument("--precision", action="append", choices=("ieee", "tf32x3"),
                        help="dot precision of the row-DFT kernels (repeatable; default both)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON (atomically)")
    args = parser.parse_args(argv)
    shapes = [tuple(int(n) for n in s.lower().split("x")) for s in args.shape] if args.shape else SHAPES
    rows = report(args.arch or ["sm_90"], shapes, args.precision or ("ieee", "tf32x3"))
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"bandwidth_bytes_per_s": H100_BYTES_PER_S, "rows": rows})
    failed = problems(rows)
    for line in failed:
        print("FAIL", line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
