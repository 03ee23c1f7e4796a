"""Committed GPU measurements of the ops: the order in which ``auto`` tries backends on CUDA.

On a GPU no backend is assumed faster than torch: ``auto`` tries ``cuda`` or ``triton`` before torch
only where a GPU run of ``benchmarks/bench_sense.py``, recorded into ``gpu_measurements.json`` beside
this module (package data) by ``benchmarks/record_gpu_measurement.py``, measured it faster for that
op on a GPU of the same name. Without such a measurement ``auto`` runs torch on CUDA, and
:func:`mbdlfast.ops.explain` says so ("no committed GPU measurement for <op> on <device>").

File layout: ``{"devices": {<torch.cuda.get_device_name()>: {"source": {...}, "rows": [row, ...]}}}``,
a row being one measured case: ``op`` (the public op name), ``dtype``, ``mask`` ("1d"/"2d"),
``batch``, ``coils``, ``height``, ``width``, ``accel`` and ``median_ms`` per backend. A case is
decided by the rows of its op, dtype and mask kind at the measured size nearest its own (in
log B·C·H·W): the crossovers are where the nearest measured size changes. At that size backends
rank by their summed median times over the rows there (e.g. both accelerations).
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch

MEASUREMENTS_FILE = Path(__file__).with_name("gpu_measurements.json")


@functools.lru_cache(maxsize=None)
def committed() -> dict:
    """The committed measurements, per GPU name (read once per process)."""
    return json.loads(MEASUREMENTS_FILE.read_text())["devices"]


@functools.lru_cache(maxsize=None)
def _gpu_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def gpu_name(device: torch.device) -> str:
    """The name the measurements are filed under (a host-side query, cached: it never waits on the GPU)."""
    return _gpu_name(device.index if device.index is not None else torch.cuda.current_device())


def _describe(case) -> str:
    return str(case.dtype).removeprefix("torch.") + (f", {case.mask} mask" if case.mask else "")


def auto_order(case, candidates: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]], str]:
    """For a CUDA ``case``: (the backends of ``candidates`` to try, fastest measured first, torch
    last; why each other candidate is not tried; the measurement the order comes from, in words)."""
    name = gpu_name(case.device)
    rows = [row for row in committed().get(name, {}).get("rows", ())
            if row["op"] == case.op and row["dtype"] == str(case.dtype).removeprefix("torch.")
            and row.get("mask") == case.mask]
    others = [backend for backend in candidates if backend != "torch"]
    if not rows:
        reason = f"no committed GPU measurement for {case.op} on {name} ({_describe(case)})"
        return ["torch"], {backend: [reason] for backend in others}, ""
    size = math.log(max(case.batch * case.coils * case.height * case.width, 1))

    def distance(row) -> float:
        return abs(math.log(row["batch"] * row["coils"] * row["height"] * row["width"]) - size)

    nearest = min(distance(row) for row in rows)
    at_size = [row for row in rows if distance(row) == nearest]
    shape = "x".join(str(at_size[0][key]) for key in ("batch", "coils", "height", "width"))
    totals = {backend: sum(row["median_ms"][backend] for row in at_size) for backend in candidates
              if all(backend in row["median_ms"] for row in at_size)}
    ranked = sorted(totals, key=totals.get)
    if "torch" not in ranked:
        ranked.append("torch")
    unmeasured = {backend: [f"not in the committed GPU measurement of {case.op} on {name} at {shape}"]
                  for backend in others if backend not in totals}
    timings = ", ".join(f"{backend} {totals[backend]:.3g} ms" for backend in sorted(totals, key=totals.get))
    basis = f"measured on {name} at {shape}: {timings}"
    return ranked, unmeasured, basis
