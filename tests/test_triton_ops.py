"""The Triton backend's own cases, on CUDA tensors where there is a GPU and on CPU tensors in Triton's
interpreter otherwise (tests/devices.py): masks with unequal line counts, real mask weights, empty
masks, its cached constants and what it declines. Every op against the reference, its gradients and
opcheck are in tests/test_op_conformance.py."""
from __future__ import annotations

import functools

import pytest
import torch

from references import reference_module

reference_module("triton")

import mbdlfast.ops as ops  # noqa: E402
from comparisons import relative_error  # noqa: E402
from devices import TRITON_DEVICE as DEVICE  # noqa: E402
from mbdlfast.ops import reference  # noqa: E402
from mbdlfast.ops.centred_dft import row_dft_from_mask  # noqa: E402

C64, C128 = torch.complex64, torch.complex128


class _ForcedTriton:
    """``triton.sense_normal(...)`` is ``ops.sense_normal(..., backend="triton")``."""

    def __getattr__(self, name):
        return functools.partial(getattr(ops, name), backend="triton")


triton = _ForcedTriton()
TOL = 1e-5

def line_mask(batch: int, width: int, per_batch: bool, equal_counts: bool = True) -> torch.Tensor:
    """Every other column plus the centre; per-batch masks are shifted by one (equal counts) or thinned."""
    first = torch.zeros(width, dtype=torch.bool, device=DEVICE)
    first[::2] = True
    first[width // 2] = True
    if not per_batch:
        return first
    if equal_counts:
        second = torch.roll(first, 1)
    else:
        second = first & (torch.arange(width, device=DEVICE) % 4 == 0)
        second[width // 2] = True
    return torch.stack([first, second] + [first] * (batch - 2))[:batch]


def make(batch, coils, height, width, per_batch_maps):
    x = torch.randn(batch, height, width, dtype=C64, device=DEVICE)
    maps = torch.randn((batch,) * per_batch_maps + (coils, height, width), dtype=C64, device=DEVICE)
    return x, maps


def hi(t: torch.Tensor) -> torch.Tensor:
    return t.to(C128) if t.is_complex() else t


def test_per_batch_masks_with_different_line_counts():
    x, maps = make(2, 3, 11, 12, per_batch_maps=False)
    mask = line_mask(2, 12, per_batch=True, equal_counts=False)
    assert mask[0].sum() != mask[1].sum()
    y = torch.randn(2, 3, 11, 12, dtype=C64, device=DEVICE)
    for name, args in {"sense_forward": (x, maps, mask), "sense_adjoint": (y, maps, mask),
                       "sense_normal": (x, maps, mask)}.items():
        want = getattr(reference, name)(*(hi(a) for a in args))
        assert relative_error(getattr(triton, name)(*args), want) <= TOL, name
    full = triton.sense_forward(x, maps, mask)
    assert bool((full[1][..., ~mask[1]] == 0).all())


def test_real_valued_mask_weights_and_2d_masks():
    x, maps = make(2, 3, 9, 8, per_batch_maps=False)
    weights = torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 2.0], device=DEVICE)
    for name in ("sense_forward", "sense_normal"):
        want = getattr(reference, name)(hi(x), hi(maps), weights)
        assert relative_error(getattr(triton, name)(x, maps, weights), want) <= TOL, name
    mask2d = torch.rand(9, 8, device=DEVICE) > 0.5
    k, y = (torch.randn(2, 2, 9, 8, dtype=C64, device=DEVICE) for _ in range(2))
    assert relative_error(triton.soft_kspace_dc(k, y, mask2d, 0.4, True),
                   reference.soft_kspace_dc(hi(k), hi(y), mask2d, 0.4, True)) <= TOL
    # 2D masks are not this backend's for the transforms: forced, it says so; auto takes torch
    with pytest.raises(RuntimeError, match="takes 1d masks, not a 2d mask"):
        triton.sense_normal(x, maps, mask2d, True)


def test_empty_mask_gives_zeros():
    x, maps = make(1, 2, 6, 5, per_batch_maps=False)
    mask = torch.zeros(5, dtype=torch.bool, device=DEVICE)
    assert bool((triton.sense_normal(x, maps, mask) == 0).all())
    assert bool((triton.sense_forward(x, maps, mask) == 0).all())


