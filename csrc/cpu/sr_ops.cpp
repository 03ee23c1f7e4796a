// CPU (OpenMP) kernel of super-resolution's data step in the Fourier domain (mbdlfast::sr_data_solve,
// USRNet's data module; the formula is mbdlfast/ops/reference.py's):
//   R = fay + alpha * fz,   X = (R - conj(K) * <K R> / (alpha + <|K|^2>)) / alpha
// where <.> is the mean over the scale^2 aliases (u + i H/s, v + j W/s) of a low-resolution frequency
// (u, v). Work is split over (batch, u): a task reads the s^2 alias rows of fz, fay and K, each along
// v contiguously, accumulates <|K|^2> once for all channels and <K R> per channel in row buffers of
// W/s entries, then writes X over the same rows (read again from cache). torch's composition of the
// formula makes about nine full passes with temporaries; this is one read of the inputs and one
// write.
#include <torch/extension.h>

#include <complex>
#include <vector>

#include "checks.h"
#include "complex_math.h"

namespace {

template <typename real_t>
void sr_data_solve_kernel(const std::complex<real_t>* fz, const std::complex<real_t>* fay,
                          const std::complex<real_t>* otf, const real_t* alpha, std::complex<real_t>* out,
                          int64_t B, int64_t C, int64_t H, int64_t W, int64_t scale, bool shared_otf) {
  using complex_t = std::complex<real_t>;
  const int64_t h = H / scale, w = W / scale;
  const real_t inverse_aliases = real_t(1) / real_t(scale * scale);
#pragma omp parallel
  {
    std::vector<real_t> power(w);
    std::vector<complex_t> weighted(w);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t u = 0; u < h; ++u) {
        const complex_t* k = otf + (shared_otf ? 0 : b) * H * W;
        const real_t a = alpha[b], inverse_alpha = real_t(1) / a;
        std::fill(power.begin(), power.end(), real_t(0));
        for (int64_t i = 0; i < scale; ++i) {
          const complex_t* k_row = k + (u + i * h) * W;
          for (int64_t j = 0; j < scale; ++j)
            for (int64_t v = 0; v < w; ++v) power[v] += std::norm(k_row[v + j * w]);
        }
        for (int64_t c = 0; c < C; ++c) {
          const int64_t plane = (b * C + c) * H * W;
          std::fill(weighted.begin(), weighted.end(), complex_t(0));
          for (int64_t i = 0; i < scale; ++i) {
            const int64_t row = (u + i * h) * W;
            for (int64_t j = 0; j < scale; ++j)
              for (int64_t v = 0; v < w; ++v) {
                const int64_t at = row + v + j * w;
                weighted[v] += mbdlfast::cmul(k[at], fay[plane + at] + a * fz[plane + at]);
              }
          }
          for (int64_t v = 0; v < w; ++v)
            weighted[v] = weighted[v] * inverse_aliases / (a + power[v] * inverse_aliases);
          for (int64_t i = 0; i < scale; ++i) {
            const int64_t row = (u + i * h) * W;
            for (int64_t j = 0; j < scale; ++j)
              for (int64_t v = 0; v < w; ++v) {
                const int64_t at = row + v + j * w;
                const complex_t rhs = fay[plane + at] + a * fz[plane + at];
                out[plane + at] = (rhs - mbdlfast::cmul_conj(k[at], weighted[v])) * inverse_alpha;
              }
          }
        }
      }
    }
  }
}

at::Tensor sr_data_solve_cpu(const at::Tensor& fz, const at::Tensor& fay, const at::Tensor& otf,
                             const at::Tensor& alpha, int64_t scale) {
  mbdlfast::check_cpu_complex(fz, "fz");
  mbdlfast::check_cpu_tensor(fay, "fay", fz.scalar_type());
  mbdlfast::check_cpu_tensor(otf, "otf", fz.scalar_type());
  mbdlfast::check_cpu_tensor(alpha, "alpha", c10::toRealValueType(fz.scalar_type()));
  TORCH_CHECK(fz.dim() == 4 && fay.sizes() == fz.sizes(), "mbdlfast cpp: fz and fay must be (B,C,H,W) alike");
  const int64_t B = fz.size(0), C = fz.size(1), H = fz.size(2), W = fz.size(3);
  TORCH_CHECK(otf.dim() == 3 && (otf.size(0) == 1 || otf.size(0) == B) && otf.size(1) == H && otf.size(2) == W,
              "mbdlfast cpp: otf must be (1|B,H,W)");
  TORCH_CHECK(alpha.dim() == 1 && alpha.size(0) == B, "mbdlfast cpp: alpha must hold one value per sample (B,)");
  TORCH_CHECK(scale >= 1 && H % scale == 0 && W % scale == 0, "mbdlfast cpp: scale must divide H and W");
  auto out = at::empty_like(fz);
  AT_DISPATCH_COMPLEX_TYPES(fz.scalar_type(), "sr_data_solve_cpu", [&] {
    using real_t = typename scalar_t::value_type;
    sr_data_solve_kernel<real_t>(reinterpret_cast<const std::complex<real_t>*>(fz.data_ptr()),
                                 reinterpret_cast<const std::complex<real_t>*>(fay.data_ptr()),
                                 reinterpret_cast<const std::complex<real_t>*>(otf.data_ptr()),
                                 alpha.data_ptr<real_t>(), reinterpret_cast<std::complex<real_t>*>(out.data_ptr()),
                                 B, C, H, W, scale, otf.size(0) == 1);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mbdlfast_ext, CPU, m) { m.impl("sr_data_solve", &sr_data_solve_cpu); }
