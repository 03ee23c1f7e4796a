"""The multicoil SENSE operator A = M·F·S (coil maps S, centred orthonormal 2D FFT F, mask M).

Maps and mask are validated once, at construction; every call then checks its input's shape, dtype
and device against the operator. The arithmetic runs in the public dispatched ops of
:mod:`mbdlfast.ops`, so a fused backend registered there speeds up every user of this class.

Mask layouts (``H, W`` are the maps' last two dims):

* 1D, along the last (phase-encode) dim: ``(W,)`` shared by the batch or ``(B,W)`` per sample;
* general 2D (e.g. Poisson disc): ``(H,W)`` shared or ``(B,H,W)`` per sample.

A 2-D mask is read as ``(H,W)`` when its first dim equals ``H`` and as ``(B,W)`` otherwise; pass
``mask_is_2d`` to decide explicitly (needed when 4-D maps have ``B == H`` and the mask rows differ).
A 2D mask whose rows are all identical is a 1D mask in disguise and takes the cheaper 1D path.
"""
from __future__ import annotations

import torch

from mbdlfast import ops
from mbdlfast._validation import (
    check_complex,
    check_finite,
    check_ndim,
    check_same_device,
    check_shape,
    check_tensor,
)
from mbdlfast.ops.dispatch import BACKENDS
from mbdlfast.ops.layouts import sampled_columns

_MASK_LAYOUT = "a 1D mask (W,) or (B,W), or a general 2D mask (H,W) or (B,H,W)"


class SenseOperator:
    """Multicoil SENSE forward model with deepinv-style ``A``, ``A_adjoint`` and ``A_adjoint_A``.

    Args:
        maps: coil sensitivities, complex (B,C,H,W), or (C,H,W) shared by any batch size; C=1 is
            single coil. Pass a tensor that requires grad to differentiate through the maps.
        mask: bool or real 0/1 sampling mask in one of the layouts of the module docstring.
        compact: ``A`` returns only the sampled columns, (B,C,H,n_s), and ``A_adjoint`` takes them
            (1D masks only; every batch entry must sample the same number of lines).
        backend: ``"auto"`` (the dispatcher decides; ``use_backend`` / ``MBDLFAST_BACKEND`` apply) or
            one of ``mbdlfast.ops.dispatch.BACKENDS`` to force it.
        mask_is_2d: ``None`` resolves a 2-D mask's layout as above; True reads it as (H,W), False
            as (B,W).
    """

    def __init__(self, maps, mask, *, compact: bool = False, backend: str = "auto", mask_is_2d: bool | None = None):
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {BACKENDS}, got {backend!r}")
        self.maps = _validated_maps(maps)
        self.mask, self.is_2d, mask_batch = _validated_mask(mask, self.maps, mask_is_2d)
        self.compact = bool(compact)
        if self.compact and self.is_2d:
            raise ValueError(
                "compact: compact k-space keeps sampled columns, so it needs a 1D mask (W,) or (B,W); "
                f"got a general 2D mask of shape {tuple(self.mask.shape)}"
            )
        self.columns = sampled_columns(self.mask) if self.compact else None
        self.batch_size = self.maps.shape[0] if self.maps.dim() == 4 else mask_batch
        self._backend = None if backend == "auto" else backend

    @property
    def dtype(self) -> torch.dtype:
        return self.maps.dtype

    @property
    def device(self) -> torch.device:
        return self.maps.device

    @property
    def num_coils(self) -> int:
        return self.maps.shape[-3]

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.maps.shape[-2:])

    @property
    def kspace_width(self) -> int:
        """W, or the number of sampled columns n_s in compact mode."""
        return self.columns.shape[-1] if self.compact else self.maps.shape[-1]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B,H,W) to k-space (B,C,H,W), or (B,C,H,n_s) when compact."""
        self._check_image("x", x)
        if self.compact:
            return ops.sense_forward_compact(x, self._maps_4d(), self.columns, backend=self._backend)
        return ops.sense_forward(x, self._maps_4d(), self.mask, self.is_2d, backend=self._backend)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space (B,C,H,W), or (B,C,H,n_s) when compact, to image (B,H,W)."""
        self._check_kspace("y", y)
        if self.compact:
            return ops.sense_adjoint_compact(y, self._maps_4d(), self.columns, backend=self._backend)
        return ops.sense_adjoint(y, self._maps_4d(), self.mask, self.is_2d, backend=self._backend)

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        """Normal operator A^H A on images (B,H,W); the same in compact and full mode."""
        self._check_image("x", x)
        return ops.sense_normal(x, self._maps_4d(), self.mask, self.is_2d, backend=self._backend)

    def dc_step(self, x: torch.Tensor, AHy: torch.Tensor, gamma) -> torch.Tensor:
        """Gradient data-consistency step x − γ·(A^H A x − A^H y), with A^H y computed once by the caller."""
        self._check_image("x", x)
        self._check_image("AHy", AHy, batch_size=x.shape[0])
        return ops.dc_gradient_step(x, self._maps_4d(), self.mask, AHy, gamma, self.is_2d, backend=self._backend)

    def __repr__(self) -> str:
        layout = "2D" if self.is_2d else ("1D compact" if self.compact else "1D")
        return (f"SenseOperator(maps={tuple(self.maps.shape)}, mask={layout} {tuple(self.mask.shape)}, "
                f"dtype={self.dtype}, device={self.device}, backend={self._backend or 'auto'})")

    def _maps_4d(self) -> torch.Tensor:
        # self.maps keeps the caller's layout; the ops take (B|1,C,H,W).
        return self.maps if self.maps.dim() == 4 else self.maps.unsqueeze(0)

    def _check_image(self, name: str, value, batch_size: int | None = None) -> None:
        expected = (self.batch_size or batch_size, *self.image_shape)
        self._check_input(name, value, expected, "image (B,H,W)")

    def _check_kspace(self, name: str, value) -> None:
        layout = "compact k-space (B,C,H,n_s)" if self.compact else "k-space (B,C,H,W)"
        expected = (self.batch_size, self.num_coils, self.image_shape[0], self.kspace_width)
        self._check_input(name, value, expected, layout)

    def _check_input(self, name: str, value, expected: tuple, layout: str) -> None:
        check_complex(name, value, self.dtype)
        check_same_device(**{name: value, "maps": self.maps})
        check_shape(name, value, expected, layout)


