"""What the compiled parts of mbdlfast are built from, shared by ``setup.py`` and the JIT build.

Three extension modules, so that one failing to build never removes another:

- ``mbdlfast._C``: the op schemas only (``csrc/registration.cpp``), which compile anywhere;
- ``mbdlfast._C_cpu``: the C++ CPU kernels (``csrc/cpu``), x86-64 SIMD paths behind architecture
  guards, a portable baseline elsewhere;
- ``mbdlfast._C_cuda``: the CUDA kernels (``csrc/cuda``), built only where torch has CUDA and nvcc
  is found.

Compiler flags name no C++ standard: torch's build adds the one its headers need. This module
imports nothing of mbdlfast (``setup.py`` loads it by path, before mbdlfast is installed).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# extension module (under mbdlfast.) -> source patterns relative to the repository root
PARTS = {
    "_C": ("csrc/registration.cpp",),
    "_C_cpu": ("csrc/cpu/*.cpp",),
    "_C_cuda": ("csrc/cuda/*.cu", "csrc/cuda/*.cpp"),
}
PURPOSE = {"_C": "the op schemas", "_C_cpu": "the C++ CPU kernels", "_C_cuda": "the CUDA kernels"}
# -Wno-maybe-uninitialized: GCC 12's own AVX-512 headers trip it (_mm512_undefined_*, GCC bug 105593),
# hundreds of lines that would bury the build's progress and real warnings.
CXX_FLAGS = ["-O3", "-fopenmp", "-Wno-maybe-uninitialized"]
NVCC_FLAGS = ["-O3", "--use_fast_math"]
# TORCH_CUDA_ARCH_LIST of a build without a visible GPU: A100 (sm_80) and H100/H200 (sm_90), with PTX
DEFAULT_CUDA_ARCHITECTURES = "8.0;9.0+PTX"
LINK_FLAGS = ["-fopenmp"]


def sources(part: str, root) -> list[str]:
    """The source files of ``part``, sorted, relative to the repository ``root``."""
    root = Path(root)
    return sorted(str(path.relative_to(root)) for pattern in PARTS[part] for path in root.glob(pattern))


def cuda_home() -> str | None:
    """The CUDA toolkit folder: ``$CUDA_HOME`` / ``$CUDA_PATH``, else where the ``nvcc`` on the path
    really lives (its ``--dryrun`` names it; ``/usr/local/bin/nvcc`` is often a wrapper script, from
    which torch would guess ``/usr/local`` and miss the headers), else None."""
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            return os.environ[variable]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        dry_run = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return str(Path(nvcc).resolve().parent.parent)
    match = re.search(r"^#\$ _HERE_=(.+)$", dry_run.stderr + dry_run.stdout, flags=re.MULTILINE)
    return str(Path(match.group(1).strip()).parent) if match else str(Path(nvcc).resolve().parent.parent)
