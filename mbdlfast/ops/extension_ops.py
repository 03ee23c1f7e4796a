"""Python side of the extension ops (``torch.ops.mbdlfast.*``): fake kernels, autograd and the
``cpp``/``cuda`` backend entries of the public ops.

The schemas and device kernels are in csrc/. Gradients use the adjoint ops (the normal operator is
its own adjoint; A and A^H are each other's), so they hold for the maps, A^H y and λ as well as for
the image and the k-space. Inputs the
kernels do not take (2D masks, a γ that needs a gradient, complex λ, complex128 or W > 1024 on
CUDA) go to the shift-free torch path.
"""
from __future__ import annotations

import torch

from mbdlfast._extension import part_status
from mbdlfast.ops import torch_fast
from mbdlfast.ops.dispatch import register
from mbdlfast.ops.reference import mask_as_kspace_weight
from mbdlfast.ops.torch_fast import (adjoint_coil_images, apply_circulant, circulant_weight, compact_adjoint_coil_images,
                                     real_dtype)


def _sum_to_maps(grad: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    return grad.sum(dim=0, keepdim=True) if maps.shape[0] == 1 and grad.shape[0] != 1 else grad


def _register() -> None:
    @torch.library.register_fake("mbdlfast::coil_expand")
    def _(x, maps):
        return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], x.shape[2]))

    @torch.library.register_fake("mbdlfast::coil_reduce")
    def _(z, maps):
        return z.new_empty((z.shape[0], z.shape[2], z.shape[3]))

    def expand_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def expand_backward(ctx, grad):
        x, maps = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.ops.mbdlfast.coil_reduce(grad, maps) if ctx.needs_input_grad[0] else None
        grad_maps = _sum_to_maps(grad * x.conj().unsqueeze(1), maps) if ctx.needs_input_grad[1] else None
        return grad_x, grad_maps

    def reduce_backward(ctx, grad):
        z, maps = ctx.saved_tensors
        grad = grad.contiguous()
        grad_z = torch.ops.mbdlfast.coil_expand(grad, maps) if ctx.needs_input_grad[0] else None
        grad_maps = _sum_to_maps(z * grad.conj().unsqueeze(1), maps) if ctx.needs_input_grad[1] else None
        return grad_z, grad_maps

    torch.library.register_autograd("mbdlfast::coil_expand", expand_backward, setup_context=expand_setup)
    torch.library.register_autograd("mbdlfast::coil_reduce", reduce_backward, setup_context=expand_setup)
    _register_sense()
    _register_forward_adjoint()


def _normal_maps_grad(x, maps, weight, grad):
    """Gradient of Σ_c conj(S_c)·T(S_c·x) w.r.t. the maps: conj(x)·T(S·g) + T(S·x)·conj(g)."""
    image_term = x.conj().unsqueeze(1) * apply_circulant(maps * grad.unsqueeze(1), weight)
    coil_term = apply_circulant(maps * x.unsqueeze(1), weight) * grad.conj().unsqueeze(1)
    return _sum_to_maps(image_term + coil_term, maps)


