"""``python -m mbdlfast.info`` / ``mbdlfast info``: versions, optional packages, the CPU instruction set
of the C++ kernels, and per op which backend ``auto`` picks here and why the others cannot run.

:func:`versions` is what every results file records (demo.json, benchmark JSONs, recon attrs).
"""
from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys

import torch

# Optional packages: distribution -> what it is for and how to get it.
OPTIONAL_PACKAGES = {
    "triton": "fused GPU kernels (and their CPU interpreter in tests): pip install -e '.[triton]'",
    "ninja": "building the C++/CUDA extension: pip install ninja",
    "torchdeq": "benchmarks/bench_deq.py's reference solver: pip install --no-deps torchdeq==0.1.0",
    "sigpy": "test reference (ESPIRiT, CG-SENSE): pip install -e '.[test]'",
    "fastmri": "test reference (masks, metrics, VarNet): pip install --no-deps fastmri==0.3.0",
    "pytest": "the test suite: pip install -e '.[test]'",
}


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """mbdlfast, Python, torch, triton, torch-pruning, numpy and CUDA versions (None: not installed)."""
    from mbdlfast import __version__

    return {
        "mbdlfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _distribution_version("triton"),
        "torch_pruning": _distribution_version("torch-pruning"),
        "numpy": _distribution_version("numpy"),
        "cuda": torch.version.cuda,
    }


def _compiler_version() -> str:
    for compiler in ("c++", "g++", "clang++"):
        path = shutil.which(compiler)
        if path:
            first = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()
            return first[0] if first else path
    return "no C++ compiler found"


def cpu_instruction_set() -> str:
    """The instruction set the C++ CPU kernels run with here, or why there are none."""
    from mbdlfast._extension import extension_status

    loaded, why = extension_status()
    if not loaded:
        return f"none: {why}"
    from mbdlfast import _C_cpu

    return _C_cpu.cpu_isa()


def optional_packages() -> dict[str, str]:
    """Each optional package: its version, or 'missing: <what it is for>'."""
    return {name: _distribution_version(name) or f"missing: {purpose}" for name, purpose in OPTIONAL_PACKAGES.items()}


# The inputs info's automatic choices are shown for: the benchmark shape, complex64, lines along W.
AUTO_CASE = {"dtype": torch.complex64, "mask": "1d", "scalar": "real", "batch": 1, "coils": 15, "height": 320,
             "width": 368}


def auto_choices(device: str) -> dict[str, str]:
    """For each op on ``device``: the backend ``auto`` picks for :data:`AUTO_CASE` and why the ones
    before it were skipped."""
    from mbdlfast.ops import dispatch

    return {op: str(dispatch.decide(dispatch.Case(op, torch.device(device), **AUTO_CASE)))
            for op in dispatch.ops() if not op.startswith("deq.")}


def collect() -> dict:
    """Everything ``info`` prints, as a dict."""
    from mbdlfast._extension import cuda_extension_status, part_status
    from mbdlfast.ops import report

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {
        **versions(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "compiler": _compiler_version(),
        "nvcc": shutil.which("nvcc") or "not found",
        "extension": {"_C": part_status("_C")[1], "_C_cpu": part_status("_C_cpu")[1],
                      "_C_cuda": cuda_extension_status()[1]},
        "cpu_isa": cpu_instruction_set(),
        "optional": optional_packages(),
        "auto": {device: auto_choices(device) for device in devices},
        "backends": {device: report(device) for device in devices},
    }


def main() -> int:
    info = collect()
    for key, value in info.items():
        if key == "extension":
            for part, status in value.items():
                print(f"{'mbdlfast.' + part:>16}: {status}")
        elif key not in ("optional", "auto", "backends"):
            print(f"{key:>16}: {value if value is not None else 'none'}")
    print("\noptional packages:")
    for name, status in info["optional"].items():
        print(f"  {name:>14}: {status}")
    for device, table in info["backends"].items():
        shape = "x".join(str(AUTO_CASE[key]) for key in ("coils", "height", "width"))
        print(f"\nops on {device} (auto: the backend it picks for complex64 {shape} with a 1D mask, and why; "
              "then every backend):")
        for op, row in table.items():
            if op in info["auto"][device]:
                print(f"  {op}: auto -> {info['auto'][device][op]}")
            for name, status in row.items():
                print(f"    {name:>6}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
