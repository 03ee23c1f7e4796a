"""The multicoil SENSE operator A = M·F·S (coil maps S, centred orthonormal 2D FFT F, mask M).

A :class:`~mbdlfast.physics.linear.LinearPhysics` module, built once per reconstruction: maps and
mask are validated at construction (the edge, where reading values is allowed) and kept as buffers;
calls do no checks of their own beyond the dispatched ops' metadata checks and never wait on the
device, and :meth:`SenseOperator.update` swaps in new maps or mask of the same layout without
re-validating them. The arithmetic runs in the public dispatched ops of :mod:`mbdlfast.ops`, so a
fused backend registered there speeds up every user of this class.

Mask layouts (``H, W`` are the maps' last two dims):

* 1D, along the last (phase-encode) dim: ``(W,)`` shared by the batch or ``(B,W)`` per sample, and
  fastMRI's ``(B|1,1,1,W,1)``;
* general 2D (e.g. Poisson disc): ``(H,W)`` shared or ``(B,H,W)`` per sample.

A 2-D mask is read as ``(H,W)`` when its first dim equals ``H`` and as ``(B,W)`` otherwise; pass
``mask_is_2d`` to decide explicitly (needed when 4-D maps have ``B == H`` and the mask rows differ).
A 2D mask whose rows are all identical is a 1D mask in disguise and takes the cheaper 1D path.
"""
from __future__ import annotations

import torch

from mbdlfast import ops
from mbdlfast._validation import check_complex, check_finite, check_ndim, check_same_device, check_shape, check_tensor
from mbdlfast.ops.dispatch import BACKENDS
from mbdlfast.ops.fft import fft2c, ifft2c
from mbdlfast.ops.layouts import sampled_columns
from mbdlfast.physics.linear import LinearPhysics

_MASK_LAYOUT = "a 1D mask (W,) or (B,W) (or fastMRI's (B,1,1,W,1)), or a general 2D mask (H,W) or (B,H,W)"


