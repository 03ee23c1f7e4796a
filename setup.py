"""Build of the optional C++/CUDA extension ``mbdlfast._C`` (ninja, via torch's BuildExtension).

The extension is optional: without torch at build time (an isolated build), without a compiler, or
when the compile fails, the package installs as pure Python and ``mbdlfast`` falls back to torch.
The CUDA kernels are compiled only when the torch used for the build has CUDA.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# The Triton kernels live in the top-level kernels/ folder but install as mbdlfast.kernels
# (a top-level `kernels` module would clash with an unrelated PyPI package).
PACKAGE_DIR = {"mbdlfast.kernels": "kernels"}
PACKAGES = find_packages(include=["mbdlfast", "mbdlfast.*"]) + ["mbdlfast.kernels"] + [
    f"mbdlfast.kernels.{name}" for name in find_packages("kernels")
]


def _extension_build():
    if os.environ.get("MBDLFAST_NO_EXTENSION") == "1":
        print("mbdlfast: MBDLFAST_NO_EXTENSION=1, skipping the C++ extension")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("mbdlfast: torch is not importable in the build environment (use --no-build-isolation); "
              "installing without the C++ extension")
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """Warn instead of failing the install when the extension does not compile."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as err:  # noqa: BLE001 - any compiler failure leaves a working pure-Python install
                print(f"mbdlfast: WARNING: building {ext.name} failed ({err}); mbdlfast will fall back to torch")

    sources = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")))]
    sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))]
    # No -std: torch's BuildExtension adds the standard its own headers need (C++20 from torch 2.10).
    # -Wno-maybe-uninitialized: GCC 12's own AVX-512 headers trip it (_mm512_undefined_*, GCC bug 105593),
    # hundreds of lines that would bury the build's progress and real warnings.
    cxx_flags = ["-O3", "-fopenmp", "-Wno-maybe-uninitialized"]
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and os.environ.get("MBDLFAST_NO_CUDA") != "1"
    if with_cuda:
        sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*")))
                    if p.endswith((".cu", ".cpp"))]
        ext = CUDAExtension(
            "mbdlfast._C", sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension("mbdlfast._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension_build()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data={"mbdlfast": ["weights/*.pt"]}, ext_modules=ext_modules, cmdclass=cmdclass)
