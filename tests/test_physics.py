"""The physics objects as modules: one adjointness suite over every LinearPhysics, A_dagger, composition,
buffers and .to(), update() without re-validation, operators without maps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mbdlfast.physics.blur import BlurDownsample
from mbdlfast.physics.linalg import adjointness_error, cg_sense
from mbdlfast.physics.linear import ComposedPhysics, LinearPhysics
from mbdlfast.physics.sense import SenseOperator

C64, C128 = torch.complex64, torch.complex128
B, C, H, W = 2, 3, 10, 9


def crandn(*shape, dtype=C128):
    return torch.randn(*shape, dtype=dtype)


def lines(batch=None):
    mask = torch.zeros(*((batch,) if batch else ()), W, dtype=torch.bool)
    mask[..., ::3] = True
    mask[..., W // 2] = True
    return mask


def pattern():
    mask = torch.rand(H, W) < 0.4
    mask[0, 0], mask[1, 0] = True, False
    return mask


class PhaseModulation(LinearPhysics):
    """An image-domain unitary operator x ↦ e^{iφ}·x, to compose with SENSE."""

    def __init__(self, phase: torch.Tensor):
        super().__init__()
        self.register_buffer("phase", torch.exp(1j * phase))

    def A(self, x):
        return self.phase * x

    def A_adjoint(self, y):
        return self.phase.conj() * y


def operators() -> dict[str, LinearPhysics]:
    torch.manual_seed(0)
    maps = crandn(C, H, W)
    return {
        "sense 1D": SenseOperator(maps, lines()),
        "sense 1D per-sample": SenseOperator(crandn(B, C, H, W), lines(B)),
        "sense 2D": SenseOperator(maps, pattern()),
        "sense compact": SenseOperator(maps, lines(), compact=True),
        "sense 1 coil": SenseOperator(crandn(1, H, W), lines()),
        "sense after with_maps": SenseOperator(None, lines(), kspace_shape=(C, H, W)).with_maps(maps),
        "composition": SenseOperator(maps, pattern()) @ PhaseModulation(torch.rand(H, W, dtype=torch.float64)),
        "blur-downsample x2": BlurDownsample(torch.rand(5, 3, dtype=torch.float64), 2),
        "blur-downsample x3 per-sample": BlurDownsample(torch.rand(B, 7, 5, dtype=torch.float64), 3),
        "blur only": BlurDownsample(torch.rand(3, 3, dtype=torch.float64), 1),
    }


def example_input(name: str) -> torch.Tensor:
    """An input of operator ``name``: complex (B,H,W) images for SENSE, real (B,3,12,18) for blur."""
    if name.startswith("blur"):
        return torch.randn(B, 3, 12, 18, dtype=torch.float64)
    return crandn(B, H, W)


@pytest.mark.parametrize("name", list(operators()))
def test_every_physics_is_adjoint_and_its_normal_map_is_AHA(name):
    op = operators()[name]
    x = example_input(name)
    y = torch.randn_like(op.A(x))
    assert adjointness_error(op.A, op.A_adjoint, x, y) <= 1e-12
    torch.testing.assert_close(op.A_adjoint_A(x), op.A_adjoint(op.A(x)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op(x), op.A(x))


@pytest.mark.parametrize("name", ["sense 1D", "sense 2D", "composition"])
def test_A_dagger_solves_the_regularised_normal_equations(name):
    op = operators()[name]
    y = op.A(crandn(B, H, W))
    x = op.A_dagger(y, lam=1e-2, max_iter=200, tol=1e-12)
    residual = op.A_adjoint_A(x) + 1e-2 * x - op.A_adjoint(y)
    assert float(residual.abs().max()) <= 1e-9 * float(op.A_adjoint(y).abs().max())
    if isinstance(op, SenseOperator):
        torch.testing.assert_close(x, cg_sense(op, y, lam=1e-2, max_iter=200, tol=1e-12)[0])


def test_composition_applies_inner_first():
    sense = operators()["sense 2D"]
    phase = PhaseModulation(torch.rand(H, W, dtype=torch.float64))
    composed = sense @ phase
    assert isinstance(composed, ComposedPhysics)
    x = crandn(B, H, W)
    torch.testing.assert_close(composed.A(x), sense.A(phase.A(x)))
    with pytest.raises(TypeError):
        sense @ torch.ones(1)


def test_physics_is_a_module_whose_maps_and_mask_are_buffers_and_not_saved():
    op = SenseOperator(crandn(C, H, W, dtype=C64), lines(), compact=True)
    assert isinstance(op, nn.Module)
    assert {name for name, _ in op.named_buffers()} == {"maps", "mask", "columns"}
    assert op.state_dict() == {}  # an input of a reconstruction, never part of a checkpoint
    moved = op.to("meta")
    assert moved is op and op.maps.device.type == op.mask.device.type == op.columns.device.type == "meta"


def test_update_swaps_data_of_the_same_layout_without_reading_it():
    maps = crandn(B, C, H, W)
    op = SenseOperator(maps, lines(B))
    x = crandn(B, H, W)
    new_maps, new_mask = crandn(B, C, H, W), lines(B).roll(1, dims=-1)
    expected = SenseOperator(new_maps, new_mask).A_adjoint_A(x)
    assert op.update(maps=new_maps, mask=new_mask) is op
    torch.testing.assert_close(op.A_adjoint_A(x), expected)
    # metadata only: a value the constructor would refuse passes (validation is at the edge)
    op.update(maps=torch.full_like(new_maps, float("nan")))
    assert torch.isnan(op.maps).all()


@pytest.mark.parametrize("kwargs,pattern", [
    ({"maps": crandn(B, C, H, W + 1)}, r"maps: update\(\) takes the current layout \(2, 3, 10, 9\)"),
    ({"maps": crandn(B, C, H, W, dtype=C64)}, "maps: update.*complex128.*got.*complex64"),
    ({"mask": torch.ones(B + 1, W)}, r"mask: update\(\) takes the current layout \(2, 9\)"),
    ({"mask": [1, 0]}, "mask: expected a torch.Tensor"),
])
def test_update_refuses_another_layout(kwargs, pattern):
    op = SenseOperator(crandn(B, C, H, W), lines(B))
    with pytest.raises((ValueError, TypeError), match=pattern):
        op.update(**kwargs)


def test_update_of_a_compact_operator_recomputes_its_columns():
    op = SenseOperator(crandn(C, H, W), lines(), compact=True)
    shifted = lines().roll(1)
    op.update(mask=shifted)
    torch.testing.assert_close(op.columns, SenseOperator(crandn(C, H, W), shifted, compact=True).columns)


def test_an_operator_without_maps_describes_the_sampling_only():
    op = SenseOperator(None, pattern(), kspace_shape=(C, H, W))
    assert op.maps is None and op.is_2d and op.num_coils == C and op.image_shape == (H, W)
    with pytest.raises(ValueError, match="maps: this SenseOperator describes only the sampling"):
        op.A(crandn(B, H, W, dtype=C64))
    with pytest.raises(ValueError, match="maps: this operator has none to update"):
        op.update(maps=crandn(C, H, W))
    with pytest.raises(ValueError, match=r"kspace_shape: an operator without maps needs \(C,H,W\)"):
        SenseOperator(None, pattern())
    with pytest.raises(ValueError, match="kspace_shape: only for an operator without maps"):
        SenseOperator(crandn(C, H, W), pattern(), kspace_shape=(C, H, W))


def test_with_maps_checks_metadata_against_the_operator():
    op = SenseOperator(None, lines(B), kspace_shape=(C, H, W))
    with pytest.raises(ValueError, match="maps: expected shape"):
        op.with_maps(crandn(B, C + 1, H, W))
    with pytest.raises(ValueError, match="maps: batch size 3 does not match the operator's 2"):
        op.with_maps(crandn(3, C, H, W))
    full = op.with_maps(crandn(B, C, H, W))
    assert full.mask is op.mask and full.maps.shape == (B, C, H, W)


def test_fastmri_line_mask_layout_is_accepted():
    maps, mask = crandn(B, C, H, W), lines(B)
    fastmri = mask.reshape(B, 1, 1, W, 1).float()
    x = crandn(B, H, W)
    torch.testing.assert_close(SenseOperator(maps, fastmri).A(x), SenseOperator(maps, mask).A(x))
    shared = SenseOperator(maps, lines().reshape(1, 1, 1, W, 1))
    assert shared.mask.shape == (W,)


def test_varnet_cascade_transforms_are_adjoint():
    op = operators()["sense 2D"]
    x, k = crandn(B, H, W), crandn(B, C, H, W)
    assert adjointness_error(op.expand, op.reduce, x, k) <= 1e-12
    lam = torch.tensor(0.3, dtype=torch.float64)
    y = crandn(B, C, H, W)
    torch.testing.assert_close(op.soft_dc(k, y, lam), k - lam * op.mask * (k - y))
