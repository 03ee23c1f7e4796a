"""Record a GPU run of bench_sense.py as the committed measurement that orders ``auto`` on that GPU.

Reads the JSON of ``benchmarks/bench_sense.py`` run on CUDA (``sense_<gpu>.json``) and writes its
per-backend median times (torch, triton, cuda; not naive, cpp or auto) into
``mbdlfast/ops/gpu_measurements.json``, the package data :mod:`mbdlfast.ops.measurements` reads:
from then on ``auto`` on a GPU of that name tries a fused backend before torch only for the ops and
sizes where that run measured it faster. The run replaces any earlier entry of the same GPU. Review
the rows (the timings and each row's ``rel_err``) before committing the file.

    python benchmarks/bench_sense.py --device cuda --out gpu_out
    python benchmarks/record_gpu_measurement.py gpu_out/sense_nvidia_h200.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sense import OPS  # noqa: E402

from mbdlfast.ops.measurements import MEASUREMENTS_FILE  # noqa: E402
from mbdlfast.outputs import write_json  # noqa: E402

MEASURED_BACKENDS = ("torch", "triton", "cuda")
CASE_KEYS = ("batch", "coils", "height", "width", "accel")
# What bench_sense times: complex64 data and a 1D equispaced mask (see its docstring).
BENCH_DTYPE, BENCH_MASK = "complex64", "1d"
# A backend whose output is further than this from the float64 reference is not recorded.
MAX_REL_ERR = 1e-4


def measured_rows(result: dict) -> list[dict]:
    """One row per (op, case): the median time of each backend that ran it correctly; only cases
    where torch was timed too, since auto leaves torch only for a backend measured faster than it."""
    cases: dict[tuple, dict] = {}
    for row in result["rows"]:
        if row["provider"] not in MEASURED_BACKENDS or row["rel_err"] > MAX_REL_ERR:
            continue
        key = (OPS[row["op"]], *(row[k] for k in CASE_KEYS))
        case = cases.setdefault(key, {"op": key[0], "dtype": BENCH_DTYPE, "mask": BENCH_MASK,
                                      **{k: row[k] for k in CASE_KEYS}, "median_ms": {}})
        case["median_ms"][row["provider"]] = row["median_ms"]
    return [case for case in cases.values() if "torch" in case["median_ms"]]


def record(result: dict, source: str, measurements: dict) -> dict:
    """``measurements`` (the file's content) with ``result``'s GPU entry replaced."""
    if result.get("device_type") != "cuda":
        raise SystemExit(f"{source}: expected a bench_sense run on CUDA, got one on "
                         f"{result.get('device_type', 'an unknown device type')} ({result.get('device')})")
    rows = measured_rows(result)
    if not rows:
        raise SystemExit(f"{source}: no torch/triton/cuda rows within rel_err {MAX_REL_ERR:g} to record")
    provenance = {key: result.get(key) for key in ("git_sha", "torch", "triton", "cuda")}
    entry = {"source": {"file": Path(source).name, **provenance}, "rows": rows}
    return {**measurements, "devices": {**measurements["devices"], result["device"]: entry}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a bench_sense JSON of a run on CUDA")
    parser.add_argument("--out", type=Path, default=MEASUREMENTS_FILE,
                        help="the measurements file to update (default: the package's, which is committed)")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        raise SystemExit(f"results: no such file {args.results}")
    result = json.loads(args.results.read_text())
    base = args.out if args.out.is_file() else MEASUREMENTS_FILE
    updated = record(result, str(args.results), json.loads(base.read_text()))
    write_json(args.out, updated)
    print(f"recorded {len(updated['devices'][result['device']]['rows'])} measured cases on {result['device']} "
          f"into {args.out}")


if __name__ == "__main__":
    main()
