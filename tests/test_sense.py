"""SenseOperator: adjointness, an independent numpy reference, compact k-space, autograd, input checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mbdlfast.physics.linalg import adjointness_error
from mbdlfast.physics.sense import SenseOperator

C64, C128 = torch.complex64, torch.complex128


def crandn(*shape, dtype=C64):
    return torch.randn(*shape, dtype=dtype)


def line_mask(width, batch=None, fraction=0.4):
    """Random 1D mask with the same number of sampled columns in every batch entry."""
    count = max(1, int(fraction * width))
    rows = []
    for _ in range(batch or 1):
        row = torch.zeros(width, dtype=torch.bool)
        row[torch.randperm(width)[:count]] = True
        rows.append(row)
    return torch.stack(rows) if batch else rows[0]


def general_mask(height, width, batch=None):
    """Random 2D mask (Poisson-disc-like) with distinct rows, as float 0/1."""
    shape = (batch, height, width) if batch else (height, width)
    mask = (torch.rand(shape) < 0.35).float()
    mask[..., height // 2, width // 2] = 1.0
    mask[..., 0, 0], mask[..., 1, 0] = 1.0, 0.0  # rows differ, so it stays on the 2D path
    return mask


def numpy_forward(x, maps, mask2d):
    """Independent centred orthonormal SENSE forward in numpy: M·fftshift(fft2(ifftshift(S·x)))."""
    coil_images = maps * x[:, None]
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return mask2d[:, None] * k


def numpy_adjoint(y, maps, mask2d):
    k = mask2d[:, None] * y
    coil_images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return (np.conj(maps) * coil_images).sum(axis=1)


def mask_as_numpy_2d(mask, batch, height):
    """Any supported mask layout as a (B,H,W) float numpy array."""
    m = mask.double().numpy()
    if m.ndim == 1 or (m.ndim == 2 and m.shape[0] == batch and m.shape[0] != height):
        m = np.broadcast_to(m[..., None, :], (*m.shape[:-1], height, m.shape[-1]))
    return np.broadcast_to(m, (batch, height, m.shape[-1]))


# ---------------------------------------------------------------------------------------------
# Adjointness and consistency
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(16, 12), (123, 97), (17, 9)])
@pytest.mark.parametrize("coils", [1, 4, 15])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["1d", "2d", "compact"])
def test_adjointness_complex64(height, width, coils, batch, kind):
    # batch 1 uses shared 3-D maps and a shared mask; batch 3 uses per-sample maps and masks.
    maps = crandn(coils, height, width) if batch == 1 else crandn(batch, coils, height, width)
    mask_batch = None if batch == 1 else batch
    mask = general_mask(height, width, mask_batch) if kind == "2d" else line_mask(width, mask_batch)
    op = SenseOperator(maps, mask, compact=kind == "compact")
    assert op.is_2d == (kind == "2d")
    x = crandn(batch, height, width)
    y = crandn(batch, coils, height, op.kspace_width)
    assert adjointness_error(op.A, op.A_adjoint, x, y) <= 1e-5


@pytest.mark.parametrize("kind", ["1d", "2d", "compact"])
def test_normal_and_dc_step_match_their_definitions(kind):
    batch, coils, height, width = 3, 4, 17, 9
    maps = crandn(batch, coils, height, width, dtype=C128)
    mask = general_mask(height, width, batch) if kind == "2d" else line_mask(width, batch)
    op = SenseOperator(maps, mask, compact=kind == "compact")
    x, AHy = crandn(batch, height, width, dtype=C128), crandn(batch, height, width, dtype=C128)
    normal = op.A_adjoint_A(x)
    torch.testing.assert_close(normal, op.A_adjoint(op.A(x)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.dc_step(x, AHy, 0.3), x - 0.3 * (normal - AHy), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Independent numpy reference (complex128)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(16, 12), (17, 9), (15, 10)])
@pytest.mark.parametrize("layout", ["W", "BW", "HW", "BHW"])
@pytest.mark.parametrize("shared_maps", [True, False])
def test_matches_numpy_reference(height, width, layout, shared_maps):
    batch, coils = 2, 3
    maps = crandn(coils, height, width, dtype=C128) if shared_maps else crandn(batch, coils, height, width, dtype=C128)
    mask = {
        "W": lambda: line_mask(width),
        "BW": lambda: line_mask(width, batch),
        "HW": lambda: general_mask(height, width),
        "BHW": lambda: general_mask(height, width, batch),
    }[layout]()
    op = SenseOperator(maps, mask)
    x = crandn(batch, height, width, dtype=C128)
    y = crandn(batch, coils, height, width, dtype=C128)

    maps_np = np.broadcast_to(maps.numpy(), (batch, coils, height, width))
    mask_np = mask_as_numpy_2d(mask, batch, height)
    np.testing.assert_allclose(op.A(x).numpy(), numpy_forward(x.numpy(), maps_np, mask_np), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.A_adjoint(y).numpy(), numpy_adjoint(y.numpy(), maps_np, mask_np),
                               rtol=1e-12, atol=1e-12)
    # The reference itself is not vacuous: the mask removes energy and the centring moves DC to N//2.
    assert np.abs(numpy_forward(x.numpy(), maps_np, mask_np)).sum() > 0
    assert not np.allclose(mask_np, 1)


def test_dc_sits_at_the_centre():
    height, width = 9, 8
    op = SenseOperator(torch.ones(1, height, width, dtype=C128), torch.ones(width))
    k = op.A(torch.ones(1, height, width, dtype=C128))
    expected = torch.zeros(1, 1, height, width, dtype=C128)
    expected[..., height // 2, width // 2] = np.sqrt(height * width)
    torch.testing.assert_close(k, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Compact k-space
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batched_mask", [False, True])
def test_compact_agrees_with_full_at_sampled_columns(batched_mask):
    batch, coils, height, width = 3, 4, 17, 13
    maps = crandn(batch, coils, height, width, dtype=C128)
    mask = line_mask(width, batch if batched_mask else None)
    full, compact = SenseOperator(maps, mask), SenseOperator(maps, mask, compact=True)
    x = crandn(batch, height, width, dtype=C128)
    k_full, k_compact = full.A(x), compact.A(x)
    n_s = int(mask.reshape(-1, width)[0].sum())
    assert k_compact.shape == (batch, coils, height, n_s)
    for b in range(batch):
        columns = torch.nonzero(mask if mask.dim() == 1 else mask[b]).flatten()
        torch.testing.assert_close(k_compact[b], k_full[b][..., columns], rtol=1e-12, atol=1e-12)
        unsampled = torch.ones(width, dtype=torch.bool)
        unsampled[columns] = False
        assert bool((k_full[b][..., unsampled] == 0).all())
    # The adjoint of compact data equals the full adjoint of the same data zero-filled.
    torch.testing.assert_close(compact.A_adjoint(k_compact), full.A_adjoint(k_full), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(compact.A_adjoint_A(x), full.A_adjoint_A(x), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Mask layouts
# ---------------------------------------------------------------------------------------------

def test_two_dim_mask_layout_resolution():
    coils, height, width = 2, 6, 5
    maps = crandn(coils, height, width)
    assert SenseOperator(maps, general_mask(height, width)).is_2d  # (H,W)
    lines = line_mask(width, batch=4)
    op = SenseOperator(maps, lines)  # (B,W), B != H
    assert not op.is_2d and op.batch_size == 4
    forced = SenseOperator(maps, line_mask(width, batch=height), mask_is_2d=False)  # (B,W) with B == H
    assert not forced.is_2d and forced.batch_size == height


def test_ambiguous_two_dim_mask_needs_the_keyword():
    coils, size = 2, 6
    maps = crandn(size, coils, size, size)  # B == H
    mask = general_mask(size, size)
    with pytest.raises(ValueError, match="mask_is_2d"):
        SenseOperator(maps, mask)
    assert SenseOperator(maps, mask, mask_is_2d=True).is_2d
    assert not SenseOperator(maps, mask, mask_is_2d=False).is_2d


@pytest.mark.parametrize("batched", [False, True])
def test_two_dim_mask_with_identical_rows_takes_the_1d_path(batched):
    batch, coils, height, width = 2, 3, 7, 10
    lines = line_mask(width, batch if batched else None)
    mask2d = lines[..., None, :].expand(*lines.shape[:-1], height, width).float()
    op = SenseOperator(crandn(batch, coils, height, width, dtype=C128), mask2d)
    assert not op.is_2d and op.mask.shape == lines.shape
    x = crandn(batch, height, width, dtype=C128)
    torch.testing.assert_close(op.A(x), SenseOperator(op.maps, lines).A(x), rtol=0, atol=0)
    assert SenseOperator(op.maps, mask2d, compact=True).A(x).shape[-1] == int(lines.reshape(-1, width)[0].sum())


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32, torch.float64, torch.int64])
def test_mask_dtypes_are_equivalent(mask_dtype):
    maps = crandn(3, 8, 7, dtype=C128)
    mask = line_mask(7)
    x = crandn(2, 8, 7, dtype=C128)
    torch.testing.assert_close(SenseOperator(maps, mask.to(mask_dtype)).A(x), SenseOperator(maps, mask).A(x),
                               rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Autograd
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["1d", "2d", "compact"])
@pytest.mark.parametrize("shared_maps", [True, False])
def test_gradcheck_through_x_and_maps(kind, shared_maps):
    batch, coils, height, width = 2, 2, 5, 4
    maps = crandn(*(() if shared_maps else (batch,)), coils, height, width, dtype=C128).requires_grad_()
    mask = general_mask(height, width) if kind == "2d" else torch.tensor([1, 0, 1, 1], dtype=torch.bool)
    compact = kind == "compact"
    x = crandn(batch, height, width, dtype=C128).requires_grad_()
    y = crandn(batch, coils, height, 3 if compact else width, dtype=C128).requires_grad_()

    def forward(x, maps):
        return SenseOperator(maps, mask, compact=compact).A(x)

    def adjoint(y, maps):
        return SenseOperator(maps, mask, compact=compact).A_adjoint(y)

    def normal(x, maps):
        return SenseOperator(maps, mask, compact=compact).A_adjoint_A(x)

    AHy = crandn(batch, height, width, dtype=C128)

    def dc_step(x, maps):
        return SenseOperator(maps, mask, compact=compact).dc_step(x, AHy, 0.7)

    for fn, inp in ((forward, x), (adjoint, y), (normal, x), (dc_step, x)):
        assert torch.autograd.gradcheck(fn, (inp, maps), fast_mode=True), fn.__name__


def test_maps_gradient_survives_repeated_backward():
    maps = crandn(3, 6, 5, dtype=C128).requires_grad_()
    op = SenseOperator(maps, line_mask(5))
    x = crandn(2, 6, 5, dtype=C128)
    op.A(x).abs().sum().backward()
    first = maps.grad.clone()
    op.A(x).abs().sum().backward()
    torch.testing.assert_close(maps.grad, 2 * first)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

H, W, CO = 6, 5, 2


def good_maps(dtype=C64):
    return crandn(CO, H, W, dtype=dtype)


def good_mask():
    return torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)


def nan_maps():
    maps = good_maps()
    maps[0, 1, 2] = complex(float("nan"), 0)
    return maps


def inf_maps():
    maps = good_maps()
    maps[1, 0, 0] = complex(0, float("inf"))
    return maps


@pytest.mark.parametrize("maps,mask,kwargs,error,pattern", [
    (lambda: torch.randn(CO, H, W), good_mask, {}, TypeError, "maps.*complex"),
    (lambda: crandn(H, W), good_mask, {}, ValueError, r"maps.*\(C,H,W\)"),
    (lambda: crandn(1, 1, CO, H, W), good_mask, {}, ValueError, "maps"),
    (nan_maps, good_mask, {}, ValueError, "maps.*NaN"),
    (inf_maps, good_mask, {}, ValueError, "maps.*Inf"),
    (good_maps, lambda: good_mask().to(C64), {}, TypeError, "mask.*real"),
    (good_maps, lambda: torch.ones(W).to("meta"), {}, ValueError, "mask on meta"),
    (good_maps, lambda: torch.ones(W + 1), {}, ValueError, f"mask.*W={W}"),
    (good_maps, lambda: torch.ones(H, W + 2), {}, ValueError, f"mask.*W={W}"),
    (good_maps, lambda: torch.ones(2, 3, W), {}, ValueError, r"mask.*\(H,W\)"),
    (good_maps, lambda: torch.ones(1, 1, 1, W), {}, ValueError, "mask"),
    (good_maps, lambda: torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0]), {}, ValueError, "mask.*0/1"),
    (good_maps, lambda: torch.tensor([1.0, 0.0, float("nan"), 0.0, 1.0]), {}, ValueError, "mask.*0/1"),
    (good_maps, lambda: torch.zeros(W), {}, ValueError, "mask.*samples nothing"),
    (good_maps, lambda: torch.zeros(H, W), {}, ValueError, "mask.*samples nothing"),
    (good_maps, lambda: torch.tensor([[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]]), {}, ValueError,
     r"mask.*batch entries \[1\]"),
    (lambda: crandn(3, CO, H, W), lambda: torch.ones(4, W), {}, ValueError, "mask.*batch size 4.*3"),
    (good_maps, lambda: torch.ones(W), {"mask_is_2d": True}, ValueError, "mask.*mask_is_2d=True"),
    (good_maps, lambda: torch.ones(2, H, W), {"mask_is_2d": False}, ValueError, "mask.*mask_is_2d=False"),
    (good_maps, lambda: general_mask(H, W), {"compact": True}, ValueError, "compact.*1D mask"),
    (good_maps, lambda: torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 0, 0]]), {"compact": True}, ValueError,
     "mask.*same number"),
    (good_maps, good_mask, {"backend": "fastest"}, ValueError, "backend"),
])
def test_bad_construction_raises(maps, mask, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        SenseOperator(maps(), mask(), **kwargs)


@pytest.mark.parametrize("method,value,error,pattern", [
    ("A", lambda: crandn(2, H + 1, W), ValueError, r"x, maps: x of shape \(2, 7, 5\) needs maps \(C,7,5\)"),
    ("A", lambda: crandn(H, W), ValueError, r"x: expected a \(B,H,W\) image"),
    ("A", lambda: crandn(2, H, W, dtype=C128), TypeError, "x: expected dtype torch.complex64"),
    ("A", lambda: torch.randn(2, H, W), TypeError, "x: expected a complex"),
    ("A", lambda: np.zeros((2, H, W), np.complex64), TypeError, "x: expected a torch.Tensor"),
    ("A", lambda: crandn(2, H, W).to("meta"), ValueError, "x on meta"),
    ("A_adjoint", lambda: crandn(2, CO + 1, H, W), ValueError, "y, maps: y of shape .* has 3 coils, maps 2"),
    ("A_adjoint", lambda: crandn(2, H, W), ValueError, r"y: expected \(B,C,H,W\) k-space"),
    ("A_adjoint", lambda: crandn(2, CO, H, W, dtype=C128), TypeError, "y: expected dtype"),
    ("A_adjoint_A", lambda: crandn(2, H, W - 1), ValueError, "x, maps: x of shape"),
])
def test_bad_call_input_raises(method, value, error, pattern):
    op = SenseOperator(good_maps(), good_mask())
    with pytest.raises(error, match=pattern):
        getattr(op, method)(value())


def test_batch_size_is_enforced_by_batched_maps_and_masks():
    op = SenseOperator(crandn(3, CO, H, W), good_mask())
    with pytest.raises(ValueError, match=r"x, maps: x of shape \(2, 6, 5\) needs maps .* got maps \(3, 2, 6, 5\)"):
        op.A(crandn(2, H, W))
    op = SenseOperator(good_maps(), torch.stack([good_mask(), good_mask().flip(0)]))
    with pytest.raises(ValueError, match=r"mask: expected shape \(5,\) or \(1\|3,5\)"):
        op.A_adjoint(crandn(3, CO, H, W))


def test_compact_adjoint_rejects_full_kspace():
    op = SenseOperator(good_maps(), good_mask(), compact=True)
    with pytest.raises(ValueError, match=r"yc: expected 3 columns"):
        op.A_adjoint(crandn(2, CO, H, W))


def test_dc_step_checks_both_images():
    op = SenseOperator(good_maps(), good_mask())
    x = crandn(2, H, W)
    with pytest.raises(ValueError, match=r"AHy: expected shape \(2, 6, 5\)"):
        op.dc_step(x, crandn(3, H, W), 0.5)
    with pytest.raises(TypeError, match="AHy: expected dtype"):
        op.dc_step(x, crandn(2, H, W, dtype=C128), 0.5)


def test_backend_name_reaches_the_dispatcher():
    x = crandn(2, H, W)
    torch.testing.assert_close(SenseOperator(good_maps(), good_mask(), backend="torch").A(x).shape, (2, CO, H, W))
    with pytest.raises(RuntimeError, match="backend 'cuda'"):
        SenseOperator(good_maps(), good_mask(), backend="cuda").A(x)


def test_full_gradcheck_on_a_tiny_operator():
    # Slow-mode gradcheck compares the whole Jacobian; fast mode above covers more layouts cheaply.
    maps = crandn(2, 3, 3, dtype=C128).requires_grad_()
    x = crandn(1, 3, 3, dtype=C128).requires_grad_()
    mask = torch.tensor([1, 0, 1])
    assert torch.autograd.gradcheck(lambda x, maps: SenseOperator(maps, mask).A(x), (x, maps))
    assert torch.autograd.gradcheck(lambda x, maps: SenseOperator(maps, mask).A_adjoint_A(x), (x, maps))
