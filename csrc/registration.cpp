// Schemas of the mbdlfast ops implemented by the extensions: the module mbdlfast._C, which holds
// nothing else and so compiles anywhere. The device kernels are separate modules that register
// their implementations with TORCH_LIBRARY_IMPL: mbdlfast._C_cpu (csrc/cpu) and mbdlfast._C_cuda
// (csrc/cuda); fake kernels and autograd are registered from Python (mbdlfast/ops).
#include <torch/extension.h>

TORCH_LIBRARY_FRAGMENT(mbdlfast, m) {
  m.def("coil_expand(Tensor x, Tensor maps) -> Tensor");
  m.def("coil_reduce(Tensor z, Tensor maps) -> Tensor");
  // 1D mask along W; weight = ifftshift(mask)^2 as a real (B|1, W) tensor (uncentred FFT order).
  m.def("sense_normal_1d(Tensor x, Tensor maps, Tensor weight) -> Tensor");
  m.def("dc_step_1d(Tensor x, Tensor maps, Tensor weight, Tensor AHy, float gamma) -> Tensor");
  // k - lam * weight * (k - y), weight a real (B|1, H|1, W) tensor, lam a real scalar tensor.
  m.def("soft_dc(Tensor k, Tensor y, Tensor weight, Tensor lam) -> Tensor");
  // Centred A and A^H for a 1D mask: weight a real (B|1, W) tensor in centred order (the mask).
  m.def("sense_forward_1d(Tensor x, Tensor maps, Tensor weight) -> Tensor");
  m.def("sense_adjoint_1d(Tensor y, Tensor maps, Tensor weight) -> Tensor");
  // Compact k-space (B,C,H,n_s) at the int64 columns (B|1, n_s).
  m.def("sense_forward_compact(Tensor x, Tensor maps, Tensor columns) -> Tensor");
  m.def("sense_adjoint_compact(Tensor yc, Tensor maps, Tensor columns) -> Tensor");
}

// An importable Python module, so `import mbdlfast._C` loads the library and runs the registrations.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mbdlfast op schemas (the kernels are mbdlfast._C_cpu and mbdlfast._C_cuda); use them through mbdlfast.ops";
}
