"""Optimized inference wrapper: same outputs as the plain model, settings checks, the precision guard."""
from __future__ import annotations

import logging

import pytest
import torch

import mbdlfast.inference as inference
from mbdlfast.deq import anderson
from mbdlfast.deq.reference_anderson import reference_anderson
from mbdlfast.training.config import DataConfig
from mbdlfast.training.data import TrainingSlices, collate_batch
from mbdlfast.training.registry import build_model
from mbdlfast.inference import BASELINE, OPTIMIZED, InferenceSettings, optimize_for_inference

SMALL = {
    "deq": {"prior_kwargs": {"n_resblocks": 2, "n_feats": 16}},
    "modl": {"num_iter": 3, "cg_iter": 3, "prior_kwargs": {"channels": 16}},
    "varnet": {"num_cascades": 2, "chans": 8, "pools": 2},
    "e2e_varnet": {"num_cascades": 2, "chans": 8, "pools": 2, "sens_chans": 4, "sens_pools": 2},
}


@pytest.fixture(scope="module")
def batch():
    data = TrainingSlices(DataConfig(image_size=33, num_coils=3, num_slices=2), seed=0)  # odd size, batch 2
    return collate_batch([data[0], data[1]])


def _call_args(name, batch):
    """A model's forward arguments, the same for every family: (k-space, physics)."""
    return (batch.kspace, batch.physics())


def _model(name):
    torch.manual_seed(0)
    return build_model(name, SMALL[name])[0].eval()


def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_optimized_matches_plain_model(name, batch):
    model = _model(name)
    if name == "deq":  # the wrapper solves on the real view: compare converged fixed points
        model.solver_kwargs.update(tol=1e-6, max_iter=300)
    args = _call_args(name, batch)
    with torch.no_grad():
        expected = model(*args)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = optimize_for_inference(model, args, OPTIMIZED)
    out = wrapped(*args)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert _relative(out, expected) < (1e-4 if name == "deq" else 1e-5)
    assert wrapped.precision == "fp32"  # auto precision stays fp32 on CPU
    assert any(s.startswith("cuda_graphs") for s in wrapped.skipped)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is untouched


@pytest.mark.parametrize("name", ["modl", "varnet", "e2e_varnet"])
def test_baseline_matches_plain_model(name, batch):
    model = _model(name)
    args = _call_args(name, batch)
    with torch.no_grad():
        expected = model(*args)
    assert _relative(optimize_for_inference(model, args, BASELINE)(*args), expected) < 1e-5


def test_deq_baseline_and_optimized_reach_the_same_fixed_point(batch):
    model = _model("deq")
    args = _call_args("deq", batch)
    base = optimize_for_inference(model, args, BASELINE, tol=1e-6, max_iter=200)
    fast = optimize_for_inference(model, args, OPTIMIZED, tol=1e-6, max_iter=200)
    assert base.tol == fast.tol == 1e-6
    assert "reference_anderson" in " ".join(base.applied) and "solver=anderson" in " ".join(fast.applied)
    x_base, x_fast = base(*args), fast(*args)
    assert bool(base.last_info["converged"].all()) and bool(fast.last_info["converged"].all())
    assert _relative(x_base, x_fast) < 1e-4


def test_channels_last_does_not_change_results(batch):
    model = _model("deq")
    args = _call_args("deq", batch)
    plain = optimize_for_inference(model, args, OPTIMIZED, channels_last=False, tol=1e-5)
    nhwc = optimize_for_inference(model, args, OPTIMIZED, channels_last=True, tol=1e-5)
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert _relative(nhwc(*args), plain(*args)) < 1e-5


def test_deq_tolerance_override_is_used(batch):
    model = _model("deq")
    args = _call_args("deq", batch)
    loose = optimize_for_inference(model, args, tol=1e-2)
    tight = optimize_for_inference(model, args, tol=1e-6, max_iter=300)
    loose(*args)
    tight(*args)
    assert loose.tol == 1e-2 and tight.tol == 1e-6
    assert loose.last_info["nstep"] < tight.last_info["nstep"]
    assert model.solver_kwargs["tol"] == 1e-3  # the model's own setting is not changed


@pytest.mark.parametrize("field, value, error", [
    ("backend", "fastest", ValueError), ("precision", "fp16", ValueError), ("cuda_graphs", "yes", ValueError),
    ("solver", "broyden", ValueError), ("tol", 0.0, ValueError), ("tol", float("nan"), ValueError),
    ("max_iter", 0, ValueError), ("check_every", 0, ValueError),
    ("psnr_guard_db", -1.0, ValueError), ("channels_last", 1, TypeError),
])
def test_settings_validation(field, value, error):
    with pytest.raises(error, match=field):
        InferenceSettings(**{field: value})