def _register_sense() -> None:
    """Fake kernels and autograd of the fused SENSE ops (the normal operator is self-adjoint in x)."""
    @torch.library.register_fake("mbdlfast::sense_normal_1d")
    def _(x, maps, weight):
        return torch.empty_like(x)

    @torch.library.register_fake("mbdlfast::dc_step_1d")
    def _(x, maps, weight, AHy, gamma):
        return torch.empty_like(x)

    @torch.library.register_fake("mbdlfast::soft_dc")
    def _(k, y, weight, lam):
        return torch.empty_like(k)

    def normal_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:3])
        ctx.gamma = inputs[4] if len(inputs) == 5 else None

    def normal_backward(ctx, grad):
        x, maps, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.ops.mbdlfast.sense_normal_1d(grad, maps, weight) if ctx.needs_input_grad[0] else None
        grad_maps = _normal_maps_grad(x, maps, weight, grad) if ctx.needs_input_grad[1] else None
        return grad_x, grad_maps, None

    def step_backward(ctx, grad):
        x, maps, weight = ctx.saved_tensors
        grad, gamma = grad.contiguous(), ctx.gamma
        grad_x = torch.ops.mbdlfast.dc_step_1d(grad, maps, weight, torch.zeros_like(grad), gamma) \
            if ctx.needs_input_grad[0] else None
        grad_maps = -gamma * _normal_maps_grad(x, maps, weight, grad) if ctx.needs_input_grad[1] else None
        grad_AHy = gamma * grad if ctx.needs_input_grad[3] else None
        return grad_x, grad_maps, None, grad_AHy, None

    def soft_dc_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def soft_dc_backward(ctx, grad):
        k, y, weight, lam = ctx.saved_tensors
        grad = grad.contiguous()
        grad_k = torch.ops.mbdlfast.soft_dc(grad, torch.zeros_like(grad), weight, lam) if ctx.needs_input_grad[0] else None
        grad_y = (lam * weight).unsqueeze(1) * grad if ctx.needs_input_grad[1] else None
        grad_lam = None
        if ctx.needs_input_grad[3]:
            grad_lam = -(grad * (weight.unsqueeze(1) * (k - y)).conj()).real.sum().reshape(lam.shape).to(lam.dtype)
        return grad_k, grad_y, None, grad_lam

    torch.library.register_autograd("mbdlfast::sense_normal_1d", normal_backward, setup_context=normal_setup)
    torch.library.register_autograd("mbdlfast::dc_step_1d", step_backward, setup_context=normal_setup)
    torch.library.register_autograd("mbdlfast::soft_dc", soft_dc_backward, setup_context=soft_dc_setup)


