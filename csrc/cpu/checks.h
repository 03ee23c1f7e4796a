// Input checks shared by the CPU kernels: each names the argument and what was expected.
#pragma once

#include <ATen/ATen.h>

namespace mbdlfast {

inline void check_cpu_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "mbdlfast cpp: ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "mbdlfast cpp: ", name, " must have dtype ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "mbdlfast cpp: ", name, " must be contiguous");
}

// A complex CPU tensor of either precision.
inline void check_cpu_complex(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_complex(), "mbdlfast cpp: ", name, " must be complex64 or complex128, got ", t.scalar_type());
  check_cpu_tensor(t, name, t.scalar_type());
}

}  // namespace mbdlfast
