"""Triton backend of the SENSE ops against the complex128 reference (CPU: Triton's interpreter)."""
from __future__ import annotations

import pytest
import torch

from references import reference_module

reference_module("triton")

import mbdlfast.ops as ops  # noqa: E402
from comparisons import relative_error  # noqa: E402
from mbdlfast.ops import reference, triton_ops  # noqa: E402
from mbdlfast.ops.centred_dft import row_dft_from_mask  # noqa: E402

C64, C128 = torch.complex64, torch.complex128
TOL = 1e-5

# (batch, coils, height, width, per-batch mask, per-batch maps)
CASES = [
    (1, 4, 12, 10, False, False),
    (2, 4, 13, 9, True, True),
    (2, 1, 12, 10, True, False),
    (2, 15, 5, 7, False, True),
    (1, 1, 23, 17, False, False),
]


def line_mask(batch: int, width: int, per_batch: bool, equal_counts: bool = True) -> torch.Tensor:
    """Every other column plus the centre; per-batch masks are shifted by one (equal counts) or thinned."""
    first = torch.zeros(width, dtype=torch.bool)
    first[::2] = True
    first[width // 2] = True
    if not per_batch:
        return first
    if equal_counts:
        second = torch.roll(first, 1)
    else:
        second = first & (torch.arange(width) % 4 == 0)
        second[width // 2] = True
    return torch.stack([first, second] + [first] * (batch - 2))[:batch]


def make(batch, coils, height, width, per_batch_maps):
    x = torch.randn(batch, height, width, dtype=C64)
    maps = torch.randn((batch,) * per_batch_maps + (coils, height, width), dtype=C64)
    return x, maps


def hi(t: torch.Tensor) -> torch.Tensor:
    return t.to(C128) if t.is_complex() else t


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}C{}_{}x{}_mask{}_maps{}".format(*c))
def test_ops_match_reference(case):
    batch, coils, height, width, per_batch_mask, per_batch_maps = case
    x, maps = make(batch, coils, height, width, per_batch_maps)
    mask = line_mask(batch, width, per_batch_mask)
    k = torch.randn(batch, coils, height, width, dtype=C64)
    y = torch.randn(batch, coils, height, width, dtype=C64)
    ahy = torch.randn(batch, height, width, dtype=C64)
    columns = reference.sampled_columns(mask)
    yc = torch.randn(batch, coils, height, columns.shape[-1], dtype=C64)
    checks = {
        "coil_expand": (x, maps),
        "coil_reduce": (k, maps),
        "sense_forward": (x, maps, mask),
        "sense_adjoint": (y, maps, mask),
        "sense_normal": (x, maps, mask),
        "dc_gradient_step": (x, maps, mask, ahy, 0.37),
        "soft_kspace_dc": (k, y, mask, 0.6),
        "sense_forward_compact": (x, maps, columns),
        "sense_adjoint_compact": (yc, maps, columns),
    }
    for name, args in checks.items():
        got = getattr(triton_ops, name)(*args)
        want = getattr(reference, name)(*(hi(a) if isinstance(a, torch.Tensor) else a for a in args))
        assert got.dtype == C64, name
        assert relative_error(got, want) <= TOL, (name, relative_error(got, want))


def test_per_batch_masks_with_different_line_counts():
    x, maps = make(2, 3, 11, 12, per_batch_maps=False)
    mask = line_mask(2, 12, per_batch=True, equal_counts=False)
    assert mask[0].sum() != mask[1].sum()
    y = torch.randn(2, 3, 11, 12, dtype=C64)
    for name, args in {"sense_forward": (x, maps, mask), "sense_adjoint": (y, maps, mask),
                       "sense_normal": (x, maps, mask)}.items():
        want = getattr(reference, name)(*(hi(a) for a in args))
        assert relative_error(getattr(triton_ops, name)(*args), want) <= TOL, name
    full = triton_ops.sense_forward(x, maps, mask)
    assert bool((full[1][..., ~mask[1]] == 0).all())


def test_real_valued_mask_weights_and_2d_masks():
    x, maps = make(2, 3, 9, 8, per_batch_maps=False)
    weights = torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 2.0])
    for name in ("sense_forward", "sense_normal"):
        want = getattr(reference, name)(hi(x), hi(maps), weights)
        assert relative_error(getattr(triton_ops, name)(x, maps, weights), want) <= TOL, name
    mask2d = torch.rand(9, 8) > 0.5
    k, y = torch.randn(2, 2, 9, 8, dtype=C64), torch.randn(2, 2, 9, 8, dtype=C64)
    assert relative_error(triton_ops.soft_kspace_dc(k, y, mask2d, 0.4, True),
                   reference.soft_kspace_dc(hi(k), hi(y), mask2d, 0.4, True)) <= TOL
    # 2D masks take the reference path for the transforms
    assert relative_error(triton_ops.sense_normal(x, maps, mask2d, True),
                   reference.sense_normal(hi(x), hi(maps), mask2d, True)) <= TOL


