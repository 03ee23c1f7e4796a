"""Every pure-CUDA translation unit in csrc/cuda compiles with this machine's nvcc for sm_90; on a GPU
machine (marker gpu) the CUDA ops also run against the reference. On CPU-only machines only the
compile check runs: it guards against compile errors, not against wrong results.
"""
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CUDA_SOURCES = sorted((Path(__file__).resolve().parent.parent / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_cuda_sources_compile_for_sm90(tmp_path):
    assert CUDA_SOURCES, "no .cu files found in csrc/cuda"

    def compile_one(source: Path) -> subprocess.CompletedProcess:
        command = [NVCC, "-arch=sm_90", "-O3", "-std=c++17", "--use_fast_math", "-c", str(source),
                   "-o", str(tmp_path / (source.stem + ".o"))]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=len(CUDA_SOURCES)) as pool:
        runs = list(pool.map(compile_one, CUDA_SOURCES))
    failures = {src.name: run.stderr for src, run in zip(CUDA_SOURCES, runs) if run.returncode != 0}
    assert not failures, failures
    assert all((tmp_path / (src.stem + ".o")).stat().st_size > 0 for src in CUDA_SOURCES)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 37, 29, 2), (15, 64, 368, 1)])
def test_cuda_ops_match_reference(shape):
    """On a GPU machine with the CUDA extension built: the fused kernels against the reference."""
    import torch

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