def _validated_maps(maps) -> torch.Tensor:
    check_complex("maps", maps)
    check_ndim("maps", maps, (3, 4), "coil maps (C,H,W) or (B,C,H,W)")
    check_finite("maps", maps.detach())
    return maps


def _validated_mask(mask, maps: torch.Tensor, mask_is_2d: bool | None) -> tuple[torch.Tensor, bool, int | None]:
    """Check ``mask`` against ``maps``; return it as the maps' real dtype, its layout and its batch size."""
    check_tensor("mask", mask)
    if mask.is_complex():
        raise TypeError(f"mask: expected bool or real 0/1 values, got {mask.dtype}")
    check_same_device(maps=maps, mask=mask)
    check_ndim("mask", mask, (1, 2, 3), _MASK_LAYOUT)
    height, width = maps.shape[-2:]
    if mask.shape[-1] != width:
        raise ValueError(
            f"mask: expected the last dim to be W={width} (the maps' width), got shape {tuple(mask.shape)}"
        )
    is_2d = _mask_layout_is_2d(mask, height, maps.shape[0] if maps.dim() == 4 else None, mask_is_2d)
    if is_2d and mask.shape[-2] != height:
        raise ValueError(
            f"mask: a general 2D mask must be (H,W)=({height},{width}) or (B,H,W), got {tuple(mask.shape)}"
        )
    batched = mask.dim() == (3 if is_2d else 2)
    mask_batch = mask.shape[0] if batched else None
    if maps.dim() == 4 and mask_batch is not None and mask_batch != maps.shape[0]:
        raise ValueError(f"mask: batch size {mask_batch} does not match the maps' batch size {maps.shape[0]}")

    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected only 0/1 values (bool or real)")
    sampled_per_entry = (mask != 0).reshape(mask_batch or 1, -1).any(dim=1)
    if not bool(sampled_per_entry.all()):
        empty = torch.nonzero(~sampled_per_entry).flatten().tolist()
        where = f"batch entries {empty} are" if batched else "it is"
        raise ValueError(f"mask: samples nothing ({where} all zeros)")

    if is_2d and bool((mask == mask[..., :1, :]).all()):
        mask, is_2d = mask[..., 0, :], False
    return mask.to(maps.real.dtype).contiguous(), is_2d, mask_batch


def _mask_layout_is_2d(mask: torch.Tensor, height: int, maps_batch: int | None, mask_is_2d: bool | None) -> bool:
    """Whether ``mask`` is a general 2D mask; resolves the (H,W)-versus-(B,W) reading of a 2-D mask."""
    if mask.dim() == 1:
        if mask_is_2d:
            raise ValueError(f"mask: mask_is_2d=True needs (H,W) or (B,H,W), got a (W,) mask {tuple(mask.shape)}")
        return False
    if mask.dim() == 3:
        if mask_is_2d is False:
            raise ValueError(f"mask: mask_is_2d=False needs (W,) or (B,W), got a 3-D mask {tuple(mask.shape)}")
        return True
    if mask_is_2d is not None:
        return bool(mask_is_2d)
    if mask.shape[0] != height:
        return False
    rows_identical = bool((mask == mask[:1]).all())
    if maps_batch == height and not rows_identical:
        raise ValueError(
            f"mask: shape {tuple(mask.shape)} reads as (H,W) or as (B,W) since B == H == {height}; "
            "pass mask_is_2d=True or False"
        )
    return True


def is_general_2d_mask(mask: torch.Tensor, batch_size: int) -> bool:
    """How a model that knows its batch size reads ``mask``: (B,W) per-sample lines when the first dim
    of a 2-D mask equals the batch, else a general (H,W) mask; (B,H,W) is always general 2D."""
    return mask.dim() == 3 or (mask.dim() == 2 and mask.shape[0] != batch_size)
