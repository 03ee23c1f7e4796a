// CPU (OpenMP) fused SENSE kernels for 1D masks along W, plus the soft k-space data consistency.
//
// With a mask along W only, A^H A x = sum_c conj(S_c) * T(S_c * x), T = IFFT_W diag(weight) FFT_W
// (plain, uncentred FFTs; weight = ifftshift(mask)^2, prepared in Python). The kernel works on
// blocks of image rows small enough to stay in cache: for each block it expands S*x for all coils
// into a thread-local buffer, applies T to every coil row and reduces with conj(S) -- so x and the
// maps are read once and the image written once, with no (B,C,H,W) tensor in memory.
//
// T is computed one of two ways, whichever the work model says is cheaper for (W, sampled columns):
//   * pruned: only at the sampled frequencies (pruned_row_dft.h), on rows in vector lanes, compiled
//     for AVX-512, AVX2 or baseline x86-64 and chosen at run time;
//   * fft:    two batched at::fft calls per block (MKL or pocketfft), for widths that do not split
//     well (odd W) or masks that sample most columns.
// MBDLFAST_ROW_TRANSFORM=pruned|fft forces one of them.
//
//   sense_normal(x, maps, circulant_weight)                 -> A^H A x
//   dc_gradient_step(x, maps, circulant_weight, AHy, gamma) -> x - gamma * (A^H A x - AHy)
//   soft_kspace_dc(k, y, mask, lam)                         -> k - lam * mask * (k - y)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <complex>

#include "checks.h"
#include "complex_math.h"
#include "isa_dispatch.h"
#include "lane_transpose.h"
#include "pruned_row_dft.h"

