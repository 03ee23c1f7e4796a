"""The public ops (SENSE, and super-resolution's data step), each defined once: its ``torch.library``
schema (``mbdlfast::<op>``), fake kernel, one autograd formula and the Python function users call.

An op's implementation asks the dispatcher (:mod:`mbdlfast.ops.dispatch`) for the forward kernel
of the backend that takes these inputs and runs it; backends register forward kernels only. The
backward of every op is written here once, through the public ops themselves (so it runs on the
fastest backend too, and double backward works): each op is linear in its data argument, so the
data gradient is the adjoint op (A and A^H are each other's, the normal operator is its own), and
the maps gradient is one product with coil images (:func:`_maps_gradient`).

Arguments: image x (B,H,W); k-space (B,C,H,W) or compact (B,C,H,n_s); maps (C,H,W) or
(B|1,C,H,W); mask (W,)/(B,W) lines or, with ``is_2d``, (H,W)/(B,H,W); γ and λ a real number or a
one-element tensor (λ may be complex). The functions check shapes, dtypes and devices (metadata
only: no check reads data, so none waits on a GPU); the mask's values are the caller's
responsibility (:class:`mbdlfast.physics.SenseOperator` checks them once, at its boundary).
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

from mbdlfast import _validation as check
from mbdlfast.ops import dispatch
from mbdlfast.ops.fft import real_dtype
from mbdlfast.ops.layouts import mask_as_kspace_weight, sum_to_maps
from mbdlfast.ops.torch_fast import adjoint_coil_images, compact_adjoint_coil_images


def _case(op: str, data: Tensor, sizes: Tensor, is_2d: bool | None = None, scalar: Tensor | None = None) -> dispatch.Case:
    """The dispatcher's view of an op's arguments: ``data``'s device and dtype, the mask kind, the
    kind of scalar, and (B,C,H,W) with C,H,W from ``sizes`` (the maps, or the k-space itself)."""
    coils, height, width = sizes.shape[-3:]
    mask = None if is_2d is None else ("2d" if is_2d else "1d")
    kind = None if scalar is None else ("complex" if scalar.is_complex() else "real")
    return dispatch.Case(op, data.device, data.dtype, mask, kind, data.shape[0], coils, height, width)


# Each op's Case from its schema arguments (without ``backend``): used to run it and by explain().
_CASES = {
    "coil_expand": lambda x, maps: _case("coil_expand", x, maps),
    "coil_reduce": lambda z, maps: _case("coil_reduce", z, maps),
    "sense_forward": lambda x, maps, mask, is_2d: _case("sense_forward", x, maps, is_2d),
    "sense_adjoint": lambda y, maps, mask, is_2d: _case("sense_adjoint", y, maps, is_2d),
    "sense_normal": lambda x, maps, mask, is_2d: _case("sense_normal", x, maps, is_2d),
    "dc_gradient_step": lambda x, maps, mask, AHy, gamma, is_2d: _case("dc_gradient_step", x, maps, is_2d, gamma),
    "soft_kspace_dc": lambda k, y, mask, lam, is_2d: _case("soft_kspace_dc", k, k, is_2d, lam),
    "sense_forward_compact": lambda x, maps, columns: _case("sense_forward_compact", x, maps, False),
    "sense_adjoint_compact": lambda yc, maps, columns: _case("sense_adjoint_compact", yc, maps, False),
    "sr_data_solve": lambda fz, fay, otf, alpha, scale: _case("sr_data_solve", fz, fz),
}


_LAZY_VIEW_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.Conjugate) | torch._C.DispatchKeySet(
    torch._C.DispatchKey.Negative)


def _run(op: str, backend: str, *args) -> Tensor:
    """Run the forward kernel the dispatcher picks for these arguments.

    Under torch.compile (AOTAutograd's runtime, eager or inductor) a custom op's body runs with the
    Conjugate and Negative dispatch keys excluded, so a lazy ``.conj()`` view inside a torch kernel
    would silently act as the unconjugated tensor (seen with torch 2.13; the conformance suite's
    compile and opcheck tests catch it). The kernels run with those keys allowed again. Outputs are
    contiguous, as the fake kernels declare.
    """
    fn = dispatch.kernel(_CASES[op](*args), backend)[1]
    excluded = torch._C._dispatch_tls_local_exclude_set()
    if not excluded.has(torch._C.DispatchKey.Conjugate):
        return fn(*args).contiguous()
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), excluded - _LAZY_VIEW_KEYS):
        return fn(*args).contiguous()


def _maps_gradient(coil_images: Tensor, image: Tensor, maps: Tensor) -> Tensor:
    """∂/∂S of a product S·image seen through ``coil_images`` (B,C,H,W): coil_images·conj(image),
    summed over the batch for shared maps."""
    return sum_to_maps(coil_images * image.conj().unsqueeze(1), maps)


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*(value for value in inputs if isinstance(value, Tensor)))
    ctx.flags = tuple(value for value in inputs if not isinstance(value, Tensor))


# ------------------------------------------------------------------------------------ coil products


@torch.library.custom_op("mbdlfast::coil_expand", mutates_args=())
def _coil_expand(x: Tensor, maps: Tensor, backend: str) -> Tensor:
    return _run("coil_expand", backend, x, maps)


@_coil_expand.register_fake
def _(x, maps, backend):
    return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], x.shape[2]))


def _coil_expand_backward(ctx, grad):
    x, maps = ctx.saved_tensors
    (backend,) = ctx.flags
    grad_x = _coil_reduce(grad, maps, backend) if ctx.needs_input_grad[0] else None
    grad_maps = _maps_gradient(grad, x, maps) if ctx.needs_input_grad[1] else None
    return grad_x, grad_maps, None


@torch.library.custom_op("mbdlfast::coil_reduce", mutates_args=())
def _coil_reduce(z: Tensor, maps: Tensor, backend: str) -> Tensor:
    return _run("coil_reduce", backend, z, maps)


@_coil_reduce.register_fake
def _(z, maps, backend):
    return z.new_empty((z.shape[0], z.shape[2], z.shape[3]))


def _coil_reduce_backward(ctx, grad):
    z, maps = ctx.saved_tensors
    (backend,) = ctx.flags
    grad_z = _coil_expand(grad, maps, backend) if ctx.needs_input_grad[0] else None
    grad_maps = _maps_gradient(z, grad, maps) if ctx.needs_input_grad[1] else None
    return grad_z, grad_maps, None


_coil_expand.register_autograd(_coil_expand_backward, setup_context=_save_inputs)
_coil_reduce.register_autograd(_coil_reduce_backward, setup_context=_save_inputs)


# ------------------------------------------------------------------------------- A, A^H and A^H A


@torch.library.custom_op("mbdlfast::sense_forward", mutates_args=())
def _sense_forward(x: Tensor, maps: Tensor, mask: Tensor, is_2d: bool, backend: str) -> Tensor:
    return _run("sense_forward", backend, x, maps, mask, is_2d)


@_sense_forward.register_fake
def _(x, maps, mask, is_2d, backend):
    return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], x.shape[2]))


def _sense_forward_backward(ctx, grad):
    x, maps, mask = ctx.saved_tensors
    is_2d, backend = ctx.flags
    grad_x = _sense_adjoint(grad, maps, mask, is_2d, backend) if ctx.needs_input_grad[0] else None
    grad_maps = _maps_gradient(adjoint_coil_images(grad, mask, is_2d), x, maps) if ctx.needs_input_grad[1] else None
    return grad_x, grad_maps, None, None, None


@torch.library.custom_op("mbdlfast::sense_adjoint", mutates_args=())
def _sense_adjoint(y: Tensor, maps: Tensor, mask: Tensor, is_2d: bool, backend: str) -> Tensor:
    return _run("sense_adjoint", backend, y, maps, mask, is_2d)


@_sense_adjoint.register_fake
def _(y, maps, mask, is_2d, backend):
    return y.new_empty((y.shape[0], y.shape[2], y.shape[3]))


def _sense_adjoint_backward(ctx, grad):
    y, maps, mask = ctx.saved_tensors
    is_2d, backend = ctx.flags
    grad_y = _sense_forward(grad, maps, mask, is_2d, backend) if ctx.needs_input_grad[0] else None
    grad_maps = _maps_gradient(adjoint_coil_images(y, mask, is_2d), grad, maps) if ctx.needs_input_grad[1] else None
    return grad_y, grad_maps, None, None, None


def _normal_maps_gradient(x: Tensor, grad: Tensor, maps: Tensor, mask: Tensor, is_2d: bool, backend: str) -> Tensor:
    """∂/∂S of <grad, Σ_c conj(S_c)·T(S_c·x)>, T = F^H M F: the two products of S in A^H A."""
    def coil_images(image):
        return adjoint_coil_images(_sense_forward(image, maps, mask, is_2d, backend), mask, is_2d)

    return _maps_gradient(coil_images(grad), x, maps) + _maps_gradient(coil_images(x), grad, maps)


@torch.library.custom_op("mbdlfast::sense_normal", mutates_args=())
def _sense_normal(x: Tensor, maps: Tensor, mask: Tensor, is_2d: bool, backend: str) -> Tensor:
    return _run("sense_normal", backend, x, maps, mask, is_2d)


@_sense_normal.register_fake
def _(x, maps, mask, is_2d, backend):
    return torch.empty_like(x)


def _sense_normal_backward(ctx, grad):
    x, maps, mask = ctx.saved_tensors
    is_2d, backend = ctx.flags
    grad_x = _sense_normal(grad, maps, mask, is_2d, backend) if ctx.needs_input_grad[0] else None
    grad_maps = _normal_maps_gradient(x, grad, maps, mask, is_2d, backend) if ctx.needs_input_grad[1] else None
    return grad_x, grad_maps, None, None, None


_sense_forward.register_autograd(_sense_forward_backward, setup_context=_save_inputs)
_sense_adjoint.register_autograd(_sense_adjoint_backward, setup_context=_save_inputs)
_sense_normal.register_autograd(_sense_normal_backward, setup_context=_save_inputs)


# ---------------------------------------------------------------------------- data-consistency steps


@torch.library.custom_op("mbdlfast::dc_gradient_step", mutates_args=())
def _dc_gradient_step(x: Tensor, maps: Tensor, mask: Tensor, AHy: Tensor, gamma: Tensor, is_2d: bool,
                      backend: str) -> Tensor:
    return _run("dc_gradient_step", backend, x, maps, mask, AHy, gamma, is_2d)


@_dc_gradient_step.register_fake
def _(x, maps, mask, AHy, gamma, is_2d, backend):
    return torch.empty_like(x)


def _dc_gradient_step_backward(ctx, grad):
    x, maps, mask, AHy, gamma = ctx.saved_tensors
    is_2d, backend = ctx.flags
    # out = x − γ·(N x − AHy) with N = A^H A self-adjoint: ∂x = g − conj(γ)·N g.
    grad_x = _dc_gradient_step(grad, maps, mask, torch.zeros_like(grad), gamma.conj(), is_2d, backend) \
        if ctx.needs_input_grad[0] else None
    grad_maps = None
    if ctx.needs_input_grad[1]:
        grad_maps = _normal_maps_gradient(x, -gamma.conj() * grad, maps, mask, is_2d, backend)
    grad_AHy = gamma.conj() * grad if ctx.needs_input_grad[3] else None
    grad_gamma = None
    if ctx.needs_input_grad[4]:
        residual = _sense_normal(x, maps, mask, is_2d, backend) - AHy
        grad_gamma = _scalar_gradient(-(residual.conj() * grad).sum(), gamma)
    return grad_x, grad_maps, None, grad_AHy, grad_gamma, None, None


@torch.library.custom_op("mbdlfast::soft_kspace_dc", mutates_args=())
def _soft_kspace_dc(k: Tensor, y: Tensor, mask: Tensor, lam: Tensor, is_2d: bool, backend: str) -> Tensor:
    return _run("soft_kspace_dc", backend, k, y, mask, lam, is_2d)


@_soft_kspace_dc.register_fake
def _(k, y, mask, lam, is_2d, backend):
    return torch.empty_like(k)


def _soft_kspace_dc_backward(ctx, grad):
    k, y, mask, lam = ctx.saved_tensors
    is_2d, backend = ctx.flags
    # out = k − λ·M·(k − y): ∂k = g − conj(λ)·M·g, ∂y = conj(λ)·M·g.
    needs_k, needs_y = ctx.needs_input_grad[:2]
    passed = _soft_kspace_dc(grad, torch.zeros_like(grad), mask, lam.conj(), is_2d, backend) if needs_k or needs_y else None
    grad_k = passed if needs_k else None
    grad_y = grad - passed if needs_y else None
    grad_lam = None
    if ctx.needs_input_grad[3]:
        step = mask_as_kspace_weight(mask, is_2d).to(k.real.dtype) * (k - y)  # M·(k − y)
        grad_lam = _scalar_gradient(-(step.conj() * grad).sum(), lam)
    return grad_k, grad_y, None, grad_lam, None, None


def _scalar_gradient(total: Tensor, scalar: Tensor) -> Tensor:
    """The gradient Σ conj(∂out/∂s)·g of a one-element ``scalar``: its real part for a real one."""
    value = total if scalar.is_complex() else total.real
    return value.reshape(scalar.shape).to(scalar.dtype)


_dc_gradient_step.register_autograd(_dc_gradient_step_backward, setup_context=_save_inputs)
_soft_kspace_dc.register_autograd(_soft_kspace_dc_backward, setup_context=_save_inputs)


# ------------------------------------------------------------------------------- compact k-space


@torch.library.custom_op("mbdlfast::sense_forward_compact", mutates_args=())
def _sense_forward_compact(x: Tensor, maps: Tensor, columns: Tensor, backend: str) -> Tensor:
    return _run("sense_forward_compact", backend, x, maps, columns)


@_sense_forward_compact.register_fake
def _(x, maps, columns, backend):
    return x.new_empty((x.shape[0], maps.shape[1], x.shape[1], columns.shape[-1]))


def _sense_forward_compact_backward(ctx, grad):
    x, maps, columns = ctx.saved_tensors
    (backend,) = ctx.flags
    grad_x = _sense_adjoint_compact(grad, maps, columns, backend) if ctx.needs_input_grad[0] else None
    grad_maps = None
    if ctx.needs_input_grad[1]:
        grad_maps = _maps_gradient(compact_adjoint_coil_images(grad, columns, maps.shape[-1]), x, maps)
    return grad_x, grad_maps, None, None


@torch.library.custom_op("mbdlfast::sense_adjoint_compact", mutates_args=())
def _sense_adjoint_compact(yc: Tensor, maps: Tensor, columns: Tensor, backend: str) -> Tensor:
    return _run("sense_adjoint_compact", backend, yc, maps, columns)


@_sense_adjoint_compact.register_fake
def _(yc, maps, columns, backend):
    return yc.new_empty((yc.shape[0], maps.shape[2], maps.shape[3]))


def _sense_adjoint_compact_backward(ctx, grad):
    yc, maps, columns = ctx.saved_tensors
    (backend,) = ctx.flags
    grad_yc = _sense_forward_compact(grad, maps, columns, backend) if ctx.needs_input_grad[0] else None
    grad_maps = None
    if ctx.needs_input_grad[1]:
        grad_maps = _maps_gradient(compact_adjoint_coil_images(yc, columns, maps.shape[-1]), grad, maps)
    return grad_yc, grad_maps, None, None


_sense_forward_compact.register_autograd(_sense_forward_compact_backward, setup_context=_save_inputs)
_sense_adjoint_compact.register_autograd(_sense_adjoint_compact_backward, setup_context=_save_inputs)


# ------------------------------------------------------------------- super-resolution's data step


@torch.library.custom_op("mbdlfast::sr_data_solve", mutates_args=())
def _sr_data_solve(fz: Tensor, fay: Tensor, otf: Tensor, alpha: Tensor, scale: int, backend: str) -> Tensor:
    return _run("sr_data_solve", backend, fz, fay, otf, alpha, scale)


@_sr_data_solve.register_fake
def _(fz, fay, otf, alpha, scale, backend):
    return torch.empty_like(fz)


def _sr_data_solve_backward(ctx, grad):
    fz, fay, otf, alpha, out = ctx.saved_tensors
    scale, backend = ctx.flags
    if ctx.needs_input_grad[2]:
        raise RuntimeError("otf: sr_data_solve has no gradient for the blur kernel's transfer function (a given, "
                           "as in USRNet); pass it detached")
    # out = N (fay + α fz) with N = (K̄⟨K·⟩ + α)⁻¹ self-adjoint: ∂fay = N g, ∂fz = α N g, and
    # ∂out/∂α = N (fz − out), so ∂α = Re Σ conj(N g)·(fz − out) per sample.
    through = _sr_data_solve(torch.zeros_like(grad), grad, otf, alpha, scale, backend)
    grad_fz = alpha.reshape(-1, 1, 1, 1) * through if ctx.needs_input_grad[0] else None
    grad_fay = through if ctx.needs_input_grad[1] else None
    grad_alpha = None
    if ctx.needs_input_grad[3]:
        grad_alpha = (through.conj() * (fz - out)).real.sum(dim=(1, 2, 3)).to(alpha.dtype)
    return grad_fz, grad_fay, None, grad_alpha, None, None


def _save_inputs_and_output(ctx, inputs, output):
    _save_inputs(ctx, (*inputs, output), output)


_sr_data_solve.register_autograd(_sr_data_solve_backward, setup_context=_save_inputs_and_output)


# ------------------------------------------------------------------- argument checks and the API


def _check_image(name: str, x) -> Tensor:
    check.check_complex(name, x)
    return check.check_ndim(name, x, (3,), "a (B,H,W) image")


def _check_kspace(name: str, k) -> Tensor:
    check.check_complex(name, k)
    return check.check_ndim(name, k, (4,), "(B,C,H,W) k-space")


def _maps_4d(maps, data_name: str, data: Tensor, width: int | None = None) -> Tensor:
    """(C,H,W) or (1|B,C,H,W) maps, checked against the data ``data_name`` (B,...,H,W), as (Bm,C,H,W)."""
    check.check_complex("maps", maps)
    if data.dtype != maps.dtype:
        raise TypeError(f"{data_name}: expected dtype {maps.dtype} to match maps, got {data.dtype}")
    check.check_ndim("maps", maps, (3, 4), "(C,H,W) or (B,C,H,W) coil maps")
    maps4 = maps.unsqueeze(0) if maps.dim() == 3 else maps
    batch, height = data.shape[0], data.shape[-2]
    width = data.shape[-1] if width is None else width
    if maps4.shape[0] not in (1, batch) or tuple(maps4.shape[2:]) != (height, width):
        raise ValueError(f"{data_name}, maps: {data_name} of shape {tuple(data.shape)} needs maps (C,{height},{width}) "
                         f"or (1|{batch},C,{height},{width}), got maps {tuple(maps.shape)}")
    return maps4


def _image_maps(x, maps) -> Tensor:
    return _maps_4d(maps, "x", _check_image("x", x))


def _kspace_maps(name: str, k, maps, width: int | None = None) -> Tensor:
    coils = _check_kspace(name, k).shape[1]
    maps4 = _maps_4d(maps, name, k, width)
    if maps4.shape[1] != coils:
        raise ValueError(f"{name}, maps: {name} of shape {tuple(k.shape)} has {coils} coils, maps {maps4.shape[1]}")
    return maps4


def _check_mask(mask, batch: int, height: int, width: int, is_2d: bool) -> Tensor:
    check.check_tensor("mask", mask)
    if mask.is_complex():
        raise TypeError(f"mask: expected bool or real 0/1 values, got {mask.dtype}")
    if is_2d:
        check.check_ndim("mask", mask, (2, 3), "a 2D mask (H,W) or (B,H,W)")
        expected_ok = tuple(mask.shape[-2:]) == (height, width) and (mask.dim() == 2 or mask.shape[0] in (1, batch))
        layout = f"({height},{width}) or (1|{batch},{height},{width})"
    else:
        check.check_ndim("mask", mask, (1, 2), "a 1D mask (W,) or (B,W); pass is_2d=True for (H,W) masks")
        expected_ok = mask.shape[-1] == width and (mask.dim() == 1 or mask.shape[0] in (1, batch))
        layout = f"({width},) or (1|{batch},{width})"
    if not expected_ok:
        raise ValueError(f"mask: expected shape {layout}, got {tuple(mask.shape)}")
    return mask


def _check_columns(columns, batch: int) -> Tensor:
    check.check_tensor("columns", columns)
    if columns.dtype.is_floating_point or columns.is_complex() or columns.dtype == torch.bool:
        raise TypeError(f"columns: expected integer column indices, got {columns.dtype}")
    check.check_ndim("columns", columns, (1, 2), "sampled column indices (n_s,) or (B,n_s)")
    if columns.dim() == 2 and columns.shape[0] not in (1, batch):
        raise ValueError(f"columns: expected (n_s,) or (1|{batch},n_s), got {tuple(columns.shape)}")
    return columns


def _scalar(name: str, value, like: Tensor) -> Tensor:
    """γ or λ as a one-element tensor on ``like``'s device (a number becomes a fill, not a copy)."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        dtype = like.dtype if isinstance(value, complex) else real_dtype(like.dtype)
        return torch.full((), value, dtype=dtype, device=like.device)
    check.check_tensor(name, value)
    if value.numel() != 1 or value.dtype == torch.bool or not (value.is_floating_point() or value.is_complex()):
        raise ValueError(f"{name}: expected a number or a one-element real or complex tensor, "
                         f"got {value.dtype} of shape {tuple(value.shape)}")
    check.check_same_device(**{name: value, "data": like})
    return value.reshape(())


def _prepare_coil_expand(x, maps):
    maps4 = _image_maps(x, maps)
    check.check_same_device(x=x, maps=maps)
    return x, maps4


def _prepare_coil_reduce(z, maps):
    maps4 = _kspace_maps("z", z, maps)
    check.check_same_device(z=z, maps=maps)
    return z, maps4


def _prepare_image_op(x, maps, mask, is_2d=False):
    maps4 = _image_maps(x, maps)
    _check_mask(mask, *x.shape, is_2d)
    check.check_same_device(x=x, maps=maps, mask=mask)
    return x, maps4, mask, bool(is_2d)


def _prepare_sense_adjoint(y, maps, mask, is_2d=False):
    maps4 = _kspace_maps("y", y, maps)
    _check_mask(mask, y.shape[0], *y.shape[2:], is_2d)
    check.check_same_device(y=y, maps=maps, mask=mask)
    return y, maps4, mask, bool(is_2d)


def _prepare_dc_gradient_step(x, maps, mask, AHy, gamma, is_2d=False):
    x, maps4, mask, is_2d = _prepare_image_op(x, maps, mask, is_2d)
    check.check_complex("AHy", AHy, x.dtype)
    check.check_shape("AHy", AHy, tuple(x.shape), "the image layout (B,H,W)")
    check.check_same_device(x=x, AHy=AHy)
    return x, maps4, mask, AHy, _scalar("gamma", gamma, x), is_2d


def _prepare_soft_kspace_dc(k, y, mask, lam, is_2d=False):
    _check_kspace("k", k)
    check.check_complex("y", y, k.dtype)
    check.check_shape("y", y, tuple(k.shape), "k-space (B,C,H,W) like k")
    _check_mask(mask, k.shape[0], *k.shape[2:], is_2d)
    check.check_same_device(k=k, y=y, mask=mask)
    return k, y, mask, _scalar("lam", lam, k), bool(is_2d)


def _prepare_sense_forward_compact(x, maps, columns):
    maps4 = _image_maps(x, maps)
    _check_columns(columns, x.shape[0])
    check.check_same_device(x=x, maps=maps, columns=columns)
    return x, maps4, columns


def _prepare_sense_adjoint_compact(yc, maps, columns):
    check.check_complex("maps", maps)
    maps4 = _kspace_maps("yc", yc, maps, width=maps.shape[-1])
    _check_columns(columns, yc.shape[0])
    if columns.shape[-1] != yc.shape[-1]:
        raise ValueError(f"yc: expected {columns.shape[-1]} columns to match columns, got {tuple(yc.shape)}")
    check.check_same_device(yc=yc, maps=maps, columns=columns)
    return yc, maps4, columns


def _prepare_sr_data_solve(fz, fay, otf, alpha, scale):
    fz = check.check_complex("fz", fz)
    check.check_ndim("fz", fz, (4,), "a (B,C,H,W) image spectrum")
    check.check_complex("fay", fay, fz.dtype)
    check.check_shape("fay", fay, tuple(fz.shape), "the spectrum layout (B,C,H,W) of fz")
    check.check_complex("otf", otf, fz.dtype)
    batch, _, height, width = fz.shape
    check.check_ndim("otf", otf, (2, 3), "a transfer function (H,W) or (B,H,W)")
    otf = otf.unsqueeze(0) if otf.dim() == 2 else otf
    if tuple(otf.shape[1:]) != (height, width) or otf.shape[0] not in (1, batch):
        raise ValueError(f"otf: expected ({height},{width}) or (1|{batch},{height},{width}), got {tuple(otf.shape)}")
    scale = check.check_int("scale", scale, minimum=1)
    if height % scale or width % scale:
        raise ValueError(f"scale: {scale} does not divide the {height}x{width} spectrum")
    alpha = _scalar("alpha", alpha, fz) if isinstance(alpha, numbers.Number) else check.check_tensor("alpha", alpha)
    if alpha.is_complex() or not alpha.is_floating_point() or alpha.numel() not in (1, batch):
        raise ValueError(f"alpha: expected a number or a real tensor of 1 or {batch} values, "
                         f"got {alpha.dtype} of shape {tuple(alpha.shape)}")
    check.check_same_device(fz=fz, fay=fay, otf=otf, alpha=alpha)
    alpha = alpha.to(real_dtype(fz.dtype)).reshape(-1).expand(batch)
    return fz, fay, otf, alpha, scale


# Each public op: its argument checks (the user's arguments to the schema's) and its custom op.
_PREPARE = {
    "coil_expand": _prepare_coil_expand, "coil_reduce": _prepare_coil_reduce,
    "sense_forward": _prepare_image_op, "sense_adjoint": _prepare_sense_adjoint, "sense_normal": _prepare_image_op,
    "dc_gradient_step": _prepare_dc_gradient_step, "soft_kspace_dc": _prepare_soft_kspace_dc,
    "sense_forward_compact": _prepare_sense_forward_compact, "sense_adjoint_compact": _prepare_sense_adjoint_compact,
    "sr_data_solve": _prepare_sr_data_solve,
}
_CUSTOM_OPS = {
    "coil_expand": _coil_expand, "coil_reduce": _coil_reduce, "sense_forward": _sense_forward,
    "sense_adjoint": _sense_adjoint, "sense_normal": _sense_normal, "dc_gradient_step": _dc_gradient_step,
    "soft_kspace_dc": _soft_kspace_dc, "sense_forward_compact": _sense_forward_compact,
    "sense_adjoint_compact": _sense_adjoint_compact, "sr_data_solve": _sr_data_solve,
}


def _call(op: str, backend: str | None, *args) -> Tensor:
    return _CUSTOM_OPS[op](*_PREPARE[op](*args), dispatch.requested_backend(backend))


def coil_expand(x, maps, *, backend=None):
    """S·x: (B,H,W) image and (C,H,W) or (B|1,C,H,W) maps to (B,C,H,W) coil images."""
    return _call("coil_expand", backend, x, maps)


def coil_reduce(z, maps, *, backend=None):
    """Σ_c conj(S_c)·z_c: (B,C,H,W) coil images to a (B,H,W) image."""
    return _call("coil_reduce", backend, z, maps)


def sense_forward(x, maps, mask, is_2d=False, *, backend=None):
    """A x = M · fft2c(S·x) on full (B,C,H,W) k-space."""
    return _call("sense_forward", backend, x, maps, mask, is_2d)


def sense_adjoint(y, maps, mask, is_2d=False, *, backend=None):
    """A^H y for full (B,C,H,W) k-space."""
    return _call("sense_adjoint", backend, y, maps, mask, is_2d)


def sense_normal(x, maps, mask, is_2d=False, *, backend=None):
    """A^H A x."""
    return _call("sense_normal", backend, x, maps, mask, is_2d)


def dc_gradient_step(x, maps, mask, AHy, gamma, is_2d=False, *, backend=None):
    """x − γ·(A^H A x − A^H y), with A^H y computed once per reconstruction."""
    return _call("dc_gradient_step", backend, x, maps, mask, AHy, gamma, is_2d)


def soft_kspace_dc(k, y, mask, lam, is_2d=False, *, backend=None):
    """E2E-VarNet's soft data consistency k − λ·M·(k − y) on (B,C,H,W) k-space."""
    return _call("soft_kspace_dc", backend, k, y, mask, lam, is_2d)


def sense_forward_compact(x, maps, columns, *, backend=None):
    """A x at the sampled columns only: (B,C,H,n_s)."""
    return _call("sense_forward_compact", backend, x, maps, columns)


def sense_adjoint_compact(yc, maps, columns, *, backend=None):
    """A^H of compact (B,C,H,n_s) k-space."""
    return _call("sense_adjoint_compact", backend, yc, maps, columns)


def sr_data_solve(fz, fay, otf, alpha, scale, *, backend=None):
    """The spectrum of USRNet's data step argmin_x ‖(k ⊛ x)↓s − y‖² + α‖x − z‖² from F z and F Aᴴy
    (B,C,H,W), the kernel's full-spectrum transfer function (H,W) or (B,H,W), α a number or (B,)
    and the scale s (:func:`mbdlfast.ops.reference.sr_data_solve`); differentiable in fz, fay and α."""
    return _call("sr_data_solve", backend, fz, fay, otf, alpha, scale)


def explain(op: str, *args, backend: str | None = None) -> dispatch.Decision:
    """Which backend the public ``op`` would run on these arguments (as the public function takes
    them), and why each backend before it in the automatic order was skipped; a forced backend that
    cannot run them raises with its reasons."""
    if op not in _PREPARE:
        raise KeyError(f"op: expected one of {sorted(_PREPARE)}, got {op!r}")
    return dispatch.decide(_CASES[op](*_PREPARE[op](*args)), dispatch.requested_backend(backend))