def test_dispatcher_routes_to_triton_and_constants_are_cached():
    x, maps = make(1, 2, 6, 5, per_batch_maps=False)
    mask = line_mask(1, 5, per_batch=False)
    assert ops.explain("sense_normal", x, maps, mask, backend="triton").backend == "triton"
    got = ops.sense_normal(x, maps, mask, backend="triton")
    assert relative_error(got, reference.sense_normal(hi(x), hi(maps), mask)) <= TOL
    assert row_dft_from_mask(mask, 5) is row_dft_from_mask(mask, 5)
    assert row_dft_from_mask(mask, 5) is row_dft_from_mask(mask.clone(), 5)


@pytest.mark.parametrize("bad, match", [
    (lambda x, maps, mask: (x.real, maps, mask), "x: expected a complex tensor"),
    (lambda x, maps, mask: (x, maps.to(C128), mask), "x: expected dtype torch.complex128 to match maps"),
    (lambda x, maps, mask: (x, maps[..., :-1], mask), "x, maps: x of shape .* needs maps"),
    (lambda x, maps, mask: (x, maps, mask[:-1]), "mask: expected shape"),
    (lambda x, maps, mask: (x, maps, mask.to(C64)), "mask: expected bool or real"),
    (lambda x, maps, mask: (x[0], maps, mask), "x: expected a \\(B,H,W\\) image"),
])
def test_bad_inputs_are_rejected(bad, match):
    x, maps = make(2, 2, 5, 6, per_batch_maps=False)
    with pytest.raises((TypeError, ValueError), match=match):
        triton.sense_normal(*bad(x, maps, line_mask(2, 6, per_batch=False)))


def test_bad_columns_and_kspace_are_rejected():
    x, maps = make(2, 2, 5, 6, per_batch_maps=False)
    with pytest.raises(ValueError, match="columns: indices must lie in"):
        triton.sense_forward_compact(x, maps, torch.tensor([0, 6], device=DEVICE))
    with pytest.raises(TypeError, match="columns: expected integer"):
        triton.sense_forward_compact(x, maps, torch.tensor([0.0, 2.0], device=DEVICE))
    with pytest.raises(ValueError, match="yc: expected"):
        triton.sense_adjoint_compact(torch.randn(2, 2, 5, 3, dtype=C64, device=DEVICE), maps,
                                     torch.tensor([0, 2], device=DEVICE))
    with pytest.raises(ValueError, match="y, maps: y of shape .* has 3 coils, maps 2"):
        triton.sense_adjoint(torch.randn(2, 3, 5, 6, dtype=C64, device=DEVICE), maps,
                             torch.ones(6, dtype=torch.bool, device=DEVICE))


def test_row_dft_ops_take_a_dot_precision():
    """The library ops run at "ieee" (default) or "tf32x3" (the interpreter computes both in fp32;
    the tensor-core accuracy needs a GPU) and refuse anything else."""
    from mbdlfast.ops import triton_library as lib

    x, maps = make(2, 3, 17, 12, per_batch_maps=True)
    mask = line_mask(2, 12, per_batch=True)
    dft = row_dft_from_mask(mask, 12).planar
    ahy, gamma = torch.randn_like(x), torch.tensor(0.7, device=DEVICE)
    want = reference.sense_normal(hi(x), hi(maps), mask)
    for precision in ("ieee", "tf32x3"):
        assert relative_error(lib.sense_normal_triton(x, maps, dft, precision), want) <= TOL
        step = lib.dc_gradient_step_triton(x, maps, dft, ahy, gamma, precision)
        assert relative_error(step, hi(x) - 0.7 * (want - hi(ahy))) <= TOL
        rows = lib.row_dft_forward_triton(x, maps, dft, None, precision)
        assert relative_error(lib.row_dft_adjoint_triton(rows, maps, dft, None, precision), want) <= TOL
    with pytest.raises(ValueError, match="precision"):
        lib.sense_normal_triton(x, maps, dft, "tf32")
