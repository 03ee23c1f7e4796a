// The Python module mbdlfast._C_cpu: importing it loads the CPU kernels (their TORCH_LIBRARY_IMPL
// registrations in the other files of csrc/cpu) and exposes the CPU path's planning decisions, for
// tests and `mbdlfast info`.
#include <torch/extension.h>

#include "isa_dispatch.h"
#include "pruned_row_dft.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mbdlfast C++ CPU kernels; use them through mbdlfast.ops";
  m.def("normal_1d_row_split", &mbdlfast::normal_1d_row_split, pybind11::arg("width"), pybind11::arg("sampled"),
        "The split P of the pruned row transform that CPU A^H A uses for a 1D mask of `sampled` of `width` "
        "columns, or 0 where it uses two library FFTs instead");
  m.def("column_transform_in_lanes", &mbdlfast::column_lanes_modelled, pybind11::arg("height"),
        "Whether the CPU SENSE forward and adjoint transform along H on columns in vector lanes (else library FFTs)");
  m.def("cpu_isa", &mbdlfast::selected_isa,
        "The instruction set the CPU kernels run with here: avx512, avx2 or baseline (capped by MBDLFAST_CPU_ISA)");
}
