"""Every pure-CUDA translation unit in csrc/cuda compiles with this machine's nvcc for sm_90; on a GPU
machine (marker gpu) the CUDA ops also run against the reference. On CPU-only machines only the
compile checks run (with the host-side shared-memory need of the fused normal kernel against its
Python mirror, and the limit declaration): they guard against compile errors and drift, not against
wrong results.
"""
import dataclasses
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

CUDA_SOURCES = sorted((Path(__file__).resolve().parent.parent / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))


@pytest.fixture(scope="module")
def cuda_objects(tmp_path_factory):
    """The .cu sources compiled once for sm_90: {source: (completed run, object path)}."""
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    folder = tmp_path_factory.mktemp("cuda_objects")

    def compile_one(source: Path):
        obj = folder / (source.stem + ".o")
        command = [NVCC, "-arch=sm_90", "-O3", "-std=c++17", "--use_fast_math", "-c", str(source), "-o", str(obj)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300), obj

    with ThreadPoolExecutor(max_workers=max(1, len(CUDA_SOURCES))) as pool:
        return dict(zip(CUDA_SOURCES, pool.map(compile_one, CUDA_SOURCES)))


def test_cuda_sources_compile_for_sm90(cuda_objects):
    assert CUDA_SOURCES, "no .cu files found in csrc/cuda"
    failures = {src.name: run.stderr for src, (run, _) in cuda_objects.items() if run.returncode != 0}
    assert not failures, failures
    assert all(obj.stat().st_size > 0 for _, obj in cuda_objects.values())


def test_python_shared_memory_model_matches_the_kernel(cuda_objects, tmp_path):
    """extension_ops.normal_shared_memory mirrors mbdlfast_cuda_normal_1d_smem: a host program asks the
    launcher's own function (no GPU needed)."""
    from mbdlfast.ops.extension_ops import normal_shared_memory

    run, obj = next(value for src, value in cuda_objects.items() if src.name == "sense_kernels.cu")
    assert run.returncode == 0, run.stderr
    widths = [1, 5, 31, 32, 33, 320, 368, 640, 1024]
    main = tmp_path / "main.cpp"
    main.write_text('#include <cstdint>\n#include <cstdio>\n#include <cstddef>\n'
                    'extern "C" size_t mbdlfast_cuda_normal_1d_smem(int64_t W);\n'
                    'int main() { const int64_t widths[] = {' + ", ".join(map(str, widths)) + '}; for (int64_t w : widths) '
                    'std::printf("%zu\\n", mbdlfast_cuda_normal_1d_smem(w)); }\n')
    program = tmp_path / "smem"
    link = subprocess.run([NVCC, "-arch=sm_90", str(main), str(obj), "-o", str(program)], capture_output=True, text=True,
                          timeout=300)
    assert link.returncode == 0, link.stderr
    printed = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert [int(v) for v in printed] == [normal_shared_memory(w) for w in widths]


def test_cuda_normal_limits_are_read_from_the_device(monkeypatch):
    """The fused normal kernel's limit is the device's opt-in shared memory against the kernel's need."""
    from mbdlfast.ops import dispatch, extension_ops

    case = dispatch.Case("sense_normal", torch.device("cuda", 0), torch.complex64, "1d", None, 1, 15, 640, 368)
    need = extension_ops.normal_shared_memory(368)
    monkeypatch.setattr(extension_ops, "_shared_memory_per_block", lambda index: need)
    assert extension_ops._cuda_row_fits(case) is None
    monkeypatch.setattr(extension_ops, "_shared_memory_per_block", lambda index: need - 1)
    reason = extension_ops._cuda_row_fits(case)
    assert f"{need:,} bytes" in reason and f"{need - 1:,}" in reason and "shared_memory_per_block_optin" in reason
    wide = dataclasses.replace(case, width=extension_ops.CUDA_MAX_WIDTH + 1)
    assert "W <=" in extension_ops._cuda_row_fits(wide)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 37, 29, 2), (15, 64, 368, 1)])
def test_cuda_ops_match_reference(shape):
    """On a GPU machine with the CUDA extension built: the fused kernels against the reference."""
    import mbdlfast.ops as ops
    from mbdlfast.ops import dispatch, reference

    if dispatch.backend_unavailable_reason("cuda", torch.device("cuda")):
        pytest.skip(dispatch.backend_unavailable_reason("cuda", torch.device("cuda")))
    coils, height, width, batch = shape
    x = torch.randn(batch, height, width, dtype=torch.complex128)
    maps = torch.randn(coils, height, width, dtype=torch.complex128)
    AHy = torch.randn_like(x)
    k = torch.randn(batch, coils, height, width, dtype=torch.complex128)
    mask = torch.rand(batch, width) < 0.3
    mask[:, width // 2] = True
    columns = torch.stack([torch.randperm(width)[:5].sort().values for _ in range(batch)])
    yc = torch.randn(batch, coils, height, 5, dtype=torch.complex128)
    expected = [reference.sense_normal(x, maps, mask), reference.dc_gradient_step(x, maps, mask, AHy, 0.4),
                reference.soft_kspace_dc(k, k.flip(-1), mask, 0.6), reference.coil_reduce(k, maps),
                reference.coil_expand(x, maps), reference.sense_forward(x, maps, mask),
                reference.sense_adjoint(k, maps, mask), reference.sense_forward_compact(x, maps, columns),
                reference.sense_adjoint_compact(yc, maps, columns)]
    columns = columns.cuda()
    x, maps, AHy, k, mask, yc = (t.cuda() if t.dtype == torch.bool else t.to("cuda", torch.complex64)
                                 for t in (x, maps, AHy, k, mask, yc))
    results = [ops.sense_normal(x, maps, mask, backend="cuda"), ops.dc_gradient_step(x, maps, mask, AHy, 0.4, backend="cuda"),
               ops.soft_kspace_dc(k, k.flip(-1), mask, 0.6, backend="cuda"), ops.coil_reduce(k, maps, backend="cuda"),
               ops.coil_expand(x, maps, backend="cuda"), ops.sense_forward(x, maps, mask, backend="cuda"),
               ops.sense_adjoint(k, maps, mask, backend="cuda"), ops.sense_forward_compact(x, maps, columns, backend="cuda"),
               ops.sense_adjoint_compact(yc, maps, columns, backend="cuda")]
    for result, reference_value in zip(results, expected):
        assert result.shape == reference_value.shape
        error = (result.cpu().to(torch.complex128) - reference_value).norm() / reference_value.norm()
        assert error <= 1e-5
