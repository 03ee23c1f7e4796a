"""evaluation.equilibrium_check: a DEQ solved to tolerance against the same DEQ stopped early."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.evaluation import equilibrium_check, prepare_slices
from mbdlfast.models import DEQ
from mbdlfast.training.data import line_mask


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.factor * image


@pytest.fixture(scope="module")
def slices():
    sample = SyntheticMulticoil(24, 24, 3, seed=2).batch(range(2))
    return prepare_slices(sample["kspace"], line_mask("equispaced", 24, 2, 0.25, seed=0), fully_sampled=True,
                          maps=sample["maps"], truth=sample["target"])


def test_a_contraction_holds_and_the_model_is_unchanged(slices):
    model = DEQ(Scale(0.5), alpha=0.2, gamma=1.0, solver_kwargs={"tol": 1e-3, "max_iter": 7})
    settings = dict(model.solver_kwargs)
    check = equilibrium_check(model, slices, tol=1e-4, max_iter=100, early_iterations=3)
    assert check.converged and check.holds
    assert all(status == "converged" for status in check.report.status) and max(check.report.iterations) <= 100
    assert len(check.psnr_early) == len(check.psnr_converged) == 2
    assert model.solver_kwargs == settings and settings["tol"] == 1e-3  # the model is not changed
    record = check.as_dict()
    assert record["holds"] is True and record["solver"]["tol"] == 1e-4 and record["early_iterations"] == 3


def test_a_map_without_a_reachable_fixed_point_fails(slices):
    model = DEQ(Scale(3.0), alpha=0.5, gamma=1.0, solver="fixed_point")  # T(z) ~ 2z: no solve converges
    check = equilibrium_check(model, slices, tol=1e-4, max_iter=30, early_iterations=5)
    assert not check.converged and not check.holds


def test_bad_arguments(slices):
    unreferenced = prepare_slices(slices.kspace, slices.mask[0], fully_sampled=False, maps=slices.maps,
                                  normalise=False)
    with pytest.raises(ValueError, match="slices: the equilibrium check"):
        equilibrium_check(DEQ(Scale(0.5)), unreferenced)
    with pytest.raises(TypeError, match="model: expected a DEQ"):
        equilibrium_check(Scale(0.5), slices)
