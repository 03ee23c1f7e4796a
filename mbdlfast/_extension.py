"""Loading the compiled parts of mbdlfast (see :mod:`mbdlfast._build`) without ever breaking
``import mbdlfast``: the op schemas ``_C``, the CPU kernels ``_C_cpu``, the CUDA kernels ``_C_cuda``.

Each part is loaded on its own: built at install time; else, with ``MBDLFAST_JIT=1`` in a source
checkout, a JIT build with ninja (cached by torch); else the reason it is missing. The ``cpp``
backend needs the schemas and the CPU kernels (:func:`extension_status`, which logs one warning when
they are missing), the ``cuda`` backend the schemas and the CUDA kernels (:func:`cuda_extension_status`,
tried only when torch has CUDA).
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
from pathlib import Path

from mbdlfast import _build

logger = logging.getLogger("mbdlfast")

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def part_status(part: str) -> tuple[bool, str]:
    """``(loaded, how_or_why_not)`` of one part (``"_C"``, ``"_C_cpu"``, ``"_C_cuda"``); tried once per process."""
    import torch  # noqa: F401 - loads libc10/libtorch, which the parts link against

    if part != "_C" and not part_status("_C")[0]:
        return False, f"{_build.PURPOSE[part]} need {_build.PURPOSE['_C']}: {part_status('_C')[1]}"
    try:
        module = importlib.import_module(f"mbdlfast.{part}")
        return True, f"built at install ({Path(module.__file__).name})"
    except ImportError as err:
        reason = f"mbdlfast.{part} ({_build.PURPOSE[part]}) is not built ({err})"
    if os.environ.get("MBDLFAST_JIT") == "1":
        try:
            _jit_build(part)
            return True, "JIT-built with ninja (MBDLFAST_JIT=1)"
        except Exception as err:  # noqa: BLE001 - any build failure means: fall back to torch
            reason += f"; the JIT build failed too ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    return False, reason


@functools.lru_cache(maxsize=None)
def extension_status() -> tuple[bool, str]:
    """``(loaded, how_or_why_not)`` of what the ``cpp`` backend needs: the schemas and CPU kernels."""
    for part in ("_C", "_C_cpu"):
        loaded, why = part_status(part)
        if not loaded:
            logger.warning("%s: the cpp backend is off and mbdlfast falls back to torch", why)
            return False, why
    return True, part_status("_C_cpu")[1]


@functools.lru_cache(maxsize=None)
def cuda_extension_status() -> tuple[bool, str]:
    """``(loaded, how_or_why_not)`` of what the ``cuda`` backend needs: the schemas and CUDA kernels."""
    import torch

    if torch.version.cuda is None:
        return False, "this torch has no CUDA, so mbdlfast._C_cuda is not built"
    return part_status("_C_cuda")


def extension_loaded() -> bool:
    return extension_status()[0]


def _jit_build(part: str) -> None:
    """Compile ``part`` with ninja into torch's extension cache and load it (source checkouts only)."""
    import torch
    from torch.utils.cpp_extension import load

    sources = [str(REPO_ROOT / source) for source in _build.sources(part, REPO_ROOT)]
    if not sources:
        raise RuntimeError(f"no C++ sources for {part} under {REPO_ROOT / 'csrc'} (installed from a wheel?)")
    if part == "_C_cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device to build the CUDA kernels for")
    home = _build.cuda_home()
    if part == "_C_cuda" and home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = home
    load(name=f"mbdlfast{part}", sources=sources, extra_cflags=_build.CXX_FLAGS, extra_ldflags=_build.LINK_FLAGS,
         extra_cuda_cflags=_build.NVCC_FLAGS, verbose=False)
