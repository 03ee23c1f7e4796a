"""Build of the optional C++/CUDA extensions of mbdlfast (ninja, via torch's BuildExtension).

The parts are listed in ``mbdlfast/_build.py``: the op schemas (``mbdlfast._C``), the CPU kernels
(``mbdlfast._C_cpu``) and, when the torch used for the build has CUDA and nvcc is found, the CUDA
kernels (``mbdlfast._C_cuda``). Each is optional and built on its own: without torch at build time
(an isolated build), without a compiler, or when one part fails to compile, the others still build
and the package installs; ``mbdlfast`` falls back to torch for what is missing.
"""
import importlib.util
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# The Triton kernels live in the top-level kernels/ folder but install as mbdlfast.kernels
# (a top-level `kernels` module would clash with an unrelated PyPI package).
PACKAGE_DIR = {"mbdlfast.kernels": "kernels"}
PACKAGES = find_packages(include=["mbdlfast", "mbdlfast.*"]) + ["mbdlfast.kernels"] + [
    f"mbdlfast.kernels.{name}" for name in find_packages("kernels")
]


def _build_description():
    """mbdlfast/_build.py, loaded by path (the package is not importable before it is installed)."""
    spec = importlib.util.spec_from_file_location("mbdlfast_build", os.path.join(ROOT, "mbdlfast", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extension_build():
    if os.environ.get("MBDLFAST_NO_EXTENSION") == "1":
        print("mbdlfast: MBDLFAST_NO_EXTENSION=1, skipping the C++ extensions")
        return [], {}
    build = _build_description()
    home = build.cuda_home()
    if home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = home  # read by torch.utils.cpp_extension at import
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("mbdlfast: torch is not importable in the build environment (use --no-build-isolation); "
              "installing without the C++ extensions")
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """Warn instead of failing the install when one extension does not compile; the others build."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as err:  # noqa: BLE001 - any compiler failure leaves a working install
                print(f"mbdlfast: WARNING: building {ext.name} failed ({err}); mbdlfast will fall back to torch "
                      "for what it provides")

    # optional: setuptools then skips the copy of a part that did not build instead of failing the install
    extensions = [CppExtension(f"mbdlfast.{part}", build.sources(part, ROOT), extra_compile_args=build.CXX_FLAGS,
                               extra_link_args=build.LINK_FLAGS, optional=True) for part in ("_C", "_C_cpu")]
    if torch.version.cuda is not None and CUDA_HOME is not None and os.environ.get("MBDLFAST_NO_CUDA") != "1":
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            # no GPU to read the architecture from (a build machine): the GPUs the kernels are tuned for
            os.environ["TORCH_CUDA_ARCH_LIST"] = build.DEFAULT_CUDA_ARCHITECTURES
        extensions.append(CUDAExtension("mbdlfast._C_cuda", build.sources("_C_cuda", ROOT),
                                        extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS},
                                        optional=True))
    return extensions, {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension_build()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data={"mbdlfast": ["weights/*.pt"], "mbdlfast.ops": ["gpu_measurements.json"]}, ext_modules=ext_modules,
      cmdclass=cmdclass)
