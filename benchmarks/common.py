"""Shared benchmark utilities: robust timing, a copy-bandwidth yardstick, the run's environment and
where results go.

Timing: a few warm-up calls, then ``repeats`` timed calls, reported as median and 20th/80th
percentiles in milliseconds. On CUDA each call is timed with CUDA events after a synchronize, on
CPU with ``time.perf_counter``. Python's garbage collector is paused while timing (as ``timeit``
does): a collection that happens to land in one candidate's call is the interpreter's cost, not the
candidate's.

Results: a full run writes ``benchmarks/results/<name>_<device>.json`` (and its PNGs), the files
that are committed; a ``--quick`` run is a smoke test and writes to ``./bench_out`` instead. No
quick run writes into ``benchmarks/results`` (:func:`results_folder` refuses), so it never
replaces a committed result. Files are written atomically.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from mbdlfast.info import versions
from mbdlfast.outputs import atomic_path, check_writable, remove_stale_temporaries, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
QUICK_RESULTS_DIR = Path("bench_out")


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile of an already sorted list."""
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _one_sample_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def time_calls(fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int = 3,
               repeats: int = 20) -> dict[str, dict[str, float]]:
    """Median / p20 / p80 wall time (ms) of each ``fn()``, the candidates interleaved round-robin.

    Interleaving spreads the load of a shared machine evenly over the candidates, so their ratios
    stay meaningful even when the absolute times drift. The order rotates every round, so that each
    candidate follows each other one equally often: a candidate that always ran right after another
    on the same inputs would find them in cache and time faster than it runs on its own.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    collecting = gc.isenabled()
    gc.disable()
    try:
        names = list(fns)
        for round_index in range(repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_one_sample_ms(fns[name], device))
    finally:
        if collecting:
            gc.enable()
    timings = {}
    for name, values in samples.items():
        values.sort()
        timings[name] = {"median_ms": _percentile(values, 0.5), "p20_ms": _percentile(values, 0.2),
                         "p80_ms": _percentile(values, 0.8)}
    return timings


def time_call(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, repeats: int = 20) -> dict[str, float]:
    """Median / p20 / p80 wall time of ``fn()`` in milliseconds."""
    return time_calls({"fn": fn}, device, warmup=warmup, repeats=repeats)["fn"]


def copy_bandwidth_gbps(device: torch.device, *, megabytes: int | None = None, repeats: int = 10) -> float:
    """Device-to-same-device copy bandwidth in GB/s, counting the bytes read plus the bytes written."""
    megabytes = megabytes or (1024 if device.type == "cuda" else 128)
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device).fill_(1)
    target = torch.empty_like(source)
    timing = time_call(lambda: target.copy_(source), device, warmup=2, repeats=repeats)
    return 2 * source.numel() / (timing["median_ms"] * 1e-3) / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        text = Path("/proc/cpuinfo").read_text()
        if match := re.search(r"model name\s*:\s*(.+)", text):
            model = match.group(1).strip()
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def device_slug(device: torch.device) -> str:
    """A short file-name-safe tag: 'cpu' or the GPU name, e.g. 'nvidia_h100_80gb_hbm3'."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


def git_sha() -> str:
    """The checkout's commit; where the tree travelled without .git (a device machine gets a copy of
    the working tree), ``$GIT_SHA`` or a ``GIT_SHA`` file in the repository written by the caller."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    if os.environ.get("GIT_SHA"):
        return os.environ["GIT_SHA"]
    file = REPO_ROOT / "GIT_SHA"
    return file.read_text().strip() if file.is_file() else "unknown"


def environment(device: torch.device) -> dict[str, object]:
    """Header fields of a results file: the device (name and type), the versions of torch, triton, torch-pruning (and
    the rest of :func:`mbdlfast.info.versions`) and the git sha (the copy bandwidth is measured apart)."""
    return {"device": device_name(device), "device_type": device.type, **versions(), "git_sha": git_sha()}


def cpu_load_note() -> str:
    """The 1-minute load average: a shared machine inflates CPU timings."""
    try:
        return f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unavailable"


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """``--out DIR``: where the JSON and PNGs go (see :func:`results_folder`)."""
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {RESULTS_DIR.relative_to(REPO_ROOT)}; with --quick "
                             f"./{QUICK_RESULTS_DIR}, and never {RESULTS_DIR.relative_to(REPO_ROOT)})")


def results_folder(out: Path | None, quick: bool) -> Path:
    """The checked output folder of a run: ``out``, else the committed results (full runs) or
    ``./bench_out`` (quick runs). A quick run into the committed results is refused (SystemExit)."""
    folder = out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    if quick and (folder.resolve() == RESULTS_DIR.resolve() or RESULTS_DIR.resolve() in folder.resolve().parents):
        raise SystemExit(f"--out: a --quick run never writes into {RESULTS_DIR} (it holds the committed results); "
                         "give another folder")
    try:
        folder = check_writable(folder)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    remove_stale_temporaries(folder)  # left by a run killed while writing
    return folder


def write_results(results: dict, out_dir: Path, name: str, device: torch.device,
                  plot: Callable[[dict, Path], None] | None) -> Path:
    """Write ``results`` to ``out_dir/<name>_<device slug>.json`` and its plot beside it (.png), each
    atomically; returns the JSON path."""
    path = out_dir / f"{name}_{device_slug(device)}.json"
    write_json(path, results)
    if plot is not None:
        with atomic_path(path.with_suffix(".png")) as temporary:
            plot(results, temporary)
    return path