namespace {

constexpr int64_t kBlockBytes = 256 * 1024;  // coil rows per block: about half of a per-core L2

using mbdlfast::check_cpu_complex;
using mbdlfast::check_cpu_tensor;

void check_weight(const at::Tensor& weight, at::ScalarType complex_dtype) {
  const auto real = c10::toRealValueType(complex_dtype);
  TORCH_CHECK(weight.scalar_type() == real, "mbdlfast cpp: weight must be real of dtype ", real, ", got ", weight.scalar_type());
  check_cpu_tensor(weight, "weight", real);
}

struct NormalShape {
  int64_t B, C, H, W;
  bool shared_maps, shared_weight;
};

NormalShape check_normal_inputs(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight) {
  check_cpu_complex(x, "x");
  check_cpu_tensor(maps, "maps", x.scalar_type());
  check_weight(weight, x.scalar_type());
  TORCH_CHECK(x.dim() == 3, "mbdlfast cpp: x must be (B,H,W), got ", x.sizes());
  TORCH_CHECK(maps.dim() == 4, "mbdlfast cpp: maps must be (B,C,H,W), got ", maps.sizes());
  TORCH_CHECK(weight.dim() == 2, "mbdlfast cpp: weight must be (B,W), got ", weight.sizes());
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  TORCH_CHECK(maps.size(0) == 1 || maps.size(0) == B, "mbdlfast cpp: maps batch must be 1 or ", B, ", got ", maps.size(0));
  TORCH_CHECK(maps.size(2) == H && maps.size(3) == W, "mbdlfast cpp: maps must be (B,C,", H, ",", W, "), got ", maps.sizes());
  TORCH_CHECK(weight.size(0) == 1 || weight.size(0) == B, "mbdlfast cpp: weight batch must be 1 or ", B);
  TORCH_CHECK(weight.size(1) == W, "mbdlfast cpp: weight must have ", W, " columns, got ", weight.size(1));
  return {B, maps.size(1), H, W, maps.size(0) == 1, weight.size(0) == 1};
}

// Fused A^H A (and, with AHy, the gradient step) over row blocks. The at::fft calls run on one
// thread each (inside the OpenMP region ATen does not nest), on the thread's own buffers.
template <typename real_t>
void normal_rows(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight, const at::Tensor* AHy, double gamma,
                 at::Tensor& out, const NormalShape& s) {
  using cplx = std::complex<real_t>;
  const auto* xp = reinterpret_cast<const cplx*>(x.data_ptr());
  const auto* sp = reinterpret_cast<const cplx*>(maps.data_ptr());
  const auto* wp = weight.data_ptr<real_t>();
  const auto* ap = AHy ? reinterpret_cast<const cplx*>(AHy->data_ptr()) : nullptr;
  auto* op = reinterpret_cast<cplx*>(out.data_ptr());
  const int64_t HW = s.H * s.W;
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockBytes / (s.C * s.W * static_cast<int64_t>(sizeof(cplx))));
  const int64_t blocks_per_image = (s.H + rows_per_block - 1) / rows_per_block;
  const auto options = x.options();

#pragma omp parallel
  {
    at::NoGradGuard no_grad;
    auto coil_rows = at::empty({s.C, rows_per_block, s.W}, options);
    auto spectrum = at::empty_like(coil_rows);
    auto* buf = reinterpret_cast<cplx*>(coil_rows.data_ptr());
    auto* spec = reinterpret_cast<cplx*>(spectrum.data_ptr());
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < s.B * blocks_per_image; ++task) {
      const int64_t b = task / blocks_per_image;
      const int64_t h0 = (task % blocks_per_image) * rows_per_block;
      const int64_t rows = std::min(rows_per_block, s.H - h0);
      const int64_t n = rows * s.W;  // pixels in this block
      const cplx* xb = xp + b * HW + h0 * s.W;
      const cplx* sb = sp + (s.shared_maps ? 0 : b) * s.C * HW + h0 * s.W;
      const real_t* wb = wp + (s.shared_weight ? 0 : b) * s.W;
      for (int64_t c = 0; c < s.C; ++c) {
        const cplx* sc = sb + c * HW;
        cplx* bc = buf + c * rows_per_block * s.W;
        for (int64_t i = 0; i < n; ++i) bc[i] = mbdlfast::cmul(sc[i], xb[i]);
      }
      auto in_view = coil_rows.narrow(1, 0, rows);
      auto spec_view = spectrum.narrow(1, 0, rows);
      at::fft_fft_out(spec_view, in_view, c10::nullopt, -1, c10::nullopt);
      for (int64_t c = 0; c < s.C; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
          cplx* row = spec + (c * rows_per_block + r) * s.W;
          for (int64_t w = 0; w < s.W; ++w) row[w] = cplx(row[w].real() * wb[w], row[w].imag() * wb[w]);
        }
      }
      at::fft_ifft_out(in_view, spec_view, c10::nullopt, -1, c10::nullopt);
      cplx* ob = op + b * HW + h0 * s.W;
      for (int64_t i = 0; i < n; ++i) ob[i] = 0;
      for (int64_t c = 0; c < s.C; ++c) {
        const cplx* sc = sb + c * HW;
        const cplx* bc = buf + c * rows_per_block * s.W;
        for (int64_t i = 0; i < n; ++i) ob[i] += mbdlfast::cmul_conj(sc[i], bc[i]);
      }
      if (ap) {
        const cplx* ab = ap + b * HW + h0 * s.W;
        const real_t g = static_cast<real_t>(gamma);
        for (int64_t i = 0; i < n; ++i) ob[i] = xb[i] - g * (ob[i] - ab[i]);
      }
    }
  }
}

// One block of the pruned path: image rows [h0, h0 + rows) of one batch element, all coils, taken
// kLanes coil rows at a time (lane l of chunk r0 is coil (r0 + l) / rows, row (r0 + l) % rows).
template <typename real_t>
struct PrunedBlock {
  const mbdlfast::PrunedRowPlan<real_t>* plan;
  const std::complex<real_t>* x;     // rows x W, row stride W
  const std::complex<real_t>* maps;  // C x rows x W, coil stride HW
  const std::complex<real_t>* AHy;   // rows x W or null
  std::complex<real_t>* out;         // rows x W
  int64_t rows, C, HW;
  real_t gamma;
  real_t* re;    // W * kLanes
  real_t* im;    // W * kLanes
  real_t* work;  // plan->work_size()
  const std::complex<real_t>* zeros;  // W zeros
};


// The pruned path on one block (see PrunedBlock); with ``avx512`` and float, the coil products use
// the register transposes of lane_transpose.h.
template <typename real_t>
struct PrunedNormalBlock {
  using Args = PrunedBlock<real_t>;

