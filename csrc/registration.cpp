// Schemas of the mbdlfast ops implemented by the extension. Device kernels register their
// implementations with TORCH_LIBRARY_IMPL in csrc/cpu (CPU) and csrc/cuda (CUDA); fake kernels and
// autograd are registered from Python (mbdlfast/ops).
#include <torch/extension.h>

#include "cpu/isa_dispatch.h"
#include "cpu/pruned_row_dft.h"

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
  m.doc() = "mbdlfast C++/CUDA kernels; use them through mbdlfast.ops";
  m.def("normal_1d_row_split", &mbdlfast::normal_1d_row_split, pybind11::arg("width"), pybind11::arg("sampled"),
        "The split P of the pruned row transform that CPU A^H A uses for a 1D mask of `sampled` of `width` "
        "columns, or 0 where it uses two library FFTs instead");
  m.def("column_transform_in_lanes", &mbdlfast::column_lanes_modelled, pybind11::arg("height"),
        "Whether the CPU SENSE forward and adjoint transform along H on columns in vector lanes (else library FFTs)");
  m.def("cpu_isa", &mbdlfast::selected_isa,
        "The instruction set the CPU kernels run with here: avx512, avx2 or baseline (capped by MBDLFAST_CPU_ISA)");
}