class SenseOperator(LinearPhysics):
    """Multicoil SENSE forward model: ``A``, ``A_adjoint``, ``A_adjoint_A``, ``A_dagger`` (CG-SENSE),
    the gradient DC step, and the unmasked coil transforms and soft DC that VarNet's cascades use.

    Args:
        maps: coil sensitivities, complex (B,C,H,W), or (C,H,W) shared by any batch size; C=1 is
            single coil. Pass a tensor that requires grad to differentiate through the maps. ``None``
            describes only the sampling, for a model that estimates the maps (E2E-VarNet, which
            calls :meth:`with_maps`); ``kspace_shape`` (C,H,W) then gives the sizes.
        mask: bool or real 0/1 sampling mask in one of the layouts of the module docstring.
        compact: ``A`` returns only the sampled columns, (B,C,H,n_s), and ``A_adjoint`` takes them
            (1D masks only; every batch entry must sample the same number of lines).
        backend: ``"auto"`` (the dispatcher decides; ``use_backend`` / ``MBDLFAST_BACKEND`` apply) or
            one of ``mbdlfast.ops.dispatch.BACKENDS`` to force it.
        mask_is_2d: ``None`` resolves a 2-D mask's layout as above; True reads it as (H,W), False
            as (B,W).
        kspace_shape: (C,H,W), only without maps.
    """

    def __init__(self, maps, mask, *, compact: bool = False, backend: str = "auto", mask_is_2d: bool | None = None,
                 kspace_shape: tuple[int, int, int] | None = None):
        super().__init__()
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {BACKENDS}, got {backend!r}")
        if maps is None:
            if kspace_shape is None or len(kspace_shape) != 3:
                raise ValueError(f"kspace_shape: an operator without maps needs (C,H,W), got {kspace_shape!r}")
            self.shape = tuple(int(n) for n in kspace_shape)
            maps_batch = None
        else:
            if kspace_shape is not None:
                raise ValueError("kspace_shape: only for an operator without maps (the maps give the sizes)")
            maps = _validated_maps(maps)
            self.shape = tuple(maps.shape[-3:])
            maps_batch = maps.shape[0] if maps.dim() == 4 else None
            check_tensor("mask", mask)
            check_same_device(maps=maps, mask=mask)
        mask, self.is_2d, mask_batch = _validated_mask(mask, self.shape, maps_batch, mask_is_2d,
                                                      maps.real.dtype if maps is not None else torch.float32)
        self.compact = bool(compact)
        if self.compact and self.is_2d:
            raise ValueError(
                "compact: compact k-space keeps sampled columns, so it needs a 1D mask (W,) or (B,W); "
                f"got a general 2D mask of shape {tuple(mask.shape)}"
            )
        self.register_buffer("maps", maps, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("columns", sampled_columns(mask) if self.compact else None, persistent=False)
        self.batch_size = maps_batch or mask_batch
        self.backend = None if backend == "auto" else backend

    # ------------------------------------------------------------------ what the operator is

    @property
    def dtype(self) -> torch.dtype:
        return self.maps.dtype if self.maps is not None else torch.complex64

    @property
    def device(self) -> torch.device:
        return self.mask.device

    @property
    def num_coils(self) -> int:
        return self.shape[0]

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.shape[1:]

    @property
    def kspace_width(self) -> int:
        """W, or the number of sampled columns n_s in compact mode."""
        return self.columns.shape[-1] if self.compact else self.shape[-1]

    # ------------------------------------------------------------------ the operator

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B,H,W) to k-space (B,C,H,W), or (B,C,H,n_s) when compact."""
        if self.compact:
            return ops.sense_forward_compact(x, self._coil_maps(), self.columns, backend=self.backend)
        return ops.sense_forward(x, self._coil_maps(), self.mask, self.is_2d, backend=self.backend)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space (B,C,H,W), or (B,C,H,n_s) when compact, to image (B,H,W)."""
        if self.compact:
            return ops.sense_adjoint_compact(y, self._coil_maps(), self.columns, backend=self.backend)
        return ops.sense_adjoint(y, self._coil_maps(), self.mask, self.is_2d, backend=self.backend)

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        """Normal operator A^H A on images (B,H,W); the same in compact and full mode."""
        return ops.sense_normal(x, self._coil_maps(), self.mask, self.is_2d, backend=self.backend)

    def dc_step(self, x: torch.Tensor, AHy: torch.Tensor, gamma) -> torch.Tensor:
        """Gradient data-consistency step x − γ·(A^H A x − A^H y), with A^H y computed once by the caller."""
        return ops.dc_gradient_step(x, self._coil_maps(), self.mask, AHy, gamma, self.is_2d, backend=self.backend)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """F·S·x: image (B,H,W) to every coil's full (unmasked) k-space (B,C,H,W)."""
        return fft2c(ops.coil_expand(x, self._coil_maps(), backend=self.backend))

    def reduce(self, k: torch.Tensor) -> torch.Tensor:
        """Sᴴ·Fᴴ·k: full k-space (B,C,H,W) to the coil-combined image (B,H,W), the adjoint of :meth:`expand`."""
        return ops.coil_reduce(ifft2c(k), self._coil_maps(), backend=self.backend)

    def soft_dc(self, k: torch.Tensor, y: torch.Tensor, lam) -> torch.Tensor:
        """k − λ·M·(k − y) on full k-space (B,C,H,W): VarNet's soft data consistency."""
        return ops.soft_kspace_dc(k, y, self.mask, lam, self.is_2d, backend=self.backend)

    # ------------------------------------------------------------------ new data, same layout

    def update(self, *, maps: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> "SenseOperator":
        """Swap in ``maps`` and/or ``mask`` of the current shape, dtype and device, in place and without
        re-validating their values (the hot path: e.g. the next slices of a volume, a CUDA graph's
        static inputs). Give values the constructor would accept, in the layout it stored (a 2D mask
        of identical rows is stored as 1D); in compact mode a new mask also recomputes the sampled
        columns (a read of the mask). Returns the operator."""
        if maps is not None:
            check_tensor("maps", maps)
            self.maps = _same_layout("maps", maps, self.maps)
        if mask is not None:
            check_tensor("mask", mask)
            mask = _squeeze_fastmri_layout(mask)
            self.mask = _same_layout("mask", mask.to(self.mask.dtype), self.mask)
            if self.compact:
                self.columns = sampled_columns(self.mask)
        return self

    def with_maps(self, maps: torch.Tensor) -> "SenseOperator":
        """A new operator with this one's mask, layout and backend and the given (B,C,H,W) or (C,H,W)
        maps (e.g. estimated by a network), checked on metadata only."""
        check_complex("maps", maps)
        check_same_device(maps=maps, mask=self.mask)
        maps4 = maps if maps.dim() == 4 else maps.unsqueeze(0)
        check_shape("maps", maps4, (None, *self.shape), f"coil maps (B,{','.join(map(str, self.shape))})")
        if self.batch_size is not None and maps4.shape[0] not in (1, self.batch_size):
            raise ValueError(f"maps: batch size {maps4.shape[0]} does not match the operator's {self.batch_size}")
        operator = SenseOperator.__new__(SenseOperator)
        LinearPhysics.__init__(operator)
        operator.shape, operator.is_2d, operator.compact, operator.backend = self.shape, self.is_2d, self.compact, self.backend
        operator.register_buffer("maps", maps, persistent=False)
        operator.register_buffer("mask", self.mask, persistent=False)
        operator.register_buffer("columns", self.columns, persistent=False)
        operator.batch_size = self.batch_size or (maps4.shape[0] if maps4.shape[0] > 1 else None)
        return operator

    def extra_repr(self) -> str:
        layout = "2D" if self.is_2d else ("1D compact" if self.compact else "1D")
        maps = "none (estimated by the model)" if self.maps is None else tuple(self.maps.shape)
        return (f"maps={maps}, mask={layout} {tuple(self.mask.shape)}, dtype={self.dtype}, device={self.device}, "
                f"backend={self.backend or 'auto'}")

    def _coil_maps(self) -> torch.Tensor:
        if self.maps is None:
            raise ValueError("maps: this SenseOperator describes only the sampling (built without coil maps, for a "
                             "model that estimates them); build it with maps or use with_maps(maps)")
        return self.maps


def _same_layout(name: str, value: torch.Tensor, current: torch.Tensor | None) -> torch.Tensor:
    """``value`` if it has ``current``'s shape, dtype and device (metadata only: no device wait)."""
    if current is None:
        raise ValueError(f"{name}: this operator has none to update (it describes only the sampling); use with_maps")
    if value.shape != current.shape or value.dtype != current.dtype or value.device != current.device:
        raise ValueError(f"{name}: update() takes the current layout {tuple(current.shape)} {current.dtype} on "
                         f"{current.device}, got {tuple(value.shape)} {value.dtype} on {value.device}; "
                         "build a new SenseOperator for another layout")
    return value


def _squeeze_fastmri_layout(mask: torch.Tensor) -> torch.Tensor:
    """fastMRI's (B|1,1,1,W,1) line mask as (B,W), or (W,) for a batch of one shared mask."""
    if mask.dim() == 5 and mask.shape[1] == mask.shape[2] == mask.shape[4] == 1:
        mask = mask[:, 0, 0, :, 0]
        return mask[0] if mask.shape[0] == 1 else mask
    return mask


def _validated_maps(maps) -> torch.Tensor:
    check_complex("maps", maps)
    check_ndim("maps", maps, (3, 4), "coil maps (C,H,W) or (B,C,H,W)")
    check_finite("maps", maps.detach())
    return maps


def _validated_mask(mask, shape: tuple[int, int, int], maps_batch: int | None, mask_is_2d: bool | None,
                    dtype: torch.dtype) -> tuple[torch.Tensor, bool, int | None]:
    """Check ``mask`` against the operator's (C,H,W) ``shape``; return it as ``dtype``, its layout and batch size."""
    check_tensor("mask", mask)
    if mask.is_complex():
        raise TypeError(f"mask: expected bool or real 0/1 values, got {mask.dtype}")
    mask = _squeeze_fastmri_layout(mask)
    check_ndim("mask", mask, (1, 2, 3), _MASK_LAYOUT)
    _, height, width = shape
    if mask.shape[-1] != width:
        raise ValueError(f"mask: expected the last dim to be W={width} (the maps' width), got shape {tuple(mask.shape)}")
    is_2d = _mask_layout_is_2d(mask, height, maps_batch, mask_is_2d)
    if is_2d and mask.shape[-2] != height:
        raise ValueError(
            f"mask: a general 2D mask must be (H,W)=({height},{width}) or (B,H,W), got {tuple(mask.shape)}"
        )
    batched = mask.dim() == (3 if is_2d else 2)
    mask_batch = mask.shape[0] if batched else None
    if maps_batch is not None and mask_batch is not None and mask_batch != maps_batch:
        raise ValueError(f"mask: batch size {mask_batch} does not match the maps' batch size {maps_batch}")

    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected only 0/1 values (bool or real)")
    sampled_per_entry = (mask != 0).reshape(mask_batch or 1, -1).any(dim=1)
    if not bool(sampled_per_entry.all()):
        empty = torch.nonzero(~sampled_per_entry).flatten().tolist()
        where = f"batch entries {empty} are" if batched else "it is"
        raise ValueError(f"mask: samples nothing ({where} all zeros)")

    if is_2d and bool((mask == mask[..., :1, :]).all()):
        mask, is_2d = mask[..., 0, :], False
    return mask.to(dtype).contiguous(), is_2d, mask_batch


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
