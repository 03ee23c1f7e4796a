// The Python module mbdlfast._C_cuda: importing it loads the CUDA kernels (the TORCH_LIBRARY_IMPL
// registrations of bindings.cpp).
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mbdlfast CUDA kernels; use them through mbdlfast.ops";
}
