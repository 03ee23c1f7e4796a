"""Shift-free centred DFT constants for the fused SENSE kernels, built once and cached.

The centred orthonormal DFT of length N (fastMRI's ``fftc``) is, for any N, even or odd,

    X[k] = N^(-1/2) Σ_n x[n] ω^((k−c)(n−c)),   ω = exp(−2πi/N),  c = N // 2,

so no fftshift is needed: along the phase-encode dimension W the kernels multiply by the rows of
this matrix at the sampled columns only (weighted by the mask values); along H a plain FFT is
centred by modulation (:func:`mbdlfast.ops.fft.centring_phases`). Exponents are reduced mod N in
int64 before the float64 phase.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import weakref

import torch


@dataclasses.dataclass(frozen=True)
class SampledRowDft:
    """Rows of the centred DFT along W at the sampled columns, scaled by the mask values.

    ``planar``: (Bm, 2, n_s, W) float32 real/imag planes (the kernels' operand); ``matrix``: the same
    as (Bm, n_s, W) complex64 (for the torch parts of the backward); ``columns``: (Bm, n_s) int64.
    Batch entries with fewer sampled columns than n_s are padded with zero rows whose column index
    points at an unsampled column, so scattering them writes zeros where zeros belong.
    """

    planar: torch.Tensor
    matrix: torch.Tensor
    columns: torch.Tensor

    @property
    def num_sampled(self) -> int:
        return self.columns.shape[-1]


def _centred_exponents(n: int, rows: torch.Tensor) -> torch.Tensor:
    """(k−c)(n−c) mod N for the given output rows k and every n, exact in int64."""
    c = n // 2
    return ((rows[:, None] - c) * (torch.arange(n, dtype=torch.int64) - c)[None, :]) % n


def _unit_phase(exponent: torch.Tensor, n: int) -> torch.Tensor:
    """ω^exponent = exp(−2πi·exponent/N) in complex128."""
    return torch.polar(torch.ones(exponent.shape, dtype=torch.float64), -2.0 * math.pi * exponent.double() / n)


def _build_row_dft(width: int, columns: tuple[tuple[int, ...], ...], weights: tuple[tuple[float, ...], ...],
                   device: torch.device) -> SampledRowDft:
    num_sampled = max(len(cols) for cols in columns)
    planes, index = [], []
    for cols, wts in zip(columns, weights):
        rows = _unit_phase(_centred_exponents(width, torch.tensor(cols, dtype=torch.int64)), width)
        rows = rows * torch.tensor(wts, dtype=torch.float64)[:, None] / math.sqrt(width)
        pad = num_sampled - len(cols)
        unsampled = sorted(set(range(width)) - set(cols))[:1] * pad
        planes.append(torch.cat([rows, rows.new_zeros(pad, width)]))
        index.append(list(cols) + unsampled)
    matrix = torch.stack(planes).to(torch.complex64)
    return SampledRowDft(
        planar=torch.stack([matrix.real, matrix.imag], dim=1).contiguous().to(device),
        matrix=matrix.to(device),
        columns=torch.tensor(index, dtype=torch.int64).reshape(len(columns), num_sampled).to(device),
    )


class _RowDftCache:
    """LRU cache keyed by (W, columns, weights, device); a tensor-identity memo skips the host sync.

    Re-deriving the key needs the mask on the host (a device sync), so a mask tensor seen before
    (same object, unchanged version counter) maps straight to its constants.
    """

    def __init__(self, max_entries: int = 32):
        self._by_content: collections.OrderedDict = collections.OrderedDict()
        self._by_tensor: dict[int, tuple] = {}
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, source: torch.Tensor, width: int, is_columns: bool) -> SampledRowDft:
        memo_key = (id(source), is_columns, width)
        with self._lock:
            memo = self._by_tensor.get(memo_key)
            if memo is not None and memo[0]() is source and memo[1] == source._version:
                return memo[2]
        key = _content_key(source, width, is_columns)
        with self._lock:
            value = self._by_content.get(key)
            if value is None:
                value = _build_row_dft(width, key[1], key[2], source.device)
                self._by_content[key] = value
                if len(self._by_content) > self._max_entries:
                    self._by_content.popitem(last=False)
            self._by_content.move_to_end(key)
            if len(self._by_tensor) > 4 * self._max_entries:
                self._by_tensor.clear()
            self._by_tensor[memo_key] = (weakref.ref(source), source._version, value)
        return value


def _content_key(source: torch.Tensor, width: int, is_columns: bool) -> tuple:
    host = source.detach().to("cpu")
    host = host.unsqueeze(0) if host.dim() == 1 else host
    if is_columns:
        if host.numel() and (int(host.min()) < 0 or int(host.max()) >= width):
            raise ValueError(f"columns: indices must lie in [0, {width}), got range [{int(host.min())}, {int(host.max())}]")
        columns = tuple(tuple(int(c) for c in row) for row in host)
        weights = tuple((1.0,) * len(row) for row in columns)
    else:
        values = host.to(torch.float64)
        columns = tuple(tuple(torch.nonzero(row).flatten().tolist()) for row in values)
        weights = tuple(tuple(row[list(cols)].tolist()) for row, cols in zip(values, columns))
    return (width, columns, weights, str(source.device))


_ROW_DFT_CACHE = _RowDftCache()


def row_dft_from_mask(mask: torch.Tensor, width: int) -> SampledRowDft:
    """Constants for a 1D mask (W,) or (Bm,W) of bool or real weights (at least one sampled column)."""
    return _ROW_DFT_CACHE.get(mask, width, is_columns=False)


def row_dft_from_columns(columns: torch.Tensor, width: int) -> SampledRowDft:
    """Constants for sampled column indices (n_s,) or (B,n_s) in compact k-space order, weight 1."""
    return _ROW_DFT_CACHE.get(columns, width, is_columns=True)
