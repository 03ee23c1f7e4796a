"""The build is portable: x86 SIMD code behind architecture guards (the CPU sources compile for
aarch64), the schemas, CPU and CUDA kernels are separate modules (one missing never removes the
others), and the CUDA toolkit is found from the nvcc that is on the path."""
import os
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mbdlfast import _build

REPO_ROOT = Path(__file__).resolve().parent.parent
CROSS = shutil.which("aarch64-linux-gnu-g++")


@pytest.mark.skipif(CROSS is None, reason="no aarch64 cross compiler (Debian: apt-get install g++-aarch64-linux-gnu)")
def test_the_cpu_sources_compile_for_aarch64(tmp_path):
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{path}" for path in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    sources = _build.sources("_C", REPO_ROOT) + _build.sources("_C_cpu", REPO_ROOT)

    def compile_one(source: str) -> subprocess.CompletedProcess:
        name = Path(source).stem
        command = [CROSS, "-std=c++20", "-c", "-O0", "-fPIC", *_build.CXX_FLAGS[1:], *includes,
                   f"-DTORCH_EXTENSION_NAME=_{name}", "-DTORCH_API_INCLUDE_EXTENSION_H", str(REPO_ROOT / source),
                   "-o", str(tmp_path / f"{name}.o")]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = dict(zip(sources, pool.map(compile_one, sources)))
    failures = {source: run.stderr[-2000:] for source, run in runs.items() if run.returncode != 0}
    assert not failures, failures
    objects = [tmp_path / f"{Path(source).stem}.o" for source in sources]
    kinds = subprocess.run(["file", *map(str, objects)], capture_output=True, text=True).stdout
    assert kinds.count("aarch64") == len(sources), kinds


def _import_with_missing(part: str) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.modules['mbdlfast.{part}'] = None\n"
            "import mbdlfast.ops as ops\n"
            "from mbdlfast._extension import part_status\n"
            "print(ops.available_backends('cpu'))\n"
            "print({p: part_status(p)[0] for p in ('_C', '_C_cpu')})")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


@pytest.mark.skipif(not _build.sources("_C_cpu", REPO_ROOT), reason="no sources")
def test_without_the_cpu_kernels_the_schemas_still_load():
    from mbdlfast._extension import part_status

    if not part_status("_C")[0]:
        pytest.skip("the extensions are not built here")
    run = _import_with_missing("_C_cpu")
    assert "'cpp'" not in run.stdout and "{'_C': True, '_C_cpu': False}" in run.stdout
    assert run.stderr.count("falls back to torch") == 1 and "the C++ CPU kernels" in run.stderr


def test_the_cuda_part_is_separate_and_its_absence_is_explained():
    import torch

    from mbdlfast._extension import cuda_extension_status
    from mbdlfast.ops.dispatch import backend_unavailable_reason

    loaded, why = cuda_extension_status()
    if torch.version.cuda is None:
        assert not loaded and "no CUDA" in why
    assert backend_unavailable_reason("cuda", torch.device("cpu")).startswith("cuda runs on CUDA tensors")
    assert set(_build.PARTS) == {"_C", "_C_cpu", "_C_cuda"}
    assert _build.sources("_C", REPO_ROOT) == ["csrc/registration.cpp"]  # the schemas only: they compile anywhere


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_cuda_toolkit_is_found_from_nvcc(monkeypatch):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    home = Path(_build.cuda_home())
    assert (home / "include" / "cuda_runtime.h").is_file(), home  # not /usr/local for a /usr/local/bin/nvcc wrapper
    monkeypatch.setenv("CUDA_HOME", "/opt/my-cuda")
    assert _build.cuda_home() == "/opt/my-cuda"


def test_no_flag_forces_a_cpp_standard():
    """torch adds the standard its headers need (C++20 from torch 2.10); forcing C++17 breaks those builds."""
    assert not any(flag.startswith("-std") for flag in _build.CXX_FLAGS + _build.NVCC_FLAGS)
    assert "-std=" not in (REPO_ROOT / "setup.py").read_text()


@pytest.mark.slow
def test_a_part_that_fails_to_compile_leaves_the_others_and_the_install(tmp_path):
    """setup.py build_ext --inplace in a copy of the sources whose CPU kernels do not compile: the
    build warns and succeeds, the schemas module is built, the CPU kernels module is not."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "csrc", tmp_path / "csrc")
    shutil.copytree(REPO_ROOT / "kernels", tmp_path / "kernels")
    shutil.copytree(REPO_ROOT / "mbdlfast", tmp_path / "mbdlfast", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    with open(tmp_path / "csrc" / "cpu" / "coil_ops.cpp", "a") as source:
        source.write("\n#error a part that does not compile\n")
    run = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "building mbdlfast._C_cpu failed" in run.stdout + run.stderr
    built = sorted(path.name.split(".")[0] for path in (tmp_path / "mbdlfast").glob("_C*.so"))
    assert built == ["_C"]
