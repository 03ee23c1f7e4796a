"""The package imports, reports its backends, and the C++ extension matches the reference."""
import os
import subprocess
import sys

import pytest
import torch

import mbdlfast
from mbdlfast._extension import extension_status
import mbdlfast.ops as ops
from mbdlfast.ops import dispatch, reference


def test_import_and_info_runs():
    out = subprocess.run([sys.executable, "-m", "mbdlfast.info"], capture_output=True, text=True, check=True).stdout
    assert "torch" in out and "coil_expand" in out
    assert mbdlfast.__version__


def test_info_says_what_auto_picks_the_cpu_isa_and_missing_packages():
    env = {**os.environ, "MBDLFAST_CPU_ISA": "avx2"}
    out = subprocess.run([sys.executable, "-m", "mbdlfast", "info"], capture_output=True, text=True, check=True,
                         env=env).stdout
    assert "sense_normal: auto -> " in out and "with a 1D mask, and why" in out
    assert "torch_pruning: " in out and "optional packages:" in out
    if extension_status()[0]:
        assert "cpu_isa: avx2" in out or "cpu_isa: baseline" in out  # the cap is honoured and reported
    from mbdlfast import info

    info.OPTIONAL_PACKAGES["no-such-package"] = "nothing"
    try:
        assert info.optional_packages()["no-such-package"] == "missing: nothing"
    finally:
        del info.OPTIONAL_PACKAGES["no-such-package"]


def test_kernels_package_is_namespaced(tmp_path):
    code = "import importlib.util, mbdlfast.kernels; print(importlib.util.find_spec('kernels'))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    assert run.stdout.strip() == "None"


def test_import_without_extension_warns_once_and_falls_back():
    code = (
        "import sys, logging; sys.modules['mbdlfast._C'] = None\n"
        "import mbdlfast, mbdlfast.ops as ops\n"
        "print(ops.available_backends('cpu'))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "cpp" not in run.stdout and "torch" in run.stdout
    assert run.stderr.count("falls back to torch") == 1


@pytest.mark.skipif(not extension_status()[0], reason="C++ extension not built")
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("maps_batch", [1, 3])
def test_cpp_coil_ops_match_reference(dtype, maps_batch):
    x = torch.randn(3, 17, 9, dtype=dtype)
    maps = torch.randn(maps_batch, 4, 17, 9, dtype=dtype)
    z = torch.randn(3, 4, 17, 9, dtype=dtype)
    torch.testing.assert_close(ops.coil_expand(x, maps, backend="cpp"), reference.coil_expand(x, maps))
    torch.testing.assert_close(ops.coil_reduce(z, maps, backend="cpp"), reference.coil_reduce(z, maps))


def test_forced_unavailable_backend_raises_with_reasons(monkeypatch):
    case = dispatch.Case("coil_expand", torch.device("cpu"), torch.complex64)
    with dispatch.use_backend("cuda"):
        with pytest.raises(RuntimeError, match="backend 'cuda' cannot run coil_expand .*cuda runs on CUDA tensors"):
            dispatch.decide(case, dispatch.requested_backend())
    monkeypatch.setenv("MBDLFAST_BACKEND", "torch")
    assert dispatch.decide(case, dispatch.requested_backend()).backend == "torch"


@pytest.mark.parametrize("module", ["mbdlfast.ops", "mbdlfast.ops.reference", "mbdlfast.physics", "mbdlfast.physics.sense",
                                    "mbdlfast.models", "mbdlfast.deq", "mbdlfast.data", "mbdlfast.metrics"])
def test_each_module_imports_first_in_a_fresh_process(module):
    """Import cycles only show when a module is the first one imported."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)


def test_physics_exports_are_the_functions():
    import mbdlfast.physics.espirit_maps  # noqa: F401 - importing a submodule must not shadow an export
    from mbdlfast.physics import espirit, masks

    assert callable(espirit) and callable(masks.equispaced)