def _register_forward_adjoint() -> None:
    """Fake kernels and autograd of A and A^H (full 1D-mask and compact forms): each one's gradient
    w.r.t. its k-space or image input is the other one; w.r.t. the maps it needs the coil images."""
    @torch.library.register_fake("mbdlfast::sense_forward_1d")
    def _(x, maps, weight):
        return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], x.shape[2]))

    @torch.library.register_fake("mbdlfast::sense_adjoint_1d")
    def _(y, maps, weight):
        return y.new_empty((y.shape[0], y.shape[2], y.shape[3]))

    @torch.library.register_fake("mbdlfast::sense_forward_compact")
    def _(x, maps, columns):
        return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], columns.shape[-1]))

    @torch.library.register_fake("mbdlfast::sense_adjoint_compact")
    def _(yc, maps, columns):
        return yc.new_empty((yc.shape[0], maps.shape[2], maps.shape[3]))

    def save_inputs(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def forward_1d_backward(ctx, grad):
        x, maps, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.ops.mbdlfast.sense_adjoint_1d(grad, maps, weight) if ctx.needs_input_grad[0] else None
        grad_maps = None
        if ctx.needs_input_grad[1]:
            grad_maps = _sum_to_maps(x.conj().unsqueeze(1) * adjoint_coil_images(grad, weight), maps)
        return grad_x, grad_maps, None

    def adjoint_1d_backward(ctx, grad):
        y, maps, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_y = torch.ops.mbdlfast.sense_forward_1d(grad, maps, weight) if ctx.needs_input_grad[0] else None
        grad_maps = None
        if ctx.needs_input_grad[1]:
            grad_maps = _sum_to_maps(adjoint_coil_images(y, weight) * grad.conj().unsqueeze(1), maps)
        return grad_y, grad_maps, None

    def forward_compact_backward(ctx, grad):
        x, maps, columns = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.ops.mbdlfast.sense_adjoint_compact(grad, maps, columns) if ctx.needs_input_grad[0] else None
        grad_maps = None
        if ctx.needs_input_grad[1]:
            images = compact_adjoint_coil_images(grad, _squeezed_columns(columns), maps.shape[-1])
            grad_maps = _sum_to_maps(x.conj().unsqueeze(1) * images, maps)
        return grad_x, grad_maps, None

    def adjoint_compact_backward(ctx, grad):
        yc, maps, columns = ctx.saved_tensors
        grad = grad.contiguous()
        grad_yc = torch.ops.mbdlfast.sense_forward_compact(grad, maps, columns) if ctx.needs_input_grad[0] else None
        grad_maps = None
        if ctx.needs_input_grad[1]:
            images = compact_adjoint_coil_images(yc, _squeezed_columns(columns), maps.shape[-1])
            grad_maps = _sum_to_maps(images * grad.conj().unsqueeze(1), maps)
        return grad_yc, grad_maps, None

    for name, backward in (("sense_forward_1d", forward_1d_backward), ("sense_adjoint_1d", adjoint_1d_backward),
                           ("sense_forward_compact", forward_compact_backward),
                           ("sense_adjoint_compact", adjoint_compact_backward)):
        torch.library.register_autograd(f"mbdlfast::{name}", backward, setup_context=save_inputs)


def _squeezed_columns(columns: torch.Tensor) -> torch.Tensor:
    """(1, n_s) shared columns as (n_s,), the layout of the torch helpers; (B, n_s) unchanged."""
    return columns[0] if columns.shape[0] == 1 else columns


def _as_batched_maps(maps: torch.Tensor) -> torch.Tensor:
    return (maps if maps.dim() == 4 else maps.unsqueeze(0)).contiguous()


def _real_scalar(value) -> float | None:
    """A plain float for a real Python/0-dim scalar without grad, else None (the op takes a float)."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex() and not value.requires_grad:
        return float(value)
    return None


# The fused CUDA normal kernel keeps (C + 4)·W complex64 values and W ints per image row on chip.
CUDA_ROW_SHARED_BYTES = 227 * 1024


def _extension_handles(x: torch.Tensor, mask: torch.Tensor | None = None, is_2d: bool = False, coils: int = 0) -> bool:
    """Whether the extension kernels take these inputs (1D masks; on CUDA complex64 and a row that
    fits in shared memory, W <= 1024)."""
    if mask is not None and (is_2d or mask.dim() not in (1, 2)):
        return False
    if not x.is_cuda:
        return True
    width = x.shape[-1]
    row_bytes = (coils + 4) * width * 8 + 4 * width
    return x.dtype == torch.complex64 and (mask is None or (width <= 1024 and row_bytes <= CUDA_ROW_SHARED_BYTES))


def sense_normal_extension(x, maps, mask, is_2d=False):
    """Fused A^H A for 1D masks; other inputs take the torch path."""
    if not _extension_handles(x, mask, is_2d, maps.shape[-3]):
        return torch_fast.sense_normal(x, maps, mask, is_2d)
    weight = circulant_weight(mask, x.dtype).contiguous()
    return torch.ops.mbdlfast.sense_normal_1d(x.contiguous(), _as_batched_maps(maps), weight)


def dc_gradient_step_extension(x, maps, mask, AHy, gamma, is_2d=False):
    """Fused x − γ·(A^H A x − A^H y) for 1D masks and a real scalar γ without grad; else the torch path."""
    gamma_value = _real_scalar(gamma)
    if gamma_value is None or not _extension_handles(x, mask, is_2d, maps.shape[-3]):
        return torch_fast.dc_gradient_step(x, maps, mask, AHy, gamma, is_2d)
    weight = circulant_weight(mask, x.dtype).contiguous()
    return torch.ops.mbdlfast.dc_step_1d(x.contiguous(), _as_batched_maps(maps), weight, AHy.contiguous(), gamma_value)


def _mask_weight(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 1D mask as the real (B|1, W) weight of the forward/adjoint kernels (centred order)."""
    return mask_as_kspace_weight(mask, False)[:, 0, 0, :].to(real_dtype(dtype)).contiguous()


def sense_forward_extension(x, maps, mask, is_2d=False):
    """A x for 1D masks, computing only the sampled columns; other inputs take the torch path."""
    if not (torch_fast.is_one_dimensional(mask, is_2d) and _extension_handles(x)):
        return torch_fast.sense_forward(x, maps, mask, is_2d)
    return torch.ops.mbdlfast.sense_forward_1d(x.contiguous(), _as_batched_maps(maps), _mask_weight(mask, x.dtype))


def sense_adjoint_extension(y, maps, mask, is_2d=False):
    """A^H y for 1D masks, reading only the sampled columns; other inputs take the torch path."""
    if not (torch_fast.is_one_dimensional(mask, is_2d) and _extension_handles(y)):
        return torch_fast.sense_adjoint(y, maps, mask, is_2d)
    return torch.ops.mbdlfast.sense_adjoint_1d(y.contiguous(), _as_batched_maps(maps), _mask_weight(mask, y.dtype))


def _batched_columns(columns: torch.Tensor) -> torch.Tensor:
    return (columns if columns.dim() == 2 else columns.unsqueeze(0)).to(torch.long).contiguous()


def sense_forward_compact_extension(x, maps, columns):
    """A x at the sampled columns, (B,C,H,n_s)."""
    if not _extension_handles(x):
        return torch_fast.sense_forward_compact(x, maps, columns)
    return torch.ops.mbdlfast.sense_forward_compact(x.contiguous(), _as_batched_maps(maps), _batched_columns(columns))


def sense_adjoint_compact_extension(yc, maps, columns):
    """A^H of compact (B,C,H,n_s) k-space."""
    if not _extension_handles(yc):
        return torch_fast.sense_adjoint_compact(yc, maps, columns)
    return torch.ops.mbdlfast.sense_adjoint_compact(yc.contiguous(), _as_batched_maps(maps), _batched_columns(columns))


def soft_kspace_dc_extension(k, y, mask, lam, is_2d=False):
    """One-pass k − λ·M·(k − y); λ may be a learnable real scalar tensor (complex λ: torch path)."""
    lam_tensor = torch.as_tensor(lam)
    if lam_tensor.is_complex() or lam_tensor.numel() != 1 or not _extension_handles(k):
        return torch_fast.soft_kspace_dc(k, y, mask, lam, is_2d)
    lam_tensor = lam_tensor.to(device=k.device, dtype=k.real.dtype)
    weight = mask_as_kspace_weight(mask, is_2d)[:, 0].to(k.real.dtype).contiguous()
    return torch.ops.mbdlfast.soft_dc(k.contiguous(), y.contiguous(), weight, lam_tensor.reshape(()))


def coil_expand_extension(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    if not _extension_handles(x):
        return torch_fast.coil_expand(x, maps)
    return torch.ops.mbdlfast.coil_expand(x.contiguous(), _as_batched_maps(maps))


def coil_reduce_extension(z: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    if not _extension_handles(z):
        return torch_fast.coil_reduce(z, maps)
    return torch.ops.mbdlfast.coil_reduce(z.contiguous(), _as_batched_maps(maps))


# The same wrappers serve both devices: torch.ops routes to the CPU or CUDA kernel.
for _backend in ("cpp", "cuda"):
    register("coil_expand", _backend)(coil_expand_extension)
    register("coil_reduce", _backend)(coil_reduce_extension)
    register("sense_normal", _backend)(sense_normal_extension)
    register("dc_gradient_step", _backend)(dc_gradient_step_extension)
    register("soft_kspace_dc", _backend)(soft_kspace_dc_extension)
    register("sense_forward", _backend)(sense_forward_extension)
    register("sense_adjoint", _backend)(sense_adjoint_extension)
    register("sense_forward_compact", _backend)(sense_forward_compact_extension)
    register("sense_adjoint_compact", _backend)(sense_adjoint_compact_extension)


if part_status("_C")[0]:  # the schemas: the CPU and the CUDA kernels register under them
    _register()
