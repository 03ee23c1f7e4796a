// CPU (OpenMP) coil expand / reduce: the per-pixel loops of the SENSE operator.
//   expand: out[b,c,h,w] = maps[b|0,c,h,w] * x[b,h,w]
//   reduce: out[b,h,w]   = sum_c conj(maps[b|0,c,h,w]) * z[b,c,h,w]
// maps may be shared across the batch (leading dim 1). Inputs must be contiguous complex tensors of
// one dtype; the Python wrappers validate shapes before calling.
#include <torch/extension.h>

#include <complex>

#include "complex_math.h"

namespace {

void check_inputs(const at::Tensor& image, const at::Tensor& maps, const char* image_name) {
  TORCH_CHECK(image.device().is_cpu() && maps.device().is_cpu(), "mbdlfast cpp kernels take CPU tensors");
  TORCH_CHECK(image.scalar_type() == maps.scalar_type(), image_name, " and maps must share a dtype");
  TORCH_CHECK(image.is_complex(), image_name, " must be complex64 or complex128");
  TORCH_CHECK(maps.dim() == 4, "maps must be (B,C,H,W)");
  TORCH_CHECK(image.is_contiguous() && maps.is_contiguous(), image_name, " and maps must be contiguous");
}

template <typename real_t>
void expand_kernel(const std::complex<real_t>* x, const std::complex<real_t>* maps, std::complex<real_t>* out,
                   int64_t B, int64_t C, int64_t HW, bool shared_maps) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      const auto* s = maps + ((shared_maps ? 0 : b) * C + c) * HW;
      const auto* xb = x + b * HW;
      auto* o = out + (b * C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) o[i] = mbdlfast::cmul(s[i], xb[i]);
    }
  }
}

template <typename real_t>
void reduce_kernel(const std::complex<real_t>* z, const std::complex<real_t>* maps, std::complex<real_t>* out,
                   int64_t B, int64_t C, int64_t HW, bool shared_maps) {
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t begin = k * kChunk, end = std::min(HW, begin + kChunk);
      auto* o = out + b * HW;
      for (int64_t i = begin; i < end; ++i) o[i] = 0;
      for (int64_t c = 0; c < C; ++c) {
        const auto* s = maps + ((shared_maps ? 0 : b) * C + c) * HW;
        const auto* zc = z + (b * C + c) * HW;
        for (int64_t i = begin; i < end; ++i) o[i] += mbdlfast::cmul_conj(s[i], zc[i]);
      }
    }
  }
}

at::Tensor coil_expand_cpu(const at::Tensor& x, const at::Tensor& maps) {
  check_inputs(x, maps, "x");
  TORCH_CHECK(x.dim() == 3, "x must be (B,H,W)");
  const int64_t B = x.size(0), C = maps.size(1), HW = x.size(1) * x.size(2);
  TORCH_CHECK(maps.size(0) == 1 || maps.size(0) == B, "maps batch must be 1 or B");
  auto out = at::empty({B, C, x.size(1), x.size(2)}, x.options());
  AT_DISPATCH_COMPLEX_TYPES(x.scalar_type(), "coil_expand_cpu", [&] {
    using real_t = typename scalar_t::value_type;
    expand_kernel<real_t>(reinterpret_cast<const std::complex<real_t>*>(x.data_ptr()),
                          reinterpret_cast<const std::complex<real_t>*>(maps.data_ptr()),
                          reinterpret_cast<std::complex<real_t>*>(out.data_ptr()), B, C, HW, maps.size(0) == 1);
  });
  return out;
}

at::Tensor coil_reduce_cpu(const at::Tensor& z, const at::Tensor& maps) {
  check_inputs(z, maps, "z");
  TORCH_CHECK(z.dim() == 4, "z must be (B,C,H,W)");
  const int64_t B = z.size(0), C = z.size(1), HW = z.size(2) * z.size(3);
  TORCH_CHECK(maps.size(0) == 1 || maps.size(0) == B, "maps batch must be 1 or B");
  auto out = at::empty({B, z.size(2), z.size(3)}, z.options());
  AT_DISPATCH_COMPLEX_TYPES(z.scalar_type(), "coil_reduce_cpu", [&] {
    using real_t = typename scalar_t::value_type;
    reduce_kernel<real_t>(reinterpret_cast<const std::complex<real_t>*>(z.data_ptr()),
                          reinterpret_cast<const std::complex<real_t>*>(maps.data_ptr()),
                          reinterpret_cast<std::complex<real_t>*>(out.data_ptr()), B, C, HW, maps.size(0) == 1);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mbdlfast_ext, CPU, m) {
  m.impl("coil_expand", &coil_expand_cpu);
  m.impl("coil_reduce", &coil_reduce_cpu);
}
