// Schemas of the mbdlfast ops implemented by the extensions: the module mbdlfast._C, which holds
// nothing else and so compiles anywhere. The device kernels are separate modules that register
// their implementations with TORCH_LIBRARY_IMPL: mbdlfast._C_cpu (csrc/cpu) and mbdlfast._C_cuda
// (csrc/cuda); fake kernels and autograd are registered from Python (mbdlfast/ops).
#include <torch/extension.h>

// The namespace is the backend's (mbdlfast_ext); each op has the name of the public op it implements
// (mbdlfast::<op>, defined once in mbdlfast/ops/definitions.py with its fake kernel and autograd).
// These are forward kernels only: the public op's autograd calls them again for the backward.
// Maps are (B|1,C,H,W); a scalar (gamma, lam) is a real one-element tensor on the data's device, so
// no kernel reads it on the host.
TORCH_LIBRARY_FRAGMENT(mbdlfast_ext, m) {
  m.def("coil_expand(Tensor x, Tensor maps) -> Tensor");
  m.def("coil_reduce(Tensor z, Tensor maps) -> Tensor");
  // 1D mask along W; circulant_weight = ifftshift(mask)^2, real (B|1, W), in uncentred FFT order.
  m.def("sense_normal(Tensor x, Tensor maps, Tensor circulant_weight) -> Tensor");
  m.def("dc_gradient_step(Tensor x, Tensor maps, Tensor circulant_weight, Tensor AHy, Tensor gamma) -> Tensor");
  // k - lam * mask * (k - y); mask real (B|1, H|1, W) in centred order (1D and 2D masks).
  m.def("soft_kspace_dc(Tensor k, Tensor y, Tensor mask, Tensor lam) -> Tensor");
  // Centred A and A^H for a 1D mask: mask real (B|1, W) in centred order.
  m.def("sense_forward(Tensor x, Tensor maps, Tensor mask) -> Tensor");
  m.def("sense_adjoint(Tensor y, Tensor maps, Tensor mask) -> Tensor");
  // Compact k-space (B,C,H,n_s) at the int64 columns (B|1, n_s).
  m.def("sense_forward_compact(Tensor x, Tensor maps, Tensor columns) -> Tensor");
  m.def("sense_adjoint_compact(Tensor yc, Tensor maps, Tensor columns) -> Tensor");
  // Super-resolution's data step on full 2D spectra: fz, fay (B,C,H,W), otf (B|1,H,W) of one dtype,
  // alpha real (B,), scale dividing H and W.
  m.def("sr_data_solve(Tensor fz, Tensor fay, Tensor otf, Tensor alpha, int scale) -> Tensor");
}

// An importable Python module, so `import mbdlfast._C` loads the library and runs the registrations.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mbdlfast op schemas (the kernels are mbdlfast._C_cpu and mbdlfast._C_cuda); use them through mbdlfast.ops";
}
