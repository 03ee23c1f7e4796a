"""Loading the compiled extension ``mbdlfast._C`` without ever breaking ``import mbdlfast``.

Order: the extension built at install time; else, with ``MBDLFAST_JIT=1`` in a source checkout, a
JIT build with ninja (cached by torch); else one logged warning and the torch fallback.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

logger = logging.getLogger("mbdlfast")

SOURCE_ROOT = Path(__file__).resolve().parent.parent / "csrc"


@functools.lru_cache(maxsize=None)
def extension_status() -> tuple[bool, str]:
    """Return ``(loaded, how_or_why_not)``; tries once per process."""
    import torch  # noqa: F401 - loads libc10/libtorch, which _C links against

    try:
        from mbdlfast import _C

        return True, f"built at install ({Path(_C.__file__).name})"
    except ImportError as err:
        reason = f"mbdlfast._C is not built ({err})"
    if os.environ.get("MBDLFAST_JIT") == "1":
        try:
            _jit_build()
            return True, "JIT-built with ninja (MBDLFAST_JIT=1)"
        except Exception as err:  # noqa: BLE001 - any build failure means: fall back to torch
            reason += f"; the JIT build failed too ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    logger.warning("%s: the cpp/cuda backends are off and mbdlfast falls back to torch", reason)
    return False, reason


def extension_loaded() -> bool:
    return extension_status()[0]


def _jit_build() -> None:
    """Compile csrc/ with ninja into torch's extension cache and load it (source checkouts only)."""
    import torch
    from torch.utils.cpp_extension import load

    if not SOURCE_ROOT.is_dir():
        raise RuntimeError(f"no C++ sources at {SOURCE_ROOT} (installed from a wheel?)")
    sources = sorted(str(p) for p in SOURCE_ROOT.glob("*.cpp")) + sorted(str(p) for p in SOURCE_ROOT.glob("cpu/*.cpp"))
    if torch.cuda.is_available() and torch.version.cuda is not None:
        sources += sorted(str(p) for p in SOURCE_ROOT.glob("cuda/*") if p.suffix in (".cu", ".cpp"))
    load(
        name="mbdlfast_C",
        sources=sources,
        extra_cflags=["-O3", "-fopenmp", "-Wno-maybe-uninitialized"],  # as setup.py; the C++ standard is torch's
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
        verbose=False,
    )