  template <bool avx512>
  MBDLFAST_INLINE static void run(const Args& blk) {
    using cplx = std::complex<real_t>;
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    const int64_t W = blk.plan->W, n_rows = blk.C * blk.rows;
    for (int64_t i = 0; i < blk.rows * W; ++i) blk.out[i] = 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += L) {
      // Lanes past the last coil row read a zero row and write nowhere.
      const cplx* s[L];
      const cplx* xs[L];
      cplx* o[L];
      for (int l = 0; l < L; ++l) {
        const int64_t r = r0 + l, j = r % blk.rows;
        const bool valid = r < n_rows;
        s[l] = valid ? blk.maps + (r / blk.rows) * blk.HW + j * W : blk.zeros;
        xs[l] = valid ? blk.x + j * W : blk.zeros;
        o[l] = valid ? blk.out + j * W : nullptr;
      }
      mbdlfast::rows_to_lanes<avx512>(s, xs, W, blk.re, blk.im);
      mbdlfast::pruned_row_normal(*blk.plan, blk.re, blk.im, blk.work);
      mbdlfast::lanes_to_rows<avx512>(s, blk.re, blk.im, W, o);
    }
    if (blk.AHy) {
      for (int64_t i = 0; i < blk.rows * W; ++i) blk.out[i] = blk.x[i] - blk.gamma * (blk.out[i] - blk.AHy[i]);
    }
  }
};

template <typename real_t>
void normal_rows_pruned(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight, const at::Tensor* AHy,
                        double gamma, at::Tensor& out, const NormalShape& s) {
  using cplx = std::complex<real_t>;
  using Plan = mbdlfast::PrunedRowPlan<real_t>;
  constexpr int L = Plan::kLanes;
  const auto* wp = weight.data_ptr<real_t>();
  std::vector<Plan> plans;
  for (int64_t b = 0; b < (s.shared_weight ? 1 : s.B); ++b) plans.push_back(mbdlfast::make_pruned_row_plan(wp + b * s.W, s.W, 1.0 / s.W));
  int64_t work_size = 0;
  for (const auto& plan : plans) work_size = std::max(work_size, plan.work_size());
  const auto kernel = mbdlfast::best_isa<PrunedNormalBlock<real_t>>();
  const auto* xp = reinterpret_cast<const cplx*>(x.data_ptr());
  const auto* sp = reinterpret_cast<const cplx*>(maps.data_ptr());
  const auto* ap = AHy ? reinterpret_cast<const cplx*>(AHy->data_ptr()) : nullptr;
  auto* op = reinterpret_cast<cplx*>(out.data_ptr());
  const int64_t HW = s.H * s.W, rows_per_block = L, blocks_per_image = (s.H + L - 1) / L;
#pragma omp parallel
  {
    std::vector<real_t> buffer(2 * s.W * L + work_size);
    const std::vector<cplx> zeros(s.W);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < s.B * blocks_per_image; ++task) {
      const int64_t b = task / blocks_per_image, h0 = (task % blocks_per_image) * rows_per_block;
      const int64_t offset = b * HW + h0 * s.W;
      PrunedBlock<real_t> blk{&plans[s.shared_weight ? 0 : b], xp + offset,
                              sp + (s.shared_maps ? 0 : b) * s.C * HW + h0 * s.W, ap ? ap + offset : nullptr,
                              op + offset, std::min(rows_per_block, s.H - h0), s.C, HW, static_cast<real_t>(gamma),
                              buffer.data(), buffer.data() + s.W * L, buffer.data() + 2 * s.W * L, zeros.data()};
      kernel(blk);
    }
  }
}

