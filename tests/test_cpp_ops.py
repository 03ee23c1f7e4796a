"""The C++ (OpenMP) fused SENSE kernels match the complex128 reference, check their inputs and
have correct fake kernels and gradients (through the image, the maps, A^H y and λ)."""
import pytest
import torch

import mbdlfast.ops as ops
from comparisons import assert_complex64_matches, relative_error, sampled_columns
from mbdlfast._extension import extension_status
from mbdlfast.ops import reference
from mbdlfast.physics import masks
from mbdlfast.ops.torch_fast import circulant_weight

pytestmark = pytest.mark.skipif(not extension_status()[0], reason="C++ extension mbdlfast._C not built")

CASES = [(4, 123, 97, 3), (15, 16, 12, 1), (1, 17, 9, 3)]



def make_problem(coils, height, width, batch, *, per_batch_maps, batched_mask):
    x = torch.randn(batch, height, width, dtype=torch.complex128)
    maps = torch.randn(batch if per_batch_maps else 1, coils, height, width, dtype=torch.complex128)
    mask = torch.rand((batch, width) if batched_mask else (width,)) < 0.4
    mask[..., width // 2] = True
    return x, maps if per_batch_maps else maps[0], mask


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_batch_maps", [False, True])
@pytest.mark.parametrize("batched_mask", [False, True])
def test_fused_ops_match_reference_in_complex64(case, per_batch_maps, batched_mask):
    x, maps, mask = make_problem(*case, per_batch_maps=per_batch_maps, batched_mask=batched_mask)
    AHy = torch.randn_like(x)
    k = torch.randn(x.shape[0], case[0], *x.shape[1:], dtype=torch.complex128)
    x64, maps64, AHy64, k64 = (t.to(torch.complex64) for t in (x, maps, AHy, k))
    pairs = [
        (ops.sense_normal(x64, maps64, mask, backend="cpp"), reference.sense_normal(x, maps, mask)),
        (ops.dc_gradient_step(x64, maps64, mask, AHy64, 0.3, backend="cpp"),
         reference.dc_gradient_step(x, maps, mask, AHy, 0.3)),
        (ops.soft_kspace_dc(k64, k64.flip(-1), mask, 0.7, backend="cpp"),
         reference.soft_kspace_dc(k, k.flip(-1), mask, 0.7)),
        (ops.coil_reduce(k64, maps64, backend="cpp"), reference.coil_reduce(k, maps)),
        (ops.coil_expand(x64, maps64, backend="cpp"), reference.coil_expand(x, maps)),
    ]
    assert_complex64_matches(pairs)


def assert_forward_and_adjoint_match(x, maps, mask, y, columns, yc):
    """A and A^H, full (``mask``) and compact (``columns``), in complex64 against the complex128 reference."""
    x64, maps64, y64, yc64 = (t.to(torch.complex64) for t in (x, maps, y, yc))
    assert_complex64_matches([
        (ops.sense_forward(x64, maps64, mask, backend="cpp"), reference.sense_forward(x, maps, mask)),
        (ops.sense_adjoint(y64, maps64, mask, backend="cpp"), reference.sense_adjoint(y, maps, mask)),
        (ops.sense_forward_compact(x64, maps64, columns, backend="cpp"), reference.sense_forward_compact(x, maps, columns)),
        (ops.sense_adjoint_compact(yc64, maps64, columns, backend="cpp"), reference.sense_adjoint_compact(yc, maps, columns)),
    ])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_batch", [False, True])
def test_forward_and_adjoint_full_and_compact_match_reference(case, per_batch):
    coils, height, width, batch = case
    x, maps, mask = make_problem(*case, per_batch_maps=per_batch, batched_mask=per_batch)
    y = torch.randn(batch, coils, height, width, dtype=torch.complex128)
    columns = sampled_columns(width, batch, per_batch)
    yc = torch.randn(batch, coils, height, columns.shape[-1], dtype=torch.complex128)
    assert_forward_and_adjoint_match(x, maps, mask, y, columns, yc)
    # complex128 runs the same kernels in double precision.
    assert relative_error(ops.sense_forward_compact(x, maps, columns, backend="cpp"),
                          reference.sense_forward_compact(x, maps, columns)) <= 1e-12
    assert relative_error(ops.sense_adjoint(y, maps, mask, backend="cpp"), reference.sense_adjoint(y, maps, mask)) <= 1e-12


# Widths whose rows split as W = P * Q for the pruned row transform (P = 4 .. 64), sampling
# patterns with empty residue groups, a single column, every column, the columns 0, 2, W - 2 and
# W/2 (a direct DFT of even length Q = W: a partnered pair d, Q - d and d = Q/2, its own partner)
# and batched masks; each case runs with the transform the work model picks and with each one forced.
PRUNED_CASES = [(20, 19, 368, 2), (3, 21, 320, 1), (5, 18, 180, 2), (2, 9, 12, 3), (1, 17, 64, 1)]


def row_split(width: int, sampled: int) -> int:
    from mbdlfast import _C_cpu  # built, or this module is skipped

    return _C_cpu.normal_1d_row_split(width, sampled)


def pruned_masks(width: int, batch: int) -> list[torch.Tensor]:
    equispaced = masks.equispaced(width, 4, 0.08, offset=1)
    single = torch.zeros(width, dtype=torch.bool)
    single[width // 3] = True
    symmetric = torch.zeros(width, dtype=torch.bool)
    symmetric[[0, 2, width - 2, width // 2]] = True
    return [equispaced, single, symmetric, torch.ones(width, dtype=torch.bool), torch.rand(batch, width) < 0.3]


@pytest.mark.parametrize("case", PRUNED_CASES)
@pytest.mark.parametrize("row_transform", ["auto", "pruned", "fft"])
def test_pruned_row_transform_matches_reference(case, row_transform, monkeypatch):
    monkeypatch.setenv("MBDLFAST_ROW_TRANSFORM", row_transform)
    coils, height, width, batch = case
    x, maps, _ = make_problem(*case, per_batch_maps=batch > 1, batched_mask=False)
    AHy = torch.randn_like(x)
    for mask in pruned_masks(width, batch):
        mask[..., 0] = True  # every batch entry samples something
        sampled = int(mask.reshape(-1, width).sum(-1).max())
        if sampled < width:  # a full mask may take the FFT path; the others must be pruned
            assert row_split(width, sampled) > 0, (width, sampled)
        if sampled == 4 and mask.dim() == 1 and mask[width // 2]:  # the symmetric mask: a direct DFT
            assert row_split(width, sampled) == 1, width
        x64, maps64, AHy64 = (t.to(torch.complex64) for t in (x, maps, AHy))
        assert_complex64_matches([
            (ops.sense_normal(x64, maps64, mask, backend="cpp"), reference.sense_normal(x, maps, mask)),
            (ops.dc_gradient_step(x64, maps64, mask, AHy64, 0.3, backend="cpp"),
             reference.dc_gradient_step(x, maps, mask, AHy, 0.3)),
        ])
        assert relative_error(ops.sense_normal(x, maps, mask, backend="cpp"), reference.sense_normal(x, maps, mask)) <= 1e-12
    # A and A^H, full and compact (with a repeated column), run the same transforms one way each.
    y = torch.randn(batch, coils, height, width, dtype=torch.complex128)
    columns = torch.tensor([width - 1, 0, 3, 3, width // 2])
    yc = torch.randn(batch, coils, height, columns.numel(), dtype=torch.complex128)
    mask = masks.equispaced(width, 4, 0.08, offset=0)
    assert_forward_and_adjoint_match(x, maps, mask, y, columns, yc)
    assert relative_error(ops.sense_adjoint(y, maps, mask, backend="cpp"), reference.sense_adjoint(y, maps, mask)) <= 1e-12


# Heights whose transform along H in lanes splits as H = P * Q in each way the plan knows: P = 1 (no
# slot FFT), 2, 4 (one radix-4 stage), 8 (radix-2, then radix-4), 16 and 64 (two and three radix-4
# stages); masks of more than 16 columns (several lane blocks, the last one padded) and a repeated
# compact column.
COLUMN_CASES = [(3, 123, 40, 2), (4, 230, 36, 1), (2, 12, 33, 1), (1, 40, 70, 2), (2, 48, 45, 1), (2, 320, 20, 1)]


@pytest.mark.parametrize("case", COLUMN_CASES)
@pytest.mark.parametrize("column_transform", ["lanes", "fft"])
def test_forward_and_adjoint_with_each_column_transform(case, column_transform, monkeypatch):
    monkeypatch.setenv("MBDLFAST_COLUMN_TRANSFORM", column_transform)
    coils, height, width, batch = case
    x, maps, _ = make_problem(*case, per_batch_maps=batch > 1, batched_mask=False)
    mask = masks.equispaced(width, 2, 0.08, offset=1)
    columns = torch.cat([torch.arange(0, width, 2), torch.tensor([3, 3])])
    y = torch.randn(batch, coils, height, width, dtype=torch.complex128)
    yc = torch.randn(batch, coils, height, columns.numel(), dtype=torch.complex128)
    assert_forward_and_adjoint_match(x, maps, mask, y, columns, yc)
    assert relative_error(ops.sense_forward(x, maps, mask, backend="cpp"), reference.sense_forward(x, maps, mask)) <= 1e-12
    assert relative_error(ops.sense_adjoint_compact(yc, maps, columns, backend="cpp"),
                          reference.sense_adjoint_compact(yc, maps, columns)) <= 1e-12


def test_column_transform_in_lanes_only_where_the_library_fft_is_slow(monkeypatch):
    from mbdlfast import _C_cpu  # built, or this module is skipped

    assert _C_cpu.column_transform_in_lanes(230)  # 2 * 5 * 23: a direct DFT of 115
    assert _C_cpu.column_transform_in_lanes(368)  # 16 * 23
    assert not any(_C_cpu.column_transform_in_lanes(h) for h in (320, 640, 768, 256, 105))  # factors up to 7
    assert not _C_cpu.column_transform_in_lanes(323)  # 17 * 19: a direct DFT of 323
    assert not _C_cpu.column_transform_in_lanes(1021)  # prime
    x, maps, mask = make_problem(2, 12, 10, 1, per_batch_maps=False, batched_mask=False)
    monkeypatch.setenv("MBDLFAST_COLUMN_TRANSFORM", "fastest")
    with pytest.raises(RuntimeError, match="MBDLFAST_COLUMN_TRANSFORM must be auto, lanes or fft"):
        ops.sense_forward(x, maps, mask, backend="cpp")


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_pruned_kernels_on_the_lower_instruction_sets(isa, monkeypatch):
    # This machine picks AVX-512; MBDLFAST_CPU_ISA runs the AVX2 and baseline builds of the same body.
    monkeypatch.setenv("MBDLFAST_CPU_ISA", isa)
    monkeypatch.setenv("MBDLFAST_ROW_TRANSFORM", "pruned")
    monkeypatch.setenv("MBDLFAST_COLUMN_TRANSFORM", "lanes")
    x, maps, _ = make_problem(3, 21, 184, 2, per_batch_maps=True, batched_mask=False)
    mask = masks.equispaced(184, 4, 0.08, offset=2)
    y = torch.randn(2, 3, 21, 184, dtype=torch.complex128)
    x64, maps64, y64 = (t.to(torch.complex64) for t in (x, maps, y))
    assert_complex64_matches([
        (ops.sense_normal(x64, maps64, mask, backend="cpp"), reference.sense_normal(x, maps, mask)),
        (ops.sense_forward(x64, maps64, mask, backend="cpp"), reference.sense_forward(x, maps, mask)),
        (ops.sense_adjoint(y64, maps64, mask, backend="cpp"), reference.sense_adjoint(y, maps, mask)),
    ])
    assert relative_error(ops.sense_normal(x, maps, mask, backend="cpp"), reference.sense_normal(x, maps, mask)) <= 1e-12
    monkeypatch.setenv("MBDLFAST_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="MBDLFAST_CPU_ISA must be avx512, avx2 or baseline"):
        ops.sense_normal(x64, maps64, mask, backend="cpp")


def test_forced_row_transform_on_odd_widths_and_a_bad_setting(monkeypatch):
    x, maps, mask = make_problem(4, 11, 97, 2, per_batch_maps=False, batched_mask=True)
    monkeypatch.setenv("MBDLFAST_ROW_TRANSFORM", "pruned")  # P = 1: a direct DFT at the sampled columns
    assert relative_error(ops.sense_normal(x, maps, mask, backend="cpp"), reference.sense_normal(x, maps, mask)) <= 1e-12
    monkeypatch.setenv("MBDLFAST_ROW_TRANSFORM", "fastest")
    with pytest.raises(RuntimeError, match="MBDLFAST_ROW_TRANSFORM must be auto, pruned or fft"):
        ops.sense_normal(x, maps, mask, backend="cpp")


def test_row_split_prefers_library_ffts_only_where_the_pruned_work_is_large():
    assert row_split(97, 30) == 1  # odd: a direct DFT at 30 frequencies beats a prime-length FFT
    assert row_split(396, 214) == 4  # 396 = 4 * 99 at R = 2
    assert row_split(368, 115) == 16  # 368 = 16 * 23 at R = 4 with 8% ACS
    assert row_split(320, 100) > 0
    assert row_split(999, 999) == 0  # odd and fully sampled: a direct DFT is quadratic
    assert row_split(2048, 2048) == 0  # library FFTs at their best


def test_forward_adjoint_with_real_weights_empty_masks_and_repeated_columns():
    x, maps, _ = make_problem(3, 10, 7, 2, per_batch_maps=True, batched_mask=False)
    y = torch.randn(2, 3, 10, 7, dtype=torch.complex128)
    weights = torch.rand(2, 7, dtype=torch.float64) * (torch.rand(2, 7) < 0.6)
    weights[0, 3] = 0.5  # never all zero in entry 0
    assert relative_error(ops.sense_forward(x, maps, weights, backend="cpp"), reference.sense_forward(x, maps, weights)) <= 1e-12
    assert relative_error(ops.sense_adjoint(y, maps, weights, backend="cpp"), reference.sense_adjoint(y, maps, weights)) <= 1e-12
    weights[1] = 0  # an entry with nothing sampled gives zeros
    assert ops.sense_forward(x, maps, weights, backend="cpp")[1].abs().max() == 0
    assert ops.sense_adjoint(y, maps, weights, backend="cpp")[1].abs().max() == 0
    columns = torch.tensor([1, 1, 4])  # the adjoint of a gather adds repeated columns up
    yc = torch.randn(2, 3, 10, 3, dtype=torch.complex128)
    expected = torch.vdot(ops.sense_forward_compact(x, maps, columns, backend="torch").flatten(), yc.flatten())
    result = torch.vdot(x.flatten(), ops.sense_adjoint_compact(yc, maps, columns, backend="cpp").flatten())
    assert abs(result - expected) <= 1e-10 * abs(expected)


def test_cpp_declines_2d_masks_and_complex_scalars_and_takes_a_tensor_gamma():
    x, maps, _ = make_problem(3, 11, 8, 2, per_batch_maps=True, batched_mask=False)
    mask2d = torch.rand(11, 8) < 0.5
    AHy = torch.randn_like(x)
    with pytest.raises(RuntimeError, match="takes 1d masks, not a 2d mask"):
        ops.sense_normal(x, maps, mask2d, True, backend="cpp")
    assert ops.explain("sense_normal", x, maps, mask2d, True).backend == "torch"
    k = maps.expand(2, -1, -1, -1)
    assert relative_error(ops.soft_kspace_dc(k, maps, mask2d, 0.5, True, backend="cpp"),
                          reference.soft_kspace_dc(k, maps, mask2d, 0.5, True)) <= 1e-12
    with pytest.raises(RuntimeError, match="takes a real scalar, not a complex one"):
        ops.soft_kspace_dc(k, maps, mask2d, 0.5j, True, backend="cpp")
    mask = torch.rand(8) < 0.5
    mask[0] = True
    gamma = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert ops.explain("dc_gradient_step", x, maps, mask, AHy, gamma).backend == "cpp"
    assert relative_error(ops.dc_gradient_step(x, maps, mask, AHy, gamma, backend="cpp"),
                          reference.dc_gradient_step(x, maps, mask, AHy, gamma)) <= 1e-12
    with pytest.raises(ValueError, match="gamma: expected a number or a one-element"):
        ops.dc_gradient_step(x, maps, mask, AHy, torch.tensor([[[0.2]], [[0.4]]]), backend="cpp")


def test_auto_picks_cpp_on_cpu_and_handles_non_contiguous_inputs():
    x, maps, mask = make_problem(2, 9, 10, 2, per_batch_maps=True, batched_mask=False)
    assert ops.explain("sense_normal", x, maps, mask).backend == "cpp"
    x_t = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, non-contiguous
    assert not x_t.is_contiguous()
    assert relative_error(ops.sense_normal(x_t, maps, mask), reference.sense_normal(x, maps, mask)) <= 1e-12


def _raw_inputs(dtype=torch.complex128):
    x = torch.randn(2, 5, 6, dtype=dtype)
    maps = torch.randn(1, 3, 5, 6, dtype=dtype)
    weight = circulant_weight(torch.tensor([True, False, True, True, False, True]), dtype).contiguous()
    return x, maps, weight


def test_bad_inputs_raise_clear_errors():
    x, maps, weight = _raw_inputs()
    with pytest.raises(RuntimeError, match="maps must have dtype"):
        torch.ops.mbdlfast_ext.sense_normal(x, maps.to(torch.complex64), weight)
    with pytest.raises(RuntimeError, match="weight must be real"):
        torch.ops.mbdlfast_ext.sense_normal(x, maps, weight.float())
    with pytest.raises(RuntimeError, match="x must be complex"):
        torch.ops.mbdlfast_ext.sense_normal(x.real.contiguous(), maps, weight)
    with pytest.raises(RuntimeError, match="x must be contiguous"):
        torch.ops.mbdlfast_ext.sense_normal(x.transpose(1, 2), maps, weight)
    with pytest.raises(RuntimeError, match="weight must have 6 columns"):
        torch.ops.mbdlfast_ext.sense_normal(x, maps, weight[:, :5].contiguous())
    with pytest.raises(RuntimeError, match="maps batch must be 1 or 2"):
        torch.ops.mbdlfast_ext.sense_normal(x, maps.expand(3, -1, -1, -1).contiguous(), weight)
    with pytest.raises(RuntimeError, match=r"maps must be \(B,C,5,6\)"):
        torch.ops.mbdlfast_ext.sense_normal(x, maps[..., :4].contiguous(), weight)
    with pytest.raises(RuntimeError, match="AHy must have the shape"):
        torch.ops.mbdlfast_ext.dc_gradient_step(x, maps, weight, x[:1].contiguous(), torch.tensor(0.3))
    k = torch.randn(2, 3, 5, 6, dtype=torch.complex128)
    with pytest.raises(RuntimeError, match="lam must be a real one-element CPU tensor"):
        torch.ops.mbdlfast_ext.soft_kspace_dc(k, k, weight[:, None, :], torch.tensor([0.1, 0.2], dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"weight must be \(B\|1, H\|1, W\)"):
        torch.ops.mbdlfast_ext.soft_kspace_dc(k, k, weight, torch.tensor(0.1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"columns must lie in \[0, 6\)"):
        torch.ops.mbdlfast_ext.sense_forward_compact(x, maps, torch.tensor([[0, 6]]))
    with pytest.raises(RuntimeError, match="columns must have dtype Long"):
        torch.ops.mbdlfast_ext.sense_forward_compact(x, maps, torch.tensor([[0, 1]], dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"yc must be \(B,3,5,n_s\)"):
        torch.ops.mbdlfast_ext.sense_adjoint_compact(k, maps, torch.tensor([[0, 1]]))
    with pytest.raises(RuntimeError, match=r"weight must be \(B\|1, W\)"):
        torch.ops.mbdlfast_ext.sense_forward(x, maps, weight[:, :5].contiguous())
    with pytest.raises(RuntimeError, match="cpp runs on CPU tensors, not on meta"):
        ops.explain("sense_normal", x.to("meta"), maps.to("meta"), torch.ones(6, dtype=torch.bool, device="meta"),
                    backend="cpp")