def test_bad_arguments(batch):
    model = _model("deq")
    args = _call_args("deq", batch)
    with pytest.raises(TypeError, match="example_inputs"):
        optimize_for_inference(model, list(args))
    with pytest.raises(TypeError, match="settings"):
        optimize_for_inference(model, args, {"precision": "fp32"})
    with pytest.raises(TypeError, match="model"):
        optimize_for_inference(lambda *a: a, args)
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model, args, precision="int8")


def test_psnr_guard_falls_back_on_a_bad_low_precision_path(batch, monkeypatch, caplog):
    def noisy(net, x, dtype):  # a fake low-precision path that ruins the output
        out = net(x)
        return out + 0.3 * out.abs().amax() * torch.randn_like(out)

    monkeypatch.setattr(inference, "run_cnn_autocast", noisy)
    model = _model("modl")
    args = _call_args("modl", batch)
    with caplog.at_level(logging.WARNING, logger="mbdlfast.inference"):
        wrapped = optimize_for_inference(model, args, precision="bf16")
    assert wrapped.precision == "fp32"
    assert "precision=fp32 (fallback)" in wrapped.applied
    assert "rejected by the PSNR guard" in caplog.text
    with torch.no_grad():
        assert _relative(wrapped(*args), model(*args)) < 1e-5
    # with a target the guard measures the PSNR loss against it
    target = batch.target
    assert optimize_for_inference(model, args, precision="bf16", target=target).precision == "fp32"


def test_psnr_guard_keeps_an_accurate_low_precision_path(batch, monkeypatch):
    calls = []

    def exact(net, x, dtype):
        calls.append(dtype)
        return net(x)

    monkeypatch.setattr(inference, "run_cnn_autocast", exact)
    model = _model("modl")
    args = _call_args("modl", batch)
    wrapped = optimize_for_inference(model, args, precision="bf16")
    assert wrapped.precision == "bf16" and calls and calls[0] == torch.bfloat16
    calls.clear()
    wrapped(*args)
    assert calls  # the low-precision path is really used afterwards


def test_reference_anderson_solves_a_complex_contraction():
    gen = torch.Generator().manual_seed(0)
    n = 24
    jac = 0.8 * torch.linalg.qr(torch.randn(n, n, dtype=torch.complex128, generator=gen))[0]
    shift = torch.randn(3, n, dtype=torch.complex128, generator=gen)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.complex128) - jac, shift.T).T

    def f(z):
        return (z.to(torch.complex128) @ jac.T + shift).to(z.dtype)

    x0 = torch.zeros(3, n, dtype=torch.complex64)
    x_ref, info = reference_anderson(f, x0, tol=1e-6, max_iter=200)
    x_ours, _ = anderson(f, x0, tol=1e-6, max_iter=200)
    assert info["converged"].all() and x_ref.dtype == torch.complex64 and x_ref.shape == x0.shape
    assert _relative(x_ref.to(torch.complex128), exact) < 1e-5
    assert _relative(x_ours.to(torch.complex128), exact) < 1e-5
    with pytest.raises(ValueError, match="m"):
        reference_anderson(f, x0, m=1)


@pytest.mark.gpu
def test_cuda_pipeline_graphs_and_precision(batch):
    """VarNet on CUDA under backend auto: the precision guard, and the whole forward captured as one
    CUDA graph. The plain model's output is the fp32 reference: TF32 is off in tests (conftest), as in
    the wrapper's fp32 mode, so fp32 agrees to 1e-5."""
    device = torch.device("cuda")
    model = _model("varnet").to(device)
    args = _call_args("varnet", batch.to(device))
    with torch.no_grad():
        expected = model(*args)
    wrapped = optimize_for_inference(model, args, OPTIMIZED, target=batch.target.to(device))
    assert wrapped.precision in ("bf16", "tf32", "fp32")
    out = wrapped(*args)
    assert _relative(out, expected) < (1e-5 if wrapped.precision == "fp32" else 5e-2)
    fp32 = optimize_for_inference(model, args, OPTIMIZED, precision="fp32")
    assert OPTIMIZED.backend == "auto" and "backend=auto" in fp32.applied
    assert "cuda_graphs (whole forward)" in fp32.applied, fp32.skipped
    assert _relative(fp32(*args), expected) < 1e-4
