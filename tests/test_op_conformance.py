"""One conformance suite for the public SENSE ops: op × backend × mask kind × dtype × device.

Every case is first put to :func:`mbdlfast.ops.explain` with the backend forced: a backend that
declares it cannot take the inputs must say why (and that case is not run on it); one that takes
them must match the float64 reference (:mod:`mbdlfast.ops.reference`), with its output in the
input's dtype. The same suite checks adjointness and the gradients of every op through every
backend, ``torch.library.opcheck`` of the public ops, and what ``auto`` picks. The CUDA cases
(marked ``gpu``) run on a GPU machine, Triton's on real CUDA tensors, with TF32 off (tests/conftest.py);
without CUDA they are skipped with that reason.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

import mbdlfast.ops as ops
from comparisons import relative_error
from devices import DEVICES, TRITON_DEVICE
from mbdlfast.ops import dispatch, reference
from mbdlfast.ops.layouts import sampled_columns

BACKENDS = ["torch", "cpp", "cuda", "triton", "naive"]
DTYPES = [torch.complex64, torch.complex128]
TOLERANCE = {torch.complex64: 1e-5, torch.complex128: 1e-12}
# (batch, coils, height, width): odd and even sizes, batch > 1, coils from 1 to 20.
SHAPES = [(1, 1, 5, 7), (2, 3, 8, 6), (3, 20, 9, 11)]
MASK_KINDS = ["lines", "lines-per-sample", "2d", "2d-per-sample"]
OPS = ["coil_expand", "coil_reduce", "sense_forward", "sense_adjoint", "sense_normal", "dc_gradient_step",
       "soft_kspace_dc", "sense_forward_compact", "sense_adjoint_compact"]


def _lines(batch: int, width: int, per_sample: bool) -> torch.Tensor:
    """Every third column and the centre; per sample, rolled by the sample index (equal counts)."""
    first = torch.zeros(width, dtype=torch.bool)
    first[::3] = True
    first[width // 2] = True
    if not per_sample:
        return first
    return torch.stack([torch.roll(first, b) for b in range(batch)])


def _pattern(batch: int, height: int, width: int, per_sample: bool, generator) -> torch.Tensor:
    """A random 2D pattern (about half the samples) with the centre kept."""
    shape = (batch, height, width) if per_sample else (height, width)
    mask = torch.rand(shape, generator=generator) < 0.5
    mask[..., height // 2, width // 2] = True
    return mask


def problem(op: str, shape, mask_kind: str, dtype, device: str, seed: int = 0) -> dict:
    """Arguments of ``op`` (as the public function takes them) in ``dtype`` on ``device``, and the
    same arguments in complex128 on the CPU for the reference."""
    batch, coils, height, width = shape
    generator = torch.Generator().manual_seed(seed)

    def randn(*size):
        return torch.randn(*size, dtype=torch.complex128, generator=generator)

    per_sample = mask_kind.endswith("per-sample")
    is_2d = mask_kind.startswith("2d")
    mask = _pattern(batch, height, width, per_sample, generator) if is_2d else _lines(batch, width, per_sample)
    maps = randn(*((batch,) * per_sample), coils, height, width)
    x, k = randn(batch, height, width), randn(batch, coils, height, width)
    columns = sampled_columns(mask) if not is_2d else None
    args = {
        "coil_expand": (x, maps),
        "coil_reduce": (k, maps),
        "sense_forward": (x, maps, mask, is_2d),
        "sense_adjoint": (k, maps, mask, is_2d),
        "sense_normal": (x, maps, mask, is_2d),
        "dc_gradient_step": (x, maps, mask, randn(batch, height, width), 0.4, is_2d),
        "soft_kspace_dc": (k, randn(batch, coils, height, width), mask, 0.7, is_2d),
        "sense_forward_compact": (x, maps, columns),
        "sense_adjoint_compact": (None if columns is None else randn(batch, coils, height, columns.shape[-1]),
                                  maps, columns),
    }[op]

    def convert(value):
        if not isinstance(value, torch.Tensor):
            return value
        return value.to(device=device, dtype=dtype) if value.is_complex() else value.to(device)

    return {"exact": args, "args": tuple(convert(v) for v in args)}


def _applies(op: str, mask_kind: str) -> bool:
    """Compact k-space keeps columns: only line masks; the coil products take no mask (one kind)."""
    if op.endswith("_compact"):
        return mask_kind.startswith("lines")
    if op in ("coil_expand", "coil_reduce"):
        return mask_kind in ("lines", "lines-per-sample")
    return True


def _decision(op: str, args: tuple, backend: str):
    """The dispatcher's decision for a forced backend, or the text of its refusal."""
    try:
        return ops.explain(op, *args, backend=backend), None
    except RuntimeError as err:
        return None, str(err)


