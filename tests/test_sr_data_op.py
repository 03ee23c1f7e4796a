"""The dispatched super-resolution data step ``mbdlfast.ops.sr_data_solve``: every backend against
the exact float64 solve (BlurDownsample.data_step, itself checked against the dense normal equations
in test_blur.py), over scales 1-4, odd sizes, batch > 1, channels 1-3 and shared or per-sample
kernels; its gradients (gradcheck of torch and C++, the Triton backend's against torch's), opcheck, what each
backend declares, and the errors naming the argument."""
from __future__ import annotations

import pytest
import torch

import mbdlfast.ops as ops
from comparisons import relative_error
from devices import DEVICES, TRITON_DEVICE
from mbdlfast._extension import extension_status
from mbdlfast.ops import definitions
from mbdlfast.physics import BlurDownsample
from mbdlfast.physics.blur import centred_kernel_image

# (scale, height, width, batch, channels, per-sample kernels)
CASES = [(1, 7, 5, 2, 1, False), (2, 12, 10, 2, 3, True), (3, 15, 9, 1, 1, False), (4, 16, 20, 3, 2, True),
         (2, 6, 14, 1, 3, False)]
BACKENDS = ["torch", "triton", "cpp", "cuda", "naive"]


def problem(case, dtype=torch.complex128, device="cpu", seed=0):
    """Public arguments of the op and the exact data step it must reproduce (float64, CPU)."""
    scale, height, width, batch, channels, per_sample = case
    generator = torch.Generator().manual_seed(seed)
    kernel = torch.rand(*((batch,) * per_sample), 5, 3, dtype=torch.float64, generator=generator)
    kernel = kernel / kernel.sum(dim=(-2, -1), keepdim=True)  # a blur: |K| <= 1, as the solve's conditioning assumes
    physics = BlurDownsample(kernel, scale)
    z = torch.randn(batch, channels, height, width, dtype=torch.float64, generator=generator)
    y = torch.randn(batch, channels, height // scale, width // scale, dtype=torch.float64, generator=generator)
    alpha = torch.rand(batch, dtype=torch.float64, generator=generator) + 0.05
    otf = torch.fft.fft2(centred_kernel_image(kernel, height, width))
    args = (torch.fft.fft2(z), torch.fft.fft2(physics.A_adjoint(y)), otf, alpha, scale)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    moved = tuple(a.to(device=device, dtype=dtype if a.is_complex() else real) if isinstance(a, torch.Tensor) else a
                  for a in args)
    return moved, physics.data_step(z, y, alpha)


def _decision(args, backend):
    try:
        return ops.explain("sr_data_solve", *args, backend=backend), None
    except RuntimeError as err:
        return None, str(err)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["c64", "c128"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_matches_the_exact_solve_or_says_why_not(backend, dtype, device):
    if backend == "triton" and device != TRITON_DEVICE:
        pytest.skip(f"Triton's kernels are tested on {TRITON_DEVICE} tensors here")
    for case in CASES:
        args, expected = problem(case, dtype, device)
        decision, refusal = _decision(args, backend)
        if decision is None:
            assert f"backend {backend!r} cannot run sr_data_solve" in refusal
            continue
        spectrum = ops.sr_data_solve(*args, backend=backend)
        assert spectrum.dtype == dtype and spectrum.device.type == device
        image = torch.fft.ifft2(spectrum).real.double().cpu()
        assert relative_error(image, expected) <= (1e-5 if dtype == torch.complex64 else 1e-12), (backend, case)


def test_the_backends_that_run_it_here():
    args, _ = problem(CASES[1], torch.complex64)
    built, _ = extension_status()
    assert ops.explain("sr_data_solve", *args).backend == ("cpp" if built else "torch")  # auto on CPU: the C++ kernel
    wide, _ = problem(CASES[1], torch.complex128, TRITON_DEVICE)
    with pytest.raises(RuntimeError, match="backend 'triton' cannot run sr_data_solve.*takes complex64"):
        ops.explain("sr_data_solve", *wide, backend="triton")
    with pytest.raises(RuntimeError, match="sr_data_solve has no cuda kernel"):
        ops.explain("sr_data_solve", *args, backend="cuda")


def _needs(backend):
    if backend == "cpp" and not extension_status()[0]:
        pytest.skip(f"the C++ extension is not built: {extension_status()[1]}")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_gradients_in_z_measurements_and_alpha(backend):
    _needs(backend)
    args, _ = problem(CASES[1])
    fz, fay, otf, alpha, scale = args
    inputs = (fz.requires_grad_(), fay.requires_grad_(), alpha.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b, c: ops.sr_data_solve(a, b, otf, c, scale, backend=backend), inputs)


def test_the_triton_backward_matches_torch():
    args, _ = problem(CASES[3], torch.complex64, TRITON_DEVICE)
    fz, fay, otf, alpha, scale = args
    grads = {}
    for backend in ("torch", "triton"):
        leaves = [fz.clone().requires_grad_(), fay.clone().requires_grad_(), alpha.clone().requires_grad_()]
        out = ops.sr_data_solve(leaves[0], leaves[1], otf, leaves[2], scale, backend=backend)
        torch.fft.ifft2(out).real.square().sum().backward()
        grads[backend] = [leaf.grad for leaf in leaves]
    for mine, theirs in zip(grads["triton"], grads["torch"]):
        assert relative_error(mine.cpu(), theirs.cpu()) <= 1e-5


def test_no_gradient_for_the_kernel_is_an_error_not_a_silent_zero():
    args, _ = problem(CASES[0])
    fz, fay, otf, alpha, scale = args
    out = ops.sr_data_solve(fz, fay, otf.clone().requires_grad_(), alpha, scale)
    with pytest.raises(RuntimeError, match="otf: sr_data_solve has no gradient"):
        out.abs().sum().backward()


@pytest.mark.parametrize("backend", ["torch", "triton", "cpp"])
def test_opcheck(backend):
    _needs(backend)
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    dtype = torch.complex64 if backend == "triton" else torch.complex128
    args, _ = problem(CASES[1], dtype, device, seed=3)
    fz, fay, otf, alpha, scale = definitions._PREPARE["sr_data_solve"](*args)
    inputs = (fz.requires_grad_(), fay.requires_grad_(), otf, alpha.clone().requires_grad_(), scale, backend)
    torch.library.opcheck(torch.ops.mbdlfast.sr_data_solve.default, inputs)


def test_bad_arguments_are_named():
    (fz, fay, otf, alpha, scale), _ = problem(CASES[1])
    with pytest.raises(TypeError, match="fz: expected a complex tensor"):
        ops.sr_data_solve(fz.real, fay, otf, alpha, scale)
    with pytest.raises(ValueError, match="fay: expected shape"):
        ops.sr_data_solve(fz, fay[:, :1], otf, alpha, scale)
    with pytest.raises(ValueError, match="otf: expected \\(12,10\\) or \\(1\\|2,12,10\\)"):
        ops.sr_data_solve(fz, fay, otf[..., :5], alpha, scale)
    with pytest.raises(ValueError, match="scale: 4 does not divide the 12x10 spectrum"):
        ops.sr_data_solve(fz, fay, otf, alpha, 4)
    with pytest.raises(ValueError, match="alpha: expected a number or a real tensor of 1 or 2 values"):
        ops.sr_data_solve(fz, fay, otf, torch.ones(3, dtype=torch.float64), scale)
    with pytest.raises(TypeError, match="scale: expected an integer"):
        ops.sr_data_solve(fz, fay, otf, alpha, 2.0)


def test_the_physics_data_term_runs_on_the_forced_backend():
    """BlurDownsample's data steps go through the dispatched op: forcing Triton (interpreted on CPU here)
    gives the exact solve in float32."""
    kernel = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(1))
    kernel = kernel / kernel.sum(dim=(-2, -1), keepdim=True)
    physics = BlurDownsample(kernel.to(TRITON_DEVICE), 3)
    z = torch.rand(2, 3, 18, 12, device=TRITON_DEVICE)
    y = physics.A(torch.rand(2, 3, 18, 12, device=TRITON_DEVICE))
    with ops.use_backend("triton"):
        stepped = physics.data_term(y).solve(z, torch.tensor([0.2, 0.5], device=TRITON_DEVICE))
    exact = BlurDownsample(kernel.double(), 3).data_step(z.double().cpu(), y.double().cpu(), torch.tensor([0.2, 0.5]))
    assert relative_error(stepped.double().cpu(), exact) <= 1e-5
