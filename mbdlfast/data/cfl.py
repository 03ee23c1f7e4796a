"""BART's .cfl/.hdr array files.

A BART array is two files sharing a base name: ``NAME.hdr``, a text header whose line after
``# Dimensions`` lists the dimensions as integers, and ``NAME.cfl``, the raw complex64 samples in
Fortran (column-major) order. Arrays keep BART's dimension order (e.g. readout, phase, coil, ...).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mbdlfast.outputs import atomic_write

_SUFFIXES = (".cfl", ".hdr")
_BYTES_PER_SAMPLE = np.dtype(np.complex64).itemsize


def _base_path(path) -> Path:
    """``NAME``, ``NAME.cfl`` or ``NAME.hdr`` to ``NAME``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    return path.with_suffix("") if path.suffix in _SUFFIXES else path


def _parse_dims(hdr: Path) -> tuple[int, ...]:
    try:
        lines = [line.strip() for line in hdr.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{hdr}: cannot read the BART header ({err})") from err
    if "# Dimensions" in lines:
        position = lines.index("# Dimensions") + 1
    else:
        position = 1  # the dimensions line is the second line of a plain BART header
    if position >= len(lines) or not lines[position]:
        raise ValueError(f"{hdr}: no dimensions line found (expected integers on the line after '# Dimensions')")
    try:
        dims = tuple(int(token) for token in lines[position].split())
    except ValueError as err:
        raise ValueError(f"{hdr}: dimensions line {lines[position]!r} is not a list of integers") from err
    if any(d < 1 for d in dims):
        raise ValueError(f"{hdr}: dimensions {dims} must all be positive")
    return dims


def read_cfl(path) -> np.ndarray:
    """Read a BART array as complex64 numpy with BART's dims (a Fortran-ordered array).

    Raises ValueError naming the file when a file is missing, the header cannot be parsed, or the
    data size does not match the header's dimensions (a truncated or corrupt file).
    """
    base = _base_path(path)
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    for required in (hdr, cfl):
        if not required.is_file():
            raise ValueError(f"{required}: file not found (a BART array needs both {hdr.name} and {cfl.name})")
    dims = _parse_dims(hdr)
    expected_bytes = int(np.prod(dims)) * _BYTES_PER_SAMPLE
    actual_bytes = cfl.stat().st_size
    if actual_bytes != expected_bytes:
        raise ValueError(
            f"{cfl}: holds {actual_bytes} bytes but header dims {list(dims)} need {expected_bytes} "
            "(complex64); the file is truncated or corrupt"
        )
    return np.fromfile(cfl, dtype=np.complex64).reshape(dims, order="F")


def write_cfl(path, array) -> None:
    """Write ``array`` (numpy or torch, any numeric dtype) as a complex64 BART array.

    The dims written are ``array.shape`` in BART order (a 0-d array is written with dims [1]).
    Each file is replaced atomically.
    """
    base = _base_path(path)
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    data = np.asarray(array)
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise TypeError(f"array: expected numeric data, got dtype {data.dtype}")
    data = data.astype(np.complex64)
    dims = data.shape or (1,)
    header = "# Dimensions\n" + " ".join(str(d) for d in dims) + "\n"
    with atomic_write(base.with_name(base.name + ".cfl")) as handle:
        handle.write(data.ravel(order="F").tobytes())
    with atomic_write(base.with_name(base.name + ".hdr"), "w") as handle:
        handle.write(header)