def test_empty_mask_gives_zeros():
    x, maps = make(1, 2, 6, 5, per_batch_maps=False)
    mask = torch.zeros(5, dtype=torch.bool)
    assert bool((triton_ops.sense_normal(x, maps, mask) == 0).all())
    assert bool((triton_ops.sense_forward(x, maps, mask) == 0).all())


def test_dispatcher_routes_to_triton_and_constants_are_cached():
    x, maps = make(1, 2, 6, 5, per_batch_maps=False)
    mask = line_mask(1, 5, per_batch=False)
    assert ops.choose("sense_normal", x.device, "triton")[0] == "triton"
    got = ops.sense_normal(x, maps, mask, backend="triton")
    assert relative_error(got, reference.sense_normal(hi(x), hi(maps), mask)) <= TOL
    assert row_dft_from_mask(mask, 5) is row_dft_from_mask(mask, 5)
    assert row_dft_from_mask(mask, 5) is row_dft_from_mask(mask.clone(), 5)


def _grads(fn, inputs, cotangent):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    (out * cotangent.to(out.dtype).conj()).real.sum().backward()
    return [t.grad for t in inputs]


GRADIENT_OPS = {
    "sense_forward": lambda x, maps, mask: (x, maps),
    "sense_adjoint": lambda x, maps, mask: (torch.randn(2, 3, 7, 6, dtype=C64), maps),
    "sense_normal": lambda x, maps, mask: (x, maps),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_OPS))
def test_gradients_match_reference_autograd(name):
    x, maps = make(2, 3, 7, 6, per_batch_maps=False)
    mask = line_mask(2, 6, per_batch=True)
    data, maps = GRADIENT_OPS[name](x, maps, mask)
    out_shape = getattr(reference, name)(data, maps, mask).shape
    cotangent = torch.randn(out_shape, dtype=C128)
    got = _grads(lambda d, m: getattr(triton_ops, name)(d, m, mask), [data, maps], cotangent)
    want = _grads(lambda d, m: getattr(reference, name)(d, m, mask), [hi(data), hi(maps)], cotangent)
    for g, w in zip(got, want):
        assert relative_error(g, w) <= TOL, name