at::Tensor normal_or_step(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight, const at::Tensor* AHy,
                          double gamma) {
  const auto shape = check_normal_inputs(x, maps, weight);
  if (AHy) {
    check_cpu_tensor(*AHy, "AHy", x.scalar_type());
    TORCH_CHECK(AHy->sizes() == x.sizes(), "mbdlfast cpp: AHy must have the shape of x ", x.sizes(), ", got ", AHy->sizes());
  }
  auto out = at::empty_like(x);
  const auto sampled = weight.ne(0).sum(1).max().item<int64_t>();
  AT_DISPATCH_COMPLEX_TYPES(x.scalar_type(), "mbdlfast_normal_1d", [&] {
    if (mbdlfast::use_pruned_rows(shape.W, sampled)) {
      normal_rows_pruned<typename scalar_t::value_type>(x, maps, weight, AHy, gamma, out, shape);
    } else {
      normal_rows<typename scalar_t::value_type>(x, maps, weight, AHy, gamma, out, shape);
    }
  });
  return out;
}

at::Tensor sense_normal_cpu(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& circulant_weight) {
  return normal_or_step(x, maps, circulant_weight, nullptr, 0.0);
}

// A real one-element CPU tensor as a double (gamma, lam).
double real_scalar(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.numel() == 1 && !t.is_complex() && t.device().is_cpu(), "mbdlfast cpp: ", name,
              " must be a real one-element CPU tensor, got ", t.scalar_type(), " ", t.sizes(), " on ", t.device());
  return t.item<double>();
}

at::Tensor dc_gradient_step_cpu(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& circulant_weight,
                                const at::Tensor& AHy, const at::Tensor& gamma) {
  return normal_or_step(x, maps, circulant_weight, &AHy, real_scalar(gamma, "gamma"));
}

template <typename real_t>
void soft_dc_rows(const at::Tensor& k, const at::Tensor& y, const at::Tensor& weight, double lam, at::Tensor& out) {
  using cplx = std::complex<real_t>;
  const int64_t B = k.size(0), C = k.size(1), H = k.size(2), W = k.size(3);
  const auto* kp = reinterpret_cast<const cplx*>(k.data_ptr());
  const auto* yp = reinterpret_cast<const cplx*>(y.data_ptr());
  const auto* wp = weight.data_ptr<real_t>();
  auto* op = reinterpret_cast<cplx*>(out.data_ptr());
  const int64_t wb_stride = weight.size(0) == 1 ? 0 : weight.size(1) * W, wh_stride = weight.size(1) == 1 ? 0 : W;
  const real_t l = static_cast<real_t>(lam);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bc = 0; bc < B * C; ++bc) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = (bc * H + h) * W;
      const real_t* wrow = wp + (bc / C) * wb_stride + h * wh_stride;
      for (int64_t w = 0; w < W; ++w) op[base + w] = kp[base + w] - (l * wrow[w]) * (kp[base + w] - yp[base + w]);
    }
  }
}

// k - lam * weight * (k - y); weight (B|1, H|1, W) real, broadcast over coils.
at::Tensor soft_kspace_dc_cpu(const at::Tensor& k, const at::Tensor& y, const at::Tensor& weight, const at::Tensor& lam) {
  check_cpu_complex(k, "k");
  check_cpu_tensor(y, "y", k.scalar_type());
  check_weight(weight, k.scalar_type());
  TORCH_CHECK(k.dim() == 4, "mbdlfast cpp: k must be (B,C,H,W), got ", k.sizes());
  TORCH_CHECK(y.sizes() == k.sizes(), "mbdlfast cpp: y must have the shape of k ", k.sizes(), ", got ", y.sizes());
  const int64_t B = k.size(0), H = k.size(2), W = k.size(3);
  TORCH_CHECK(weight.dim() == 3 && (weight.size(0) == 1 || weight.size(0) == B) && (weight.size(1) == 1 || weight.size(1) == H) &&
                  weight.size(2) == W,
              "mbdlfast cpp: weight must be (B|1, H|1, W) with B=", B, " H=", H, " W=", W, ", got ", weight.sizes());
  const double lam_value = real_scalar(lam, "lam");
  auto out = at::empty_like(k);
  AT_DISPATCH_COMPLEX_TYPES(k.scalar_type(), "mbdlfast_soft_dc", [&] {
    soft_dc_rows<typename scalar_t::value_type>(k, y, weight, lam_value, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mbdlfast_ext, CPU, m) {
  m.impl("sense_normal", &sense_normal_cpu);
  m.impl("dc_gradient_step", &dc_gradient_step_cpu);
  m.impl("soft_kspace_dc", &soft_kspace_dc_cpu);
}
