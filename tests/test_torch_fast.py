"""The shift-free torch backend matches the complex128 reference on odd/even sizes, masks and maps."""
import pytest
import torch

import mbdlfast.ops as ops
from mbdlfast.ops.fft import centring_phases
from comparisons import assert_complex64_matches, relative_error, sampled_columns
from mbdlfast.ops import reference, torch_fast

# (coils, height, width, batch): odd and even sizes, one coil to many.
CASES = [(4, 123, 97, 3), (15, 16, 12, 1), (1, 17, 9, 3)]



def make_problem(coils, height, width, batch, *, per_batch_maps, mask_kind):
    x = torch.randn(batch, height, width, dtype=torch.complex128)
    maps = torch.randn(batch if per_batch_maps else 1, coils, height, width, dtype=torch.complex128)
    if not per_batch_maps:
        maps = maps[0]  # (C,H,W) layout
    shape = {"1d": (width,), "batched": (batch, width), "2d": (height, width)}[mask_kind]
    mask = torch.rand(shape) < 0.4
    mask[..., width // 2] = True
    return x, maps, mask, mask_kind == "2d"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_batch_maps", [False, True])
@pytest.mark.parametrize("mask_kind", ["1d", "batched", "2d"])
def test_full_ops_match_reference_in_complex64(case, per_batch_maps, mask_kind):
    x, maps, mask, is_2d = make_problem(*case, per_batch_maps=per_batch_maps, mask_kind=mask_kind)
    y = torch.randn(x.shape[0], case[0], *x.shape[1:], dtype=torch.complex128)
    AHy = torch.randn_like(x)
    x64, maps64, y64, AHy64 = (t.to(torch.complex64) for t in (x, maps, y, AHy))
    pairs = [
        (torch_fast.sense_forward(x64, maps64, mask, is_2d), reference.sense_forward(x, maps, mask, is_2d)),
        (torch_fast.sense_adjoint(y64, maps64, mask, is_2d), reference.sense_adjoint(y, maps, mask, is_2d)),
        (torch_fast.sense_normal(x64, maps64, mask, is_2d), reference.sense_normal(x, maps, mask, is_2d)),
        (torch_fast.dc_gradient_step(x64, maps64, mask, AHy64, 0.3, is_2d),
         reference.dc_gradient_step(x, maps, mask, AHy, 0.3, is_2d)),
        (torch_fast.soft_kspace_dc(y64, y64.flip(-1), mask, 0.7, is_2d),
         reference.soft_kspace_dc(y, y.flip(-1), mask, 0.7, is_2d)),
    ]
    assert_complex64_matches(pairs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_batch_columns", [False, True])
def test_compact_ops_match_reference(case, per_batch_columns):
    coils, height, width, batch = case
    x = torch.randn(batch, height, width, dtype=torch.complex128)
    maps = torch.randn(batch, coils, height, width, dtype=torch.complex128)
    columns = sampled_columns(width, batch, per_batch_columns)
    yc = torch.randn(batch, coils, height, columns.shape[-1], dtype=torch.complex128)
    forward = torch_fast.sense_forward_compact(x.to(torch.complex64), maps.to(torch.complex64), columns)
    adjoint = torch_fast.sense_adjoint_compact(yc.to(torch.complex64), maps.to(torch.complex64), columns)
    assert relative_error(forward, reference.sense_forward_compact(x, maps, columns)) <= 1e-5
    assert relative_error(adjoint, reference.sense_adjoint_compact(yc, maps, columns)) <= 1e-5


@pytest.mark.parametrize("batched", [False, True])
def test_compact_adjoint_adds_up_repeated_columns(batched):
    x = torch.randn(2, 6, 10, dtype=torch.complex128)
    maps = torch.randn(3, 6, 10, dtype=torch.complex128)
    columns = torch.tensor([7, 2, 2, 0])
    columns = columns.expand(2, -1) if batched else columns
    yc = torch.randn(2, 3, 6, 4, dtype=torch.complex128)
    for backend in ("naive", "torch"):
        forward = ops.sense_forward_compact(x, maps, columns, backend=backend)
        adjoint = ops.sense_adjoint_compact(yc, maps, columns, backend=backend)
        assert torch.vdot(forward.flatten(), yc.flatten()).allclose(torch.vdot(x.flatten(), adjoint.flatten()))


def test_real_valued_mask_weights_match_reference():
    x, maps, _, _ = make_problem(3, 10, 7, 2, per_batch_maps=True, mask_kind="1d")
    weights = torch.rand(7, dtype=torch.float64)  # not 0/1: the normal operator applies M twice
    assert relative_error(torch_fast.sense_normal(x, maps, weights), reference.sense_normal(x, maps, weights)) <= 1e-12


def test_gradients_through_image_and_maps():
    x = torch.randn(2, 6, 5, dtype=torch.complex128, requires_grad=True)
    maps = torch.randn(1, 3, 6, 5, dtype=torch.complex128, requires_grad=True)
    mask = torch.tensor([True, False, True, True, False])
    for fn in (torch_fast.sense_normal, torch_fast.sense_forward):
        assert torch.autograd.gradcheck(lambda a, s: fn(a, s, mask), (x, maps))
    y = torch.randn(2, 3, 6, 5, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, s: torch_fast.sense_adjoint(b, s, mask), (y, maps))


def test_dispatcher_uses_this_module_for_torch():
    from mbdlfast.ops import dispatch

    assert dispatch.kernel(dispatch.Case("sense_normal", torch.device("cpu"), torch.complex64, "1d"),
                           "torch")[1] is torch_fast.sense_normal
    x, maps, mask, _ = make_problem(2, 8, 6, 1, per_batch_maps=False, mask_kind="1d")
    assert relative_error(ops.sense_normal(x, maps, mask, backend="torch"), reference.sense_normal(x, maps, mask)) <= 1e-12


def test_centring_phases_are_cached_and_unit_modulus():
    q, p = centring_phases(9, torch.device("cpu"), torch.complex128)
    assert centring_phases(9, torch.device("cpu"), torch.complex128)[0] is q
    torch.testing.assert_close(q.abs(), torch.ones(9, dtype=torch.float64))
    # Even length: the modulations are the ±1 patterns (−1)^n and (−1)^(N/2)·(−1)^k.
    q, p = centring_phases(8, torch.device("cpu"), torch.complex128)
    signs = torch.tensor([1.0, -1.0] * 4, dtype=torch.complex128)
    torch.testing.assert_close(q, signs)
    torch.testing.assert_close(p, signs)


def test_naive_backend_is_forced_only_and_runs_the_reference(monkeypatch):
    from mbdlfast.ops import dispatch
    from mbdlfast.physics.sense import SenseOperator

    assert "naive" in ops.available_backends("cpu")
    for op in ("sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step", "sense_forward_compact",
               "sense_adjoint_compact", "soft_kspace_dc", "coil_expand", "coil_reduce"):
        case = dispatch.Case(op, torch.device("cpu"), torch.complex64, "1d")
        assert dispatch.decide(case).backend != "naive"
        assert dispatch.kernel(case, "naive")[1] is getattr(reference, op)
    calls = []
    for op in ("sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step"):
        def spy(*args, _fn=getattr(reference, op), _op=op):
            calls.append(_op)
            return _fn(*args)
        monkeypatch.setitem(dispatch._KERNELS[op], "naive", dispatch.Kernel(spy))
    x, maps, mask, _ = make_problem(3, 9, 8, 2, per_batch_maps=True, mask_kind="1d")
    operator = SenseOperator(maps, mask)
    with ops.use_backend("naive"):
        results = [operator.A(x), operator.A_adjoint(operator.A(x)), operator.A_adjoint_A(x), operator.dc_step(x, x, 0.5)]
    assert calls == ["sense_forward", "sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step"]
    assert relative_error(results[2], reference.sense_normal(x, maps, mask)) <= 1e-12
    assert relative_error(SenseOperator(maps, mask, backend="naive").A_adjoint_A(x), results[2]) <= 1e-12
    assert len(calls) == 6
    operator.A_adjoint_A(x)  # outside the block: back to auto, the spy is not called
    assert len(calls) == 6