CASES = [(op, kind) for op in OPS for kind in MASK_KINDS if _applies(op, kind)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["c64", "c128"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op, mask_kind", CASES, ids=[f"{op}-{kind}" for op, kind in CASES])
def test_every_backend_matches_the_reference_or_says_why_not(op, mask_kind, backend, dtype, device):
    for shape in SHAPES:
        case = problem(op, shape, mask_kind, dtype, device)
        decision, refusal = _decision(op, case["args"], backend)
        if decision is None:
            assert f"backend {backend!r} cannot run {op}" in refusal and ":" in refusal
            continue
        assert decision.backend == backend
        result = getattr(ops, op)(*case["args"], backend=backend)
        assert result.dtype == dtype and result.device.type == device
        expected = getattr(reference, op)(*case["exact"])
        assert relative_error(result.cpu(), expected) <= TOLERANCE[dtype], (op, backend, shape)


def _runnable(op: str, args: tuple, backend: str) -> bool:
    return _decision(op, args, backend)[0] is not None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_kind", ["lines", "lines-per-sample", "2d"])
def test_forward_and_adjoint_are_adjoint(mask_kind, backend, device):
    """<A x, y> = <x, A^H y> for full k-space, compact k-space and the coil products."""
    dtype = torch.complex128 if _runnable("sense_forward", problem("sense_forward", SHAPES[1], mask_kind,
                                                                   torch.complex128, device)["args"], backend) \
        else torch.complex64
    pairs = [("sense_forward", "sense_adjoint"), ("coil_expand", "coil_reduce")]
    if mask_kind.startswith("lines"):
        pairs.append(("sense_forward_compact", "sense_adjoint_compact"))
    ran = 0
    for forward, adjoint in pairs:
        if forward == "coil_expand" and mask_kind != "lines":
            continue
        fwd = problem(forward, SHAPES[2], mask_kind, dtype, device, seed=1)["args"]
        adj = (problem(adjoint, SHAPES[2], mask_kind, dtype, device, seed=2)["args"][0], *fwd[1:])
        if not (_runnable(forward, fwd, backend) and _runnable(adjoint, adj, backend)):
            continue
        x, y = fwd[0], adj[0]
        lhs = torch.vdot(getattr(ops, forward)(*fwd, backend=backend).flatten(), y.flatten())
        rhs = torch.vdot(x.flatten(), getattr(ops, adjoint)(*adj, backend=backend).flatten())
        assert abs(lhs - rhs) <= TOLERANCE[dtype] * abs(lhs), (forward, backend)
        ran += 1
    if ran == 0:
        pytest.skip(f"{backend} runs none of these pairs on {device} here")


# Arguments that carry a gradient, per op (maps included: networks may estimate them).
DIFFERENTIABLE = {
    "coil_expand": (0, 1), "coil_reduce": (0, 1), "sense_forward": (0, 1), "sense_adjoint": (0, 1),
    "sense_normal": (0, 1), "dc_gradient_step": (0, 1, 3, 4), "soft_kspace_dc": (0, 1, 3),
    "sense_forward_compact": (0, 1), "sense_adjoint_compact": (0, 1),
}


def _with_tensor_scalars(op: str, args: tuple) -> tuple:
    """γ and λ as one-element real tensors of the data's precision (so that they carry a gradient)."""
    args = list(args)
    for index in DIFFERENTIABLE[op]:
        if isinstance(args[index], float):
            real = args[0].real.dtype
            args[index] = torch.tensor(args[index], dtype=real, device=args[0].device)
    return tuple(args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "cpp", "cuda", "triton"])
@pytest.mark.parametrize("op", OPS)
def test_gradients_of_every_argument_match_the_reference(op, backend, device):
    """The one autograd formula of each op, run through ``backend``'s kernels, against autograd
    through the reference: for the data, the maps, A^H y, γ and λ (double precision where the
    backend takes it, gradcheck included; else complex64 against the float64 reference)."""
    mask_kind = "lines-per-sample"
    for dtype in (torch.complex128, torch.complex64):
        case = problem(op, SHAPES[1], mask_kind, dtype, device, seed=3)
        if _runnable(op, case["args"], backend):
            break
    else:
        pytest.skip(f"{backend} takes no {op} inputs on {device} here")
    args = _with_tensor_scalars(op, case["args"])
    exact = _with_tensor_scalars(op, case["exact"])
    leaves = DIFFERENTIABLE[op]
    inputs = [a.detach().clone().requires_grad_(True) if i in leaves else a for i, a in enumerate(args)]
    exact_inputs = [a.detach().clone().requires_grad_(True) if i in leaves else a for i, a in enumerate(exact)]
    output = getattr(ops, op)(*inputs, backend=backend)
    expected = getattr(reference, op)(*exact_inputs)
    cotangent = torch.randn(expected.shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    grads = torch.autograd.grad(output, [inputs[i] for i in leaves], cotangent.to(device=device, dtype=output.dtype))
    expected_grads = torch.autograd.grad(expected, [exact_inputs[i] for i in leaves], cotangent)
    for index, grad, want in zip(leaves, grads, expected_grads):
        assert grad.shape == inputs[index].shape, (op, index)
        assert relative_error(grad.cpu(), want) <= 10 * TOLERANCE[dtype], (op, backend, index)
    if dtype == torch.complex128 and device == "cpu":
        small = problem(op, (2, 2, 5, 4), mask_kind, dtype, device, seed=5)["args"]
        small = _with_tensor_scalars(op, small)
        leaves_small = [a.detach().clone().requires_grad_(True) if i in leaves else a for i, a in enumerate(small)]

        def fn(*values):
            full = list(leaves_small)
            for i, value in zip(leaves, values):
                full[i] = value
            return getattr(ops, op)(*full, backend=backend)

        assert torch.autograd.gradcheck(fn, [leaves_small[i] for i in leaves])


# On CPU through torch; on CUDA through each backend that may run there.
OPCHECK_RUNS = [pytest.param("cpu", "torch", id="cpu-torch")] + [
    pytest.param("cuda", backend, id=f"cuda-{backend}", marks=pytest.mark.gpu)
    for backend in ("torch", "triton", "cuda")]


@pytest.mark.parametrize("device, backend", OPCHECK_RUNS)
@pytest.mark.parametrize("op", OPS)
def test_opcheck_of_the_public_ops(op, device, backend):
    """Schema, fake kernel and autograd registration of each public op agree (torch.library.opcheck),
    in double precision where the backend takes it."""
    from mbdlfast.ops import definitions

    for dtype in (torch.complex128, torch.complex64):
        case = problem(op, SHAPES[1], "lines-per-sample", dtype, device, seed=6)
        if _runnable(op, case["args"], backend):
            break
    else:
        pytest.skip(f"{backend} takes no {op} inputs on {device} here")
    args = definitions._PREPARE[op](*_with_tensor_scalars(op, case["args"]))
    inputs = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_complex() else a
              for a in args]
    torch.library.opcheck(getattr(torch.ops.mbdlfast, op).default, (*inputs, backend))


# ------------------------------------------------------------------------------- what auto picks


def test_auto_takes_the_first_backend_that_can_run_and_names_the_skipped():
    case = problem("sense_normal", SHAPES[1], "lines", torch.complex64, "cpu")["args"]
    first = "cpp" if not dispatch.refusals("cpp", dispatch.Case("sense_normal", torch.device("cpu"),
                                                                torch.complex64, "1d")) else "torch"
    assert ops.explain("sense_normal", *case).backend == first
    two_d = problem("sense_normal", SHAPES[1], "2d", torch.complex64, "cpu")["args"]
    decision = ops.explain("sense_normal", *two_d)
    assert decision.backend == "torch"
    if first == "cpp":
        assert decision.skipped == {"cpp": ["takes 1d masks, not a 2d mask"]}
        assert "skipped cpp: takes 1d masks, not a 2d mask" in str(decision)


def test_auto_never_picks_the_naive_baseline():
    for op, kind in CASES:
        for dtype in DTYPES:
            args = problem(op, SHAPES[0], kind, dtype, "cpu")["args"]
            assert ops.explain(op, *args).backend != "naive"
            assert ops.explain(op, *args, backend="naive").backend == "naive"


def test_a_forced_backend_that_cannot_take_the_inputs_raises_with_its_reasons():
    args = problem("dc_gradient_step", SHAPES[1], "2d", torch.complex64, "cpu")["args"]
    with pytest.raises(RuntimeError, match="backend 'cuda' cannot run dc_gradient_step .*cuda runs on CUDA tensors"):
        ops.dc_gradient_step(*args, backend="cuda")
    complex_gamma = (*args[:4], 0.3 + 0.1j, args[5])
    assert ops.explain("dc_gradient_step", *complex_gamma).backend == "torch"
    if dispatch.backend_unavailable_reason("cpp", torch.device("cpu")) is None:
        with pytest.raises(RuntimeError, match="takes 1d masks, not a 2d mask; takes a real scalar, not a complex one"):
            ops.dc_gradient_step(*complex_gamma, backend="cpp")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_declines_double_precision_and_2d_masks():
    args = problem("sense_normal", SHAPES[1], "2d", torch.complex128, TRITON_DEVICE)["args"]
    decision, refusal = _decision("sense_normal", args, "triton")
    assert decision is None
    assert "takes complex64, not complex128" in refusal and "takes 1d masks, not a 2d mask" in refusal


def test_use_backend_and_the_environment_force_a_backend(monkeypatch):
    args = problem("sense_forward", SHAPES[0], "lines", torch.complex64, "cpu")["args"]
    with ops.use_backend("naive"):
        assert ops.explain("sense_forward", *args).backend == "naive"
    monkeypatch.setenv("MBDLFAST_BACKEND", "torch")
    assert ops.explain("sense_forward", *args).backend == "torch"
    monkeypatch.setenv("MBDLFAST_BACKEND", "fastest")
    with pytest.raises(ValueError, match="backend: expected one of"):
        ops.sense_forward(*args)
