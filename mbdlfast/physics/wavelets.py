"""Orthogonal multi-level 2D discrete wavelet transform (Daubechies) of batched images, in torch.

``WaveletTransform2D(image_shape, wavelet, levels, mode)`` maps real or complex images (B,H,W) to
coefficients ``[approx, details_J, ..., details_1]`` (PyWavelets' ``wavedec2`` order, coarsest
first): ``approx`` is (B,h_J,w_J) and ``details_j`` is (B,3,h_j,w_j), the horizontal, vertical and
diagonal details (PyWavelets' cH, cV, cD) of level j. ``inverse`` is the exact adjoint.

Each level filters along W and then H with the low/high-pass pair and keeps every second output.
The filters are orthonormal, so on an infinite or a periodic signal of even length this step is an
orthogonal map. The finite image needs a boundary rule, ``mode``:

* ``"periodization"`` (default): at each level an odd-sized approximation gets one zero row/column
  appended (at the end), then is extended periodically. Periodic filtering of an even length n is
  orthogonal (n coefficients), and zero padding is an isometry whose adjoint crops, so
  W^H W = I on the image. When H and W are multiples of 2^levels nothing is padded and the
  transform is square and orthogonal (W W^H = I too); the coefficients then equal PyWavelets'
  ``mode="periodization"`` (which treats odd sizes differently).
* ``"zero"``: PyWavelets' ``mode="zero"``, as SigPy's ``L1WaveletRecon`` uses it. The image is
  extended by zeros and every coefficient the filters can reach is kept (n -> (n + L - 1) // 2 per
  level, L the filter length). These are all the nonzero coefficients of the orthogonal transform
  of the zero-extended signal, so again W^H W = I, but the transform is redundant: W W^H != I.

Either way ``inverse(forward(x)) == x``; ``forward(inverse(c)) == c`` holds only for a square
transform. The filters of dbN come from the spectral factorisation of the Daubechies polynomial
(extremal phase), in float64, equal to PyWavelets' to rounding.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from mbdlfast._validation import check_int, check_shape, check_tensor

MODES = ("periodization", "zero")
_MAX_ORDER = 10  # np.roots on the Daubechies polynomial stays at float64 accuracy up to here
WAVELETS = ("haar",) + tuple(f"db{order}" for order in range(1, _MAX_ORDER + 1))
_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def daubechies_lowpass(order: int) -> np.ndarray:
    """The dbN reconstruction low-pass filter (length 2N, sum sqrt(2)), by spectral factorisation.

    |H(w)|^2 = 2 cos^{2N}(w/2) P(sin^2(w/2)) with P(y) = sum_k C(N-1+k, k) y^k. Each root y of P gives
    the pair z, 1/z of z + 1/z = 2 - 4y; keeping the root inside the unit circle gives the minimum-
    (extremal-) phase filter, PyWavelets' ``rec_lo``. ``dec_lo`` is its reverse.
    """
    order = check_int("order", order, minimum=1)
    if order > _MAX_ORDER:
        raise ValueError(f"order: expected at most {_MAX_ORDER} (db{_MAX_ORDER}), got {order}")
    polynomial_in_y = [math.comb(order - 1 + k, k) for k in range(order)]
    zeros = []
    for y in np.roots(polynomial_in_y[::-1]).astype(complex):
        b = 2 - 4 * y
        z = (b + np.sqrt(b * b - 4)) / 2
        zeros.append(z if abs(z) < 1 else 1 / z)
    taps = np.convolve(np.poly(zeros), np.poly(-np.ones(order))).real
    return taps * (math.sqrt(2) / taps.sum())


def _filter_order(wavelet) -> int:
    if wavelet not in WAVELETS:
        raise ValueError(f"wavelet: expected one of {WAVELETS}, got {wavelet!r}")
    return 1 if wavelet == "haar" else int(wavelet[2:])


def max_levels(image_shape, wavelet: str = "db4") -> int:
    """PyWavelets' ``dwt_max_level`` of the shorter side: the deepest level whose coarsest
    approximation is still at least one filter length minus one long (0 for tiny images)."""
    filter_length = 2 * _filter_order(wavelet)
    shortest = min(image_shape)
    if shortest < filter_length - 1:
        return 0
    return int(math.floor(math.log2(shortest / (filter_length - 1))))


class WaveletTransform2D:
    """Orthogonal ``levels``-level 2D DWT of (B,H,W) images (see the module docstring).

    Args:
        image_shape: (H, W) of the images.
        wavelet: ``"haar"`` or ``"db1"`` ... ``"db10"``.
        levels: number of levels; ``None`` takes :func:`max_levels` (as PyWavelets and SigPy do).
        mode: the boundary rule, ``"periodization"`` or ``"zero"``.
    """

    def __init__(self, image_shape, wavelet: str = "db4", levels: int | None = None, mode: str = "periodization"):
        if len(image_shape) != 2:
            raise ValueError(f"image_shape: expected (H, W), got {tuple(image_shape)}")
        self.image_shape = tuple(check_int(f"image_shape[{i}]", s, minimum=1) for i, s in enumerate(image_shape))
        self.wavelet = wavelet
        self.filter_length = 2 * _filter_order(wavelet)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.mode = mode
        if levels is None:
            levels = max_levels(self.image_shape, wavelet)
        self.levels = check_int("levels", levels, minimum=0)
        self._rec_lo = daubechies_lowpass(self.filter_length // 2)
        self._filter_banks = {}
        # level_shapes[j]: the approximation entering level j + 1 (level_shapes[0] is the image).
        self.level_shapes = [self.image_shape]
        for _ in range(self.levels):
            self.level_shapes.append(tuple(self._coefficient_length(n) for n in self.level_shapes[-1]))

    @property
    def coefficient_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of ``forward``'s list: (h_J, w_J), then (3, h_j, w_j) for j = J ... 1."""
        return [self.level_shapes[-1]] + [(3, *shape) for shape in reversed(self.level_shapes[1:])]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Coefficients ``[approx (B,h_J,w_J), details_J (B,3,h_J,w_J), ..., details_1]`` of ``x``."""
        self._check_dtype("x", x)
        check_shape("x", x, (None, *self.image_shape), "images (B,H,W)")
        approx, details = _as_real_planes(x), []
        bank = self._bank(approx)
        for _ in range(self.levels):
            bands = self._analyze(self._analyze(approx, -1, bank), -2, bank)  # (2_H, 2_W, ..., h, w)
            approx = bands[0, 0]
            details.append(torch.stack([bands[1, 0], bands[0, 1], bands[1, 1]], dim=-3))
        return [_from_real_planes(c, x.is_complex()) for c in [approx] + details[::-1]]

    def inverse(self, coeffs: list[torch.Tensor]) -> torch.Tensor:
        """The adjoint W^H: images (B,H,W) from ``forward``-shaped coefficients (its inverse on W's range)."""
        self._check_coefficients(coeffs)
        is_complex = coeffs[0].is_complex()
        approx = _as_real_planes(coeffs[0])
        bank = self._bank(approx)
        for level in range(self.levels, 0, -1):
            details = _as_real_planes(coeffs[1 + self.levels - level])
            bands = torch.stack([torch.stack([approx, details[..., 1, :, :]]),
                                 torch.stack([details[..., 0, :, :], details[..., 2, :, :]])])
            height, width = self.level_shapes[level - 1]
            approx = self._synthesize(self._synthesize(bands, -2, height, bank), -1, width, bank)
        return _from_real_planes(approx, is_complex)

    def __repr__(self) -> str:
        return (f"WaveletTransform2D(image_shape={self.image_shape}, wavelet={self.wavelet!r}, "
                f"levels={self.levels}, mode={self.mode!r})")

    def _coefficient_length(self, n: int) -> int:
        if self.mode == "zero":
            return (n + self.filter_length - 1) // 2
        return (n + 1) // 2

    def _bank(self, like: torch.Tensor) -> torch.Tensor:
        """conv1d weight (2,1,L): the reversed dec_lo and dec_hi, i.e. rec_lo and rec_hi, in ``like``'s dtype."""
        key = (like.dtype, like.device)
        if key not in self._filter_banks:
            rec_lo = torch.tensor(self._rec_lo, dtype=torch.float64)
            signs = torch.tensor([(-1.0) ** n for n in range(self.filter_length)], dtype=torch.float64)
            rec_hi = signs * rec_lo.flip(0)
            self._filter_banks[key] = torch.stack([rec_lo, rec_hi]).unsqueeze(1).to(like.dtype).to(like.device)
        return self._filter_banks[key]

    def _analyze(self, planes: torch.Tensor, dim: int, bank: torch.Tensor) -> torch.Tensor:
        """Low/high-pass and downsample along ``dim``; the two bands go to a new leading dim."""
        moved = planes.movedim(dim, -1)
        extended = self._extend(moved)
        filtered = F.conv1d(extended.reshape(-1, 1, extended.shape[-1]), bank, stride=2)
        bands = filtered.reshape(*moved.shape[:-1], 2, filtered.shape[-1]).movedim(-2, 0)
        return bands.movedim(-1, dim)

    def _synthesize(self, bands: torch.Tensor, dim: int, length: int, bank: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`_analyze`: upsample and filter both bands (leading dim) back to ``length``."""
        moved = bands.movedim(dim, -1).movedim(0, -2)
        extended_length = self._extended_length(length)
        num_coefficients = moved.shape[-1]
        extra = extended_length - (2 * (num_coefficients - 1) + self.filter_length)
        upsampled = F.conv_transpose1d(moved.reshape(-1, 2, num_coefficients), bank, stride=2, output_padding=extra)
        signal = self._extend_adjoint(upsampled.reshape(*moved.shape[:-2], extended_length), length)
        return signal.movedim(-1, dim)

    def _extended_length(self, n: int) -> int:
        if self.mode == "zero":
            return n + 2 * self.filter_length - 3
        return n + n % 2 + self.filter_length - 2

    def _extend(self, signal: torch.Tensor) -> torch.Tensor:
        """The boundary rule along the last dim, to the length that a stride-2 valid filtering needs."""
        if self.mode == "zero":
            # Full convolution sampled at odd indices, as PyWavelets: out[k] = sum_j dec_lo[j] x[2k+1-j].
            return F.pad(signal, (self.filter_length - 2, self.filter_length - 1))
        if signal.shape[-1] % 2:
            signal = F.pad(signal, (0, 1))
        n, left = signal.shape[-1], self.filter_length // 2 - 1  # left: PyWavelets' periodization phase
        start = (-left) % n
        copies = -(-(start + n + 2 * left) // n)
        return signal.repeat(*([1] * (signal.dim() - 1)), copies)[..., start:start + n + 2 * left]

    def _extend_adjoint(self, extended: torch.Tensor, n: int) -> torch.Tensor:
        """Adjoint of :meth:`_extend`: crop (zero mode), or fold the periodic copies back and crop the padding."""
        if self.mode == "zero":
            return extended[..., self.filter_length - 2:self.filter_length - 2 + n]
        padded_n, left = n + n % 2, self.filter_length // 2 - 1
        start = (-left) % padded_n
        copies = -(-(start + extended.shape[-1]) // padded_n)
        tiled = F.pad(extended, (start, copies * padded_n - start - extended.shape[-1]))
        return tiled.reshape(*extended.shape[:-1], copies, padded_n).sum(dim=-2)[..., :n]

    def _check_dtype(self, name: str, value) -> None:
        check_tensor(name, value)
        if value.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(f"{name}: expected float32/float64/complex64/complex128, got {value.dtype}")

    def _check_coefficients(self, coeffs) -> None:
        if not isinstance(coeffs, (list, tuple)) or len(coeffs) != self.levels + 1:
            raise ValueError(
                f"coeffs: expected a list of {self.levels + 1} tensors [approx, details_J, ..., details_1]")
        first = coeffs[0]
        self._check_dtype("coeffs[0]", first)
        check_shape("coeffs[0]", first, (None, *self.coefficient_shapes[0]), "approximation (B,h_J,w_J)")
        for i, (c, shape) in enumerate(zip(coeffs, self.coefficient_shapes)):
            self._check_dtype(f"coeffs[{i}]", c)
            check_shape(f"coeffs[{i}]", c, (first.shape[0], *shape), "forward's coefficient layout")
            if c.dtype != first.dtype or c.device != first.device:
                raise ValueError(f"coeffs[{i}]: expected coeffs[0]'s dtype {first.dtype} and device {first.device}, "
                                 f"got {c.dtype} on {c.device}")


def soft_threshold(values: torch.Tensor, threshold) -> torch.Tensor:
    """Complex (or real) soft thresholding: each entry's magnitude shrunk by ``threshold``, phase kept.

    The proximal map of ``threshold * ||.||_1``. ``threshold`` is a number >= 0, or a (B,) tensor
    with one threshold per batch entry (dim 0 of ``values``).
    """
    check_tensor("values", values)
    if isinstance(threshold, torch.Tensor):
        if threshold.dim() != 1 or threshold.shape[0] != values.shape[0] or threshold.is_complex():
            raise ValueError(f"threshold: expected a number or a real (B,) tensor with B={values.shape[0]}, "
                             f"got shape {tuple(threshold.shape)} and dtype {threshold.dtype}")
        threshold = threshold.reshape(-1, *([1] * (values.dim() - 1)))
    elif isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise ValueError(f"threshold: expected a number >= 0 or a (B,) tensor, got {threshold!r}")
    magnitude = values.abs()
    shrunk = (magnitude - threshold).clamp(min=0)
    return values * (shrunk / torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)))


def _as_real_planes(x: torch.Tensor) -> torch.Tensor:
    """Complex x as real (2, *x.shape): its real and imaginary planes (the filters are real); real x as is."""
    return torch.view_as_real(x).movedim(-1, 0) if x.is_complex() else x


def _from_real_planes(planes: torch.Tensor, is_complex: bool) -> torch.Tensor:
    return torch.view_as_complex(planes.movedim(0, -1).contiguous()) if is_complex else planes