def test_gradients_of_step_sizes_and_compact_ops():
    x, maps = make(2, 3, 7, 6, per_batch_maps=True)
    mask = line_mask(2, 6, per_batch=False)
    ahy = torch.randn(2, 7, 6, dtype=C64)
    gamma = torch.tensor(0.3)
    cot = torch.randn(2, 7, 6, dtype=C128)
    got = _grads(lambda a, m, h, g: triton_ops.dc_gradient_step(a, m, mask, h, g), [x, maps, ahy, gamma], cot)
    want = _grads(lambda a, m, h, g: reference.dc_gradient_step(a, m, mask, h, g), [hi(x), hi(maps), hi(ahy),
                                                                                      gamma.double()], cot)
    for g, w in zip(got, want):
        assert relative_error(g, w) <= TOL
    k, y = torch.randn(2, 3, 7, 6, dtype=C64), torch.randn(2, 3, 7, 6, dtype=C64)
    cot = torch.randn(2, 3, 7, 6, dtype=C128)
    got = _grads(lambda a, b, lam: triton_ops.soft_kspace_dc(a, b, mask, lam), [k, y, gamma], cot)
    want = _grads(lambda a, b, lam: reference.soft_kspace_dc(a, b, mask, lam), [hi(k), hi(y), gamma.double()], cot)
    for g, w in zip(got, want):
        assert relative_error(g, w) <= TOL
    columns = reference.sampled_columns(mask)
    cot = torch.randn(2, 3, 7, columns.shape[-1], dtype=C128)
    got = _grads(lambda a, m: triton_ops.sense_forward_compact(a, m, columns), [x, maps], cot)
    want = _grads(lambda a, m: reference.sense_forward_compact(a, m, columns), [hi(x), hi(maps)], cot)
    for g, w in zip(got, want):
        assert relative_error(g, w) <= TOL


def test_opcheck_registered_ops():
    triton_ops._library()
    x, maps = make(2, 2, 5, 6, per_batch_maps=False)
    maps4 = maps.unsqueeze(0)
    dft = row_dft_from_mask(line_mask(2, 6, per_batch=True), 6).planar
    k = torch.randn(2, 2, 5, 6, dtype=C64)
    lib = torch.ops.mbdlfast
    samples = [
        (lib.coil_expand_triton, (x, maps4)),
        (lib.coil_reduce_triton, (k, maps4)),
        (lib.row_dft_forward_triton, (x, maps4, dft, None)),
        (lib.row_dft_adjoint_triton, (torch.randn(2, 2, 5, dft.shape[2], dtype=C64), maps4, dft,
                                      torch.randn(5, dtype=C64))),
        (lib.sense_normal_triton, (x, maps4, dft)),
        (lib.dc_gradient_step_triton, (x, maps4, dft, torch.randn_like(x), torch.tensor(0.5))),
        (lib.soft_kspace_dc_triton, (k, torch.randn_like(k), torch.ones(1, 1, 6), torch.tensor(0.5))),
    ]
    for op, args in samples:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.parametrize("bad, match", [
    (lambda x, maps, mask: (x.real, maps, mask), "x: expected a complex tensor"),
    (lambda x, maps, mask: (x, maps.to(C128), mask), "maps: expected dtype"),
    (lambda x, maps, mask: (x, maps[..., :-1], mask), "maps: expected shape"),
    (lambda x, maps, mask: (x, maps, mask[:-1]), "mask: expected shape"),
    (lambda x, maps, mask: (x, maps, mask.to(C64)), "mask: expected bool or real"),
    (lambda x, maps, mask: (x[0], maps, mask), "x: expected a \\(B,H,W\\) image"),
])
def test_bad_inputs_are_rejected(bad, match):
    x, maps = make(2, 2, 5, 6, per_batch_maps=False)
    with pytest.raises((TypeError, ValueError), match=match):
        triton_ops.sense_normal(*bad(x, maps, line_mask(2, 6, per_batch=False)))


def test_bad_columns_and_kspace_are_rejected():
    x, maps = make(2, 2, 5, 6, per_batch_maps=False)
    with pytest.raises(ValueError, match="columns: indices must lie in"):
        triton_ops.sense_forward_compact(x, maps, torch.tensor([0, 6]))
    with pytest.raises(TypeError, match="columns: expected integer"):
        triton_ops.sense_forward_compact(x, maps, torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="yc: expected"):
        triton_ops.sense_adjoint_compact(torch.randn(2, 2, 5, 3, dtype=C64), maps, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="maps: expected 3 coils"):
        triton_ops.sense_adjoint(torch.randn(2, 3, 5, 6, dtype=C64), maps, torch.ones(6, dtype=torch.bool))
