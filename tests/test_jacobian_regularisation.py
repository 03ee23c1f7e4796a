"""Jacobian regularisation of a DEQ: the Hutchinson estimate, the DEQ's penalty and its training term."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from test_train import run, tiny_config
from mbdlfast.deq import jacobian_frobenius
from mbdlfast.training.config import validate
from mbdlfast.training.data import line_mask
from mbdlfast.training.registry import build_model
from mbdlfast.physics.sense import SenseOperator


def _exact_mean_square(matrix: torch.Tensor) -> float:
    return float(matrix.square().sum() / matrix.shape[1])


def test_estimate_matches_the_exact_jacobian_norm_of_real_and_real_linear_complex_maps():
    torch.manual_seed(0)
    real = torch.randn(12, 12, dtype=torch.float64) / 4
    estimate = jacobian_frobenius(lambda z: z @ real.T, torch.randn(3, 12, dtype=torch.float64), samples=4000)
    assert estimate.item() == pytest.approx(_exact_mean_square(real), rel=0.05)

    # A real-linear map of complex vectors (it mixes z and conj z): its 2n x 2n real Jacobian.
    block = torch.randn(2 * 6, 2 * 6, dtype=torch.float64) / 3

    def real_linear(z: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([z.real, z.imag], dim=-1) @ block.T
        return torch.complex(stacked[..., :6], stacked[..., 6:])

    estimate = jacobian_frobenius(real_linear, torch.randn(2, 6, dtype=torch.complex128), samples=4000)
    assert estimate.item() == pytest.approx(_exact_mean_square(block), rel=0.05)


def test_estimate_is_differentiable_in_the_parameters():
    weight = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
    z = torch.randn(50, dtype=torch.complex128)
    torch.manual_seed(3)
    estimate = jacobian_frobenius(lambda x: weight * x, z)
    (gradient,) = torch.autograd.grad(estimate, weight)
    # The probes fixed, the estimate is c·w²: its derivative is 2·estimate / w.
    assert gradient.item() == pytest.approx(2 * estimate.item() / weight.item(), rel=1e-10)
    assert not z.requires_grad


def test_bad_arguments():
    with pytest.raises(ValueError, match="samples"):
        jacobian_frobenius(lambda z: z, torch.ones(3), samples=0)
    with pytest.raises(ValueError, match="f: expected an output of the input's shape"):
        jacobian_frobenius(lambda z: z.sum(), torch.ones(3))


def test_deq_penalty_reaches_the_denoiser_and_moves_every_weight():
    torch.manual_seed(0)
    model, _ = build_model("deq", {"prior_kwargs": {"n_resblocks": 1, "n_feats": 8}})
    maps = torch.randn(1, 2, 16, 16, dtype=torch.complex64)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    physics = SenseOperator(maps, line_mask("equispaced", 16, 4, 0.2, seed=0)[None])
    kspace = physics.A(torch.randn(1, 16, 16, dtype=torch.complex64))
    penalty = model.jacobian_penalty(physics.A_adjoint(kspace), kspace, physics, samples=2)
    assert penalty.dim() == 0 and torch.isfinite(penalty) and penalty > 0
    penalty.backward()
    # every weight moves it (a bias cannot: it shifts T without changing its Jacobian)
    assert all(p.grad is not None for name, p in model.denoiser.named_parameters() if name.endswith("weight"))
    assert model.gamma.grad is not None and model.alpha.grad is not None


def test_training_adds_the_term_and_it_changes_the_updates(tmp_path):
    plain = run(tiny_config(tmp_path / "plain"))
    regularised = run(tiny_config(tmp_path / "jacobian", **{"train.jacobian_weight": 10.0}))
    assert "jacobian" in regularised.objective.terms and "jacobian" not in plain.objective.terms
    assert regularised.history[0]["loss"] > plain.history[0]["loss"]  # the same first batch and init, plus μ·‖J‖²
    state, other = plain.model.state_dict(), regularised.model.state_dict()
    assert any(not torch.equal(state[name], other[name]) for name in state)


@pytest.mark.parametrize("overrides,match", [
    ({"train.jacobian_weight": -1.0}, "train.jacobian_weight: expected >= 0"),
    ({"train.jacobian_samples": 0}, "train.jacobian_samples"),
    ({"model.name": "modl", "model.kwargs": {}, "train.jacobian_weight": 0.1}, "deq model only"),
])
def test_config_errors_name_the_setting(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        validate(tiny_config(tmp_path, **overrides))
