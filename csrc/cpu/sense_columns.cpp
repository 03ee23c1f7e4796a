// CPU (OpenMP) SENSE forward and adjoint for 1D masks along W, in compact and full k-space form.
//
// Only the sampled columns of k-space are ever computed. Forward, per batch entry: blocks of image
// rows are expanded over the coils with the input modulation q folded in (S_c * q_h q_w * x),
// transformed along W in a thread-local buffer, and only the sampled columns (times the output
// modulation p_w) are kept, stored column-major as (C, n_s, H); then, coil by coil, the transform
// along H runs on contiguous columns and the same thread multiplies by p_h and writes the k-space
// rows (compact, or full rows with zeros in between) while the coil's spectrum is in cache. The
// adjoint runs the same steps backwards, zero-filling rows in cache instead of in memory.
// The transform along W runs one of two ways (see pruned_row_dft.h): at the sampled frequencies only,
// on coil rows in vector lanes, where the work model prefers it; otherwise as batched at::fft calls.
// Centring without shifts: fftc(x)[k] = p[k] FFT(q x)[k], q[n] = w^(-c n), p[k] = w^(c^2 - c k),
// c = N / 2, w = exp(-2 pi i / N); ifftc is its conjugate transpose.
//
//   sense_forward_compact(x, maps, columns) -> (B,C,H,n_s)   columns int64 (B|1, n_s)
//   sense_adjoint_compact(yc, maps, columns) -> (B,H,W)
//   sense_forward_1d(x, maps, weight)        -> (B,C,H,W)    weight real (B|1, W), centred order
//   sense_adjoint_1d(y, maps, weight)        -> (B,H,W)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "checks.h"
#include "complex_math.h"
#include "isa_dispatch.h"
#include "lane_transpose.h"
#include "pruned_row_dft.h"
#include "streaming_store.h"

namespace {

using mbdlfast::cmul;
using mbdlfast::cmul_conj;

constexpr int64_t kBlockBytes = 256 * 1024;  // coil rows per block: about half of a per-core L2

template <typename real_t>
struct Phases {
  std::vector<std::complex<real_t>> q, p;  // input and output modulation of the centred DFT
  explicit Phases(int64_t n) : q(n), p(n) {
    const int64_t c = n / 2;
    for (int64_t i = 0; i < n; ++i) {
      q[i] = std::complex<real_t>(mbdlfast::unit_root(c * i, n));
      p[i] = std::complex<real_t>(mbdlfast::unit_root(c * i - c * c, n));
    }
  }
};

// Sampled columns and their scale factors for one batch entry (or for all, when shared), and what
// the transform along W needs for them, set once per call by prepare_row_transform.
template <typename real_t>
struct Columns {
  std::vector<int64_t> index;
  std::vector<real_t> scale;
  std::vector<std::complex<real_t>> phase;  // the output modulation p_w at each column
  bool pruned = false;                      // the pruned row transform, else batched at::fft calls
  mbdlfast::PrunedRowPlan<real_t> plan;     // pruned: the plan for the distinct columns
  std::vector<int64_t> position;            // pruned: each column's position in the plan
};

using mbdlfast::check_cpu_complex;
using mbdlfast::check_cpu_tensor;

// Checks the image-side operands: `image` (B,H,W) when given, maps (B|1,C,H,W). Returns {B,C,H,W}.
std::vector<int64_t> check_maps(const at::Tensor& maps, at::ScalarType dtype, int64_t B) {
  check_cpu_tensor(maps, "maps", dtype);
  TORCH_CHECK(maps.dim() == 4, "mbdlfast cpp: maps must be (B,C,H,W), got ", maps.sizes());
  TORCH_CHECK(maps.size(0) == 1 || maps.size(0) == B, "mbdlfast cpp: maps batch must be 1 or ", B, ", got ", maps.size(0));
  return {B, maps.size(1), maps.size(2), maps.size(3)};
}

template <typename real_t>
std::vector<Columns<real_t>> columns_from_index(const at::Tensor& columns, int64_t B, int64_t W) {
  check_cpu_tensor(columns, "columns", at::kLong);
  TORCH_CHECK(columns.dim() == 2 && (columns.size(0) == 1 || columns.size(0) == B),
              "mbdlfast cpp: columns must be (B|1, n_s) with B=", B, ", got ", columns.sizes());
  const int64_t n = columns.size(1);
  const auto* cp = columns.data_ptr<int64_t>();
  std::vector<Columns<real_t>> out(columns.size(0));
  for (int64_t b = 0; b < columns.size(0); ++b) {
    out[b].index.assign(cp + b * n, cp + (b + 1) * n);
    for (int64_t col : out[b].index) {
      TORCH_CHECK(col >= 0 && col < W, "mbdlfast cpp: columns must lie in [0, ", W, "), got ", col);
    }
    out[b].scale.assign(n, real_t(1));
  }
  return out;
}

template <typename real_t>
std::vector<Columns<real_t>> columns_from_weight(const at::Tensor& weight, at::ScalarType complex_dtype, int64_t B, int64_t W) {
  check_cpu_tensor(weight, "weight", c10::toRealValueType(complex_dtype));
  TORCH_CHECK(weight.dim() == 2 && (weight.size(0) == 1 || weight.size(0) == B) && weight.size(1) == W,
              "mbdlfast cpp: weight must be (B|1, W) with B=", B, " W=", W, ", got ", weight.sizes());
  const auto* wp = weight.data_ptr<real_t>();
  std::vector<Columns<real_t>> out(weight.size(0));
  for (int64_t b = 0; b < weight.size(0); ++b) {
    for (int64_t w = 0; w < W; ++w) {
      if (wp[b * W + w] != real_t(0)) {
        out[b].index.push_back(w);
        out[b].scale.push_back(wp[b * W + w]);
      }
    }
  }
  return out;
}

int64_t rows_per_block(int64_t C, int64_t W, size_t element_bytes) {
  return std::max<int64_t>(1, kBlockBytes / (C * W * static_cast<int64_t>(element_bytes)));
}

// The pruned row transform over one block of up to kLanes image rows [h0, h0 + rows), coil by coil
// (lane l = image row h0 + l). Output column j is the plan's frequency position[j] times phase[j].
template <typename real_t>
struct ColumnBlock {
  const mbdlfast::PrunedRowPlan<real_t>* plan;
  const std::complex<real_t>* maps;   // C x rows x W at row h0, coil stride HW
  const std::complex<real_t>* image;  // forward: q_h q_w x for the block's rows (rows x W)
  std::complex<real_t>* out;          // adjoint: the block's image rows (rows x W)
  const std::complex<real_t>* rows_k_in;  // adjoint input (C, n, H)
  std::complex<real_t>* rows_k_out;       // forward output (C, n, H)
  const int64_t* position;            // n plan positions
  const std::complex<real_t>* phase;  // n column phases
  int64_t rows, C, H, HW, h0, n;
  real_t *re, *im, *work;
  const std::complex<real_t>* zeros;  // W zeros
};

template <typename real_t>
MBDLFAST_INLINE void lane_rows(const ColumnBlock<real_t>& blk, int64_t c, const std::complex<real_t>** maps_rows,
                               const std::complex<real_t>** image_rows, std::complex<real_t>** out_rows) {
  const int64_t W = blk.plan->W;
  for (int l = 0; l < mbdlfast::PrunedRowPlan<real_t>::kLanes; ++l) {
    const bool valid = l < blk.rows;
    maps_rows[l] = valid ? blk.maps + c * blk.HW + l * W : blk.zeros;
    if (image_rows) image_rows[l] = valid ? blk.image + l * W : blk.zeros;
    if (out_rows) out_rows[l] = valid ? blk.out + l * W : nullptr;
  }
}

template <typename real_t>
struct PrunedForwardBlock {
  using Args = ColumnBlock<real_t>;

  template <bool avx512>
  MBDLFAST_INLINE static void run(const Args& blk) {
    using cplx = std::complex<real_t>;
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    const int64_t W = blk.plan->W, S = blk.plan->sampled();
    const real_t* z = mbdlfast::pruned_spectrum(*blk.plan, blk.work);
    for (int64_t c = 0; c < blk.C; ++c) {
      const cplx* s[L];
      const cplx* xs[L];
      lane_rows(blk, c, s, xs, static_cast<cplx**>(nullptr));
      mbdlfast::rows_to_lanes<avx512>(s, xs, W, blk.re, blk.im);
      mbdlfast::pruned_row_forward(*blk.plan, blk.re, blk.im, blk.work);
      cplx* dst = blk.rows_k_out + c * blk.n * blk.H + blk.h0;
      for (int64_t j = 0; j < blk.n; ++j) {
        const int64_t p = blk.position[j];
        mbdlfast::lanes_to_segment(z + p * L, z + (S + p) * L, blk.phase[j], blk.rows, dst + j * blk.H);
      }
    }
  }
};

template <typename real_t>
struct PrunedAdjointBlock {
  using Args = ColumnBlock<real_t>;

  template <bool avx512>
  MBDLFAST_INLINE static void run(const Args& blk) {
    using cplx = std::complex<real_t>;
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    const int64_t W = blk.plan->W, S = blk.plan->sampled();
    real_t* z = mbdlfast::pruned_spectrum(*blk.plan, blk.work);
    for (int64_t i = 0; i < blk.rows * W; ++i) blk.out[i] = 0;
    for (int64_t c = 0; c < blk.C; ++c) {
      std::fill(z, z + 2 * S * L, real_t(0));
      const cplx* src = blk.rows_k_in + c * blk.n * blk.H + blk.h0;
      for (int64_t j = 0; j < blk.n; ++j) {  // += so that repeated columns add up, as the adjoint of a gather must
        const int64_t p = blk.position[j];
        mbdlfast::segment_to_lanes_add(src + j * blk.H, blk.phase[j], blk.rows, z + p * L, z + (S + p) * L);
      }
      mbdlfast::pruned_row_adjoint(*blk.plan, blk.re, blk.im, blk.work);
      const cplx* s[L];
      cplx* o[L];
      lane_rows(blk, c, s, static_cast<const cplx**>(nullptr), o);
      mbdlfast::lanes_to_rows<avx512>(s, blk.re, blk.im, W, o);
    }
  }
};

// The plan for the distinct sampled columns (scale 1/sqrt(W), the "ortho" FFT) and each column's
// position in it.
template <typename real_t>
mbdlfast::PrunedRowPlan<real_t> column_plan(const std::vector<int64_t>& index, int64_t W, std::vector<int64_t>& position) {
  std::vector<real_t> sampled(W, real_t(0));
  for (int64_t col : index) sampled[col] = real_t(1);
  auto plan = mbdlfast::make_pruned_row_plan(sampled.data(), W, 1.0 / std::sqrt(static_cast<double>(W)));
  position.clear();
  for (int64_t col : index) position.push_back(plan.position[col]);
  return plan;
}

int64_t distinct_columns(const std::vector<int64_t>& index) {
  std::vector<int64_t> sorted(index);
  std::sort(sorted.begin(), sorted.end());
  return std::unique(sorted.begin(), sorted.end()) - sorted.begin();
}

// The column phases, the choice of row transform and, when pruned, its plan: once per column set.
template <typename real_t>
void prepare_row_transform(Columns<real_t>& cols, const Phases<real_t>& ph_w) {
  const int64_t W = static_cast<int64_t>(ph_w.p.size());
  cols.phase.clear();
  for (int64_t col : cols.index) cols.phase.push_back(ph_w.p[col]);
  cols.pruned = !cols.index.empty() && mbdlfast::use_pruned_rows(W, distinct_columns(cols.index));
  if (cols.pruned) cols.plan = column_plan<real_t>(cols.index, W, cols.position);
}

// q_h q_w x for image rows [h0, h0 + rows) of x (H,W), into ``x_mod`` (rows x W).
template <typename real_t>
void modulated_rows(const std::complex<real_t>* x, int64_t h0, int64_t rows, int64_t W, const Phases<real_t>& ph_h,
                    const Phases<real_t>& ph_w, std::complex<real_t>* x_mod) {
  for (int64_t r = 0; r < rows; ++r) {
    const std::complex<real_t> qh = ph_h.q[h0 + r];
    const std::complex<real_t>* xr = x + (h0 + r) * W;
    for (int64_t w = 0; w < W; ++w) x_mod[r * W + w] = cmul(xr[w], cmul(qh, ph_w.q[w]));
  }
}

// Forward, along W: rows_k (C,n,H) = p_w * FFT_W(S_c q_h q_w x) at the sampled columns; pruned.
template <typename real_t>
void forward_rows_pruned(const std::complex<real_t>* xp, const std::complex<real_t>* sp, const Columns<real_t>& cols,
                         const Phases<real_t>& ph_h, const Phases<real_t>& ph_w, int64_t C, int64_t H, int64_t W,
                         std::complex<real_t>* rk) {
  using cplx = std::complex<real_t>;
  constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
  const auto& plan = cols.plan;
  const auto kernel = mbdlfast::best_isa<PrunedForwardBlock<real_t>>();
  const int64_t n = static_cast<int64_t>(cols.index.size()), blocks = (H + L - 1) / L;
#pragma omp parallel
  {
    std::vector<real_t> lanes(2 * W * L + plan.work_size());
    std::vector<cplx> x_mod(L * W);
    const std::vector<cplx> zeros(W);
#pragma omp for schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t h0 = block * L, rows = std::min<int64_t>(L, H - h0);
      modulated_rows(xp, h0, rows, W, ph_h, ph_w, x_mod.data());
      kernel({&plan, sp + h0 * W, x_mod.data(), nullptr, nullptr, rk, cols.position.data(), cols.phase.data(), rows, C, H, H * W, h0, n,
              lanes.data(), lanes.data() + W * L, lanes.data() + 2 * W * L, zeros.data()});
    }
  }
}

// The same with batched at::fft calls over blocks of rows.
template <typename real_t>
void forward_rows_fft(const std::complex<real_t>* xp, const std::complex<real_t>* sp, const Columns<real_t>& cols,
                      const Phases<real_t>& ph_h, const Phases<real_t>& ph_w, int64_t C, int64_t H, int64_t W,
                      const at::TensorOptions& options, std::complex<real_t>* rk) {
  using cplx = std::complex<real_t>;
  const int64_t HW = H * W;
  const int64_t n = static_cast<int64_t>(cols.index.size());
  const int64_t rows_max = rows_per_block(C, W, sizeof(cplx));
  const int64_t blocks = (H + rows_max - 1) / rows_max;
#pragma omp parallel
  {
    at::NoGradGuard no_grad;
    auto coil_rows = at::empty({C, rows_max, W}, options);
    auto spectrum = at::empty_like(coil_rows);
    auto* buf = reinterpret_cast<cplx*>(coil_rows.data_ptr());
    const auto* spec = reinterpret_cast<const cplx*>(spectrum.data_ptr());
    std::vector<cplx> x_mod(rows_max * W);  // q_h q_w x for the block's rows, shared by the coils
#pragma omp for schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t h0 = block * rows_max, rows = std::min(rows_max, H - h0);
      modulated_rows(xp, h0, rows, W, ph_h, ph_w, x_mod.data());
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
          const cplx* sr = sp + c * HW + (h0 + r) * W;
          const cplx* xr = x_mod.data() + r * W;
          cplx* br = buf + (c * rows_max + r) * W;
          for (int64_t w = 0; w < W; ++w) br[w] = cmul(sr[w], xr[w]);
        }
      }
      auto spectrum_view = spectrum.narrow(1, 0, rows);
      at::fft_fft_out(spectrum_view, coil_rows.narrow(1, 0, rows), c10::nullopt, -1, "ortho");
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
          const cplx* sr = spec + (c * rows_max + r) * W;
          cplx* dst = rk + c * n * H + h0 + r;
          for (int64_t j = 0; j < n; ++j) dst[j * H] = cmul(sr[cols.index[j]], cols.phase[j]);
        }
      }
    }
  }
}

// One batch entry of the forward along W: x_b (H,W), maps_b (C,H,W) -> the sampled columns of the
// row-transformed coil images (times p_w), column-major (C,n,H).
template <typename real_t>
at::Tensor forward_columns(const at::Tensor& x_b, const at::Tensor& maps_b, const Columns<real_t>& cols, const Phases<real_t>& ph_h,
                           const Phases<real_t>& ph_w) {
  using cplx = std::complex<real_t>;
  const int64_t C = maps_b.size(0), H = maps_b.size(1), W = maps_b.size(2);
  const int64_t n = static_cast<int64_t>(cols.index.size());
  const auto* xp = reinterpret_cast<const cplx*>(x_b.data_ptr());
  const auto* sp = reinterpret_cast<const cplx*>(maps_b.data_ptr());
  auto rows_k = at::empty({C, n, H}, x_b.options());
  auto* rk = reinterpret_cast<cplx*>(rows_k.data_ptr());
  if (cols.pruned) {
    forward_rows_pruned(xp, sp, cols, ph_h, ph_w, C, H, W, rk);
  } else {
    forward_rows_fft(xp, sp, cols, ph_h, ph_w, C, H, W, x_b.options(), rk);
  }
  return rows_k;
}

// k-space rows per step of the column <-> row passes: each column contributes one cache line (read
// once, in column order), and the tile's rows stay in L1.
constexpr int64_t kRowTile = 8;

// One coil's k-space rows from its H-transformed columns (n,H): out[h, col_j] = p_h[h] * scale[j] *
// norm * columns[j, h], with col_j = index[j] in full rows of width W (the other columns zero) or j
// in compact rows of width n. The rows are assembled in ``staged`` (kRowTile x width, zero where no
// column is sampled) and streamed out.
template <typename real_t>
void columns_to_rows(const std::complex<real_t>* columns, const Columns<real_t>& cols, const Phases<real_t>& ph_h, int64_t H,
                     real_t norm, int64_t width, bool full, std::complex<real_t>* staged, std::complex<real_t>* out) {
  const int64_t n = static_cast<int64_t>(cols.index.size());
  for (int64_t h0 = 0; h0 < H; h0 += kRowTile) {
    const int64_t rows = std::min(kRowTile, H - h0);
    for (int64_t j = 0; j < n; ++j) {
      const std::complex<real_t>* src = columns + j * H + h0;
      std::complex<real_t>* dst = staged + (full ? cols.index[j] : j);
      const real_t s = cols.scale[j] * norm;
      for (int64_t l = 0; l < rows; ++l) dst[l * width] = cmul(src[l], ph_h.p[h0 + l]) * s;
    }
    for (int64_t l = 0; l < rows; ++l) mbdlfast::stream_copy(staged + l * width, out + (h0 + l) * width, width);
  }
  mbdlfast::stream_fence();
}

// Its transpose, the adjoint's gather for one coil: columns[j, h] = conj(p_h[h]) * scale[j] * norm * in[h, col_j].
template <typename real_t>
void rows_to_columns(const std::complex<real_t>* in, const Columns<real_t>& cols, const Phases<real_t>& ph_h, int64_t H,
                     real_t norm, int64_t width, bool full, std::complex<real_t>* columns) {
  const int64_t n = static_cast<int64_t>(cols.index.size());
  for (int64_t h0 = 0; h0 < H; h0 += kRowTile) {
    const int64_t rows = std::min(kRowTile, H - h0);
    for (int64_t j = 0; j < n; ++j) {
      const std::complex<real_t>* src = in + h0 * width + (full ? cols.index[j] : j);
      std::complex<real_t>* dst = columns + j * H + h0;
      const real_t s = cols.scale[j] * norm;
      for (int64_t l = 0; l < rows; ++l) dst[l] = cmul_conj(ph_h.p[h0 + l], src[l * width]) * s;
      // The next tile's rows: more streams than the hardware prefetcher follows.
      for (int64_t l = kRowTile; l < std::min(2 * kRowTile, H - h0); ++l) __builtin_prefetch(src + l * width);
    }
  }
}

// The transform along H: on columns in vector lanes (kLanes columns per block) with a plan for every
// one of the H frequencies, where the work model prefers it (use_column_lanes), else batched at::fft
// calls. Both scale by the "ortho" 1/sqrt(H): the lane plan in its spectrum, the library path in the
// k-space pass (its FFTs run unnormalised, which saves the library a pass).
template <typename real_t>
struct ColumnTransform {
  bool lanes;
  mbdlfast::PrunedRowPlan<real_t> plan;  // lanes: length H, every frequency
  real_t norm;
  explicit ColumnTransform(int64_t H) : lanes(mbdlfast::use_column_lanes(H)) {
    const double ortho = 1.0 / std::sqrt(static_cast<double>(H));
    norm = static_cast<real_t>(ortho);
    if (!lanes) return;
    const std::vector<real_t> every(H, real_t(1));
    plan = mbdlfast::make_pruned_row_plan(every.data(), H, ortho);
  }
};

// Each lane's k-space column (index in full rows, position in compact ones) and scale, padded with
// column 0 and scale 0 to whole blocks of kLanes.
template <typename real_t>
struct LaneColumns {
  std::vector<int64_t> column;
  std::vector<real_t> scale;
  int64_t n, blocks;  // columns, and blocks of kLanes
  LaneColumns(const Columns<real_t>& cols, bool full) : n(static_cast<int64_t>(cols.index.size())) {
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    blocks = (n + L - 1) / L;
    column.assign(blocks * L, 0);
    scale.assign(blocks * L, real_t(0));
    for (int64_t j = 0; j < n; ++j) column[j] = full ? cols.index[j] : j, scale[j] = cols.scale[j];
  }
};

// One coil of the lane transform along H: forward, its (n,H) columns -> its (H,width) k-space rows;
// adjoint, the reverse. The spectra of all blocks stay in ``spectra`` (blocks * plan.work_size()) so
// that k-space is written and read row by row.
template <typename real_t>
struct ColumnLanesArgs {
  const mbdlfast::PrunedRowPlan<real_t>* plan;
  const LaneColumns<real_t>* lanes;
  const std::complex<real_t>* p_h;  // the output modulation along H
  int64_t width;
  bool full;
  const std::complex<real_t>* columns_in;  // forward
  std::complex<real_t>* kspace_out;
  const std::complex<real_t>* kspace_in;   // adjoint
  std::complex<real_t>* columns_out;
  real_t *re, *im, *spectra;               // H * kLanes, H * kLanes, blocks * plan.work_size()
  std::complex<real_t>* line;              // one k-space row's values in lane order, blocks * kLanes
  std::complex<real_t>* staged_row;        // forward, full rows: a row of width zeros, filled at the sampled columns
  const std::complex<real_t>* zeros;       // H zeros
};

// A row's values in lane order to their columns of a full k-space row, and back (padding lanes read
// column 0). Scalar on purpose: vectorised, GCC makes them AVX-512 scatters and gathers, which
// profiled slower than these loops on the EPYC (Zen) we measure on.
template <typename real_t>
__attribute__((noinline, optimize("no-tree-vectorize"))) void scatter_to_columns(const std::complex<real_t>* line,
                                                                                 const int64_t* column, int64_t n,
                                                                                 std::complex<real_t>* row) {
  for (int64_t j = 0; j < n; ++j) row[column[j]] = line[j];
}

template <typename real_t>
__attribute__((noinline, optimize("no-tree-vectorize"))) void gather_from_columns(const std::complex<real_t>* row,
                                                                                  const int64_t* column, int64_t n,
                                                                                  std::complex<real_t>* line) {
  for (int64_t j = 0; j < n; ++j) line[j] = row[column[j]];
}

template <typename real_t>
struct ColumnLanesForward {
  using Args = ColumnLanesArgs<real_t>;

  template <bool avx512>
  MBDLFAST_INLINE static void run(const Args& a) {
    using cplx = std::complex<real_t>;
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    const auto& plan = *a.plan;
    const int64_t H = plan.W, ws = plan.work_size(), blocks = a.lanes->blocks;
    for (int64_t jb = 0; jb < blocks; ++jb) {
      const cplx* x[L];
      for (int l = 0; l < L; ++l) x[l] = jb * L + l < a.lanes->n ? a.columns_in + (jb * L + l) * H : a.zeros;
      mbdlfast::rows_to_lanes<avx512>(x, H, a.re, a.im);
      mbdlfast::pruned_row_forward(plan, a.re, a.im, a.spectra + jb * ws);
    }
    for (int64_t h = 0; h < H; ++h) {
      const real_t pr = a.p_h[h].real(), pi = a.p_h[h].imag();
      for (int64_t jb = 0; jb < blocks; ++jb) {
        const real_t* zr = mbdlfast::pruned_spectrum(plan, a.spectra + jb * ws) + plan.position[h] * L;
        const real_t* zi = zr + H * L;
        const real_t* s = a.lanes->scale.data() + jb * L;
        real_t* line = reinterpret_cast<real_t*>(a.line + jb * L);
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          line[2 * l] = s[l] * (zr[l] * pr - zi[l] * pi), line[2 * l + 1] = s[l] * (zr[l] * pi + zi[l] * pr);
        }
      }
      if (a.full) scatter_to_columns(a.line, a.lanes->column.data(), a.lanes->n, a.staged_row);
      mbdlfast::stream_copy(a.full ? a.staged_row : a.line, a.kspace_out + h * a.width, a.width);
    }
    mbdlfast::stream_fence();
  }
};

template <typename real_t>
struct ColumnLanesAdjoint {
  using Args = ColumnLanesArgs<real_t>;

  template <bool avx512>
  MBDLFAST_INLINE static void run(const Args& a) {
    using cplx = std::complex<real_t>;
    constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
    const auto& plan = *a.plan;
    const int64_t H = plan.W, ws = plan.work_size(), blocks = a.lanes->blocks;
    for (int64_t h = 0; h < H; ++h) {  // every frequency is in the plan, so this sets every spectrum value
      const cplx* row = a.kspace_in + h * a.width;
      if (a.full) {
        gather_from_columns(row, a.lanes->column.data(), a.lanes->blocks * L, a.line);
      } else {
        std::copy(row, row + a.lanes->n, a.line);
      }
      const real_t pr = a.p_h[h].real(), pi = -a.p_h[h].imag();
      for (int64_t jb = 0; jb < blocks; ++jb) {
        real_t* zr = mbdlfast::pruned_spectrum(plan, a.spectra + jb * ws) + plan.position[h] * L;
        real_t* zi = zr + H * L;
        const real_t* s = a.lanes->scale.data() + jb * L;
        const real_t* line = reinterpret_cast<const real_t*>(a.line + jb * L);
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          zr[l] = s[l] * (line[2 * l] * pr - line[2 * l + 1] * pi), zi[l] = s[l] * (line[2 * l] * pi + line[2 * l + 1] * pr);
        }
      }
    }
    for (int64_t jb = 0; jb < blocks; ++jb) {
      mbdlfast::pruned_row_adjoint(plan, a.re, a.im, a.spectra + jb * ws);
      cplx* out[L];
      for (int l = 0; l < L; ++l) out[l] = jb * L + l < a.lanes->n ? a.columns_out + (jb * L + l) * H : nullptr;
      mbdlfast::lanes_to_rows<avx512>(a.re, a.im, H, out);
    }
  }
};

// Runs the lane kernel ``Kernel`` on every coil, in parallel; ``coil_args(args, c)`` points the
// per-thread arguments at coil c.
template <class Kernel, typename real_t, class CoilArgs>
void column_lanes_per_coil(const ColumnTransform<real_t>& transform, const LaneColumns<real_t>& lanes, int64_t C,
                           const Phases<real_t>& ph_h, int64_t width, bool full, CoilArgs coil_args) {
  constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
  const int64_t H = transform.plan.W;
  const auto kernel = mbdlfast::best_isa<Kernel>();
#pragma omp parallel
  {
    std::vector<real_t> buffer(2 * H * L + lanes.blocks * transform.plan.work_size());
    std::vector<std::complex<real_t>> line(lanes.blocks * L), staged_row(width);
    const std::vector<std::complex<real_t>> zeros(H);
    ColumnLanesArgs<real_t> args{&transform.plan, &lanes,  ph_h.p.data(), width,         full,
                                 nullptr,         nullptr, nullptr,       nullptr,       buffer.data(),
                                 buffer.data() + H * L,     buffer.data() + 2 * H * L, line.data(),
                                 staged_row.data(),         zeros.data()};
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      coil_args(args, c);
      kernel(args);
    }
  }
}

// The forward's transform along H and its k-space write, coil by coil so that each coil's spectrum
// (n x H) is written out from cache: rows_k (C,n,H) -> out (C,H,width).
template <typename real_t>
void columns_to_kspace(const at::Tensor& rows_k, const Columns<real_t>& cols, const ColumnTransform<real_t>& transform,
                       const Phases<real_t>& ph_h, int64_t width, bool full, std::complex<real_t>* out) {
  using cplx = std::complex<real_t>;
  const int64_t C = rows_k.size(0), n = rows_k.size(1), H = rows_k.size(2);
  const auto* rk = reinterpret_cast<const cplx*>(rows_k.data_ptr());
  if (transform.lanes) {
    const LaneColumns<real_t> lanes(cols, full);
    column_lanes_per_coil<ColumnLanesForward<real_t>>(transform, lanes, C, ph_h, width, full,
                                                      [&](ColumnLanesArgs<real_t>& args, int64_t c) {
                                                        args.columns_in = rk + c * n * H;
                                                        args.kspace_out = out + c * H * width;
                                                      });
    return;
  }
#pragma omp parallel
  {
    at::NoGradGuard no_grad;
    auto spectrum = at::empty({n, H}, rows_k.options());
    const auto* sp = reinterpret_cast<const cplx*>(spectrum.data_ptr());
    std::vector<cplx> staged(kRowTile * width);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      at::fft_fft_out(spectrum, rows_k[c], c10::nullopt, -1, "backward");
      columns_to_rows(sp, cols, ph_h, H, transform.norm, width, full, staged.data(), out + c * H * width);
    }
  }
}

// The adjoint's gather and its inverse transform along H, coil by coil: in (C,H,width) -> rows_k (C,n,H).
template <typename real_t>
void kspace_to_columns(const std::complex<real_t>* in, const Columns<real_t>& cols, const ColumnTransform<real_t>& transform,
                       const Phases<real_t>& ph_h, int64_t width, bool full, at::Tensor& rows_k) {
  using cplx = std::complex<real_t>;
  const int64_t C = rows_k.size(0), n = rows_k.size(1), H = rows_k.size(2);
  auto* rk = reinterpret_cast<cplx*>(rows_k.data_ptr());
  if (transform.lanes) {
    const LaneColumns<real_t> lanes(cols, full);
    column_lanes_per_coil<ColumnLanesAdjoint<real_t>>(transform, lanes, C, ph_h, width, full,
                                                      [&](ColumnLanesArgs<real_t>& args, int64_t c) {
                                                        args.kspace_in = in + c * H * width;
                                                        args.columns_out = rk + c * n * H;
                                                      });
    return;
  }
#pragma omp parallel
  {
    at::NoGradGuard no_grad;
    auto gathered = at::empty({n, H}, rows_k.options());
    auto* gp = reinterpret_cast<cplx*>(gathered.data_ptr());
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      rows_to_columns(in + c * H * width, cols, ph_h, H, transform.norm, width, full, gp);
      auto coil = rows_k[c];
      at::fft_ifft_out(coil, gathered, c10::nullopt, -1, "forward");
    }
  }
}

// Adjoint, along W: out (H,W) = sum_c conj(S_c) IFFT_W(conj(p_w) rows_k (C,n,H) at the sampled columns)
// (before the conj(q_h q_w) modulation); pruned.
template <typename real_t>
void adjoint_rows_pruned(const std::complex<real_t>* rk, const std::complex<real_t>* sp, const Columns<real_t>& cols, int64_t C,
                         int64_t H, int64_t W, std::complex<real_t>* op) {
  using cplx = std::complex<real_t>;
  constexpr int L = mbdlfast::PrunedRowPlan<real_t>::kLanes;
  const auto& plan = cols.plan;
  const auto kernel = mbdlfast::best_isa<PrunedAdjointBlock<real_t>>();
  const int64_t n = static_cast<int64_t>(cols.index.size()), blocks = (H + L - 1) / L;
#pragma omp parallel
  {
    std::vector<real_t> lanes(2 * W * L + plan.work_size());
    const std::vector<cplx> zeros(W);
#pragma omp for schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t h0 = block * L, rows = std::min<int64_t>(L, H - h0);
      kernel({&plan, sp + h0 * W, nullptr, op + h0 * W, rk, nullptr, cols.position.data(), cols.phase.data(), rows, C, H,
              H * W, h0, n, lanes.data(), lanes.data() + W * L, lanes.data() + 2 * W * L, zeros.data()});
    }
  }
}

// The same with batched at::fft calls over blocks of rows.
template <typename real_t>
void adjoint_rows_fft(const std::complex<real_t>* rk, const std::complex<real_t>* sp, const Columns<real_t>& cols, int64_t C,
                      int64_t H, int64_t W, const at::TensorOptions& options, std::complex<real_t>* op) {
  using cplx = std::complex<real_t>;
  const int64_t HW = H * W, n = static_cast<int64_t>(cols.index.size());
  const int64_t rows_max = rows_per_block(C, W, sizeof(cplx));
  const int64_t blocks = (H + rows_max - 1) / rows_max;
#pragma omp parallel
  {
    at::NoGradGuard no_grad;
    auto spectrum = at::empty({C, rows_max, W}, options);
    auto coil_rows = at::empty_like(spectrum);
    auto* spec = reinterpret_cast<cplx*>(spectrum.data_ptr());
    const auto* buf = reinterpret_cast<const cplx*>(coil_rows.data_ptr());
#pragma omp for schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t h0 = block * rows_max, rows = std::min(rows_max, H - h0);
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t r = 0; r < rows; ++r) {
          cplx* sr = spec + (c * rows_max + r) * W;
          std::fill(sr, sr + W, cplx(0));
          const cplx* src = rk + c * n * H + h0 + r;
          // += so that repeated columns add up, as the adjoint of a gather must.
          for (int64_t j = 0; j < n; ++j) sr[cols.index[j]] += cmul_conj(cols.phase[j], src[j * H]);
        }
      }
      auto coil_view = coil_rows.narrow(1, 0, rows);
      at::fft_ifft_out(coil_view, spectrum.narrow(1, 0, rows), c10::nullopt, -1, "ortho");
      for (int64_t r = 0; r < rows; ++r) {
        cplx* dst = op + (h0 + r) * W;
        std::fill(dst, dst + W, cplx(0));
        for (int64_t c = 0; c < C; ++c) {
          const cplx* sr = sp + c * HW + (h0 + r) * W;
          const cplx* br = buf + (c * rows_max + r) * W;
          for (int64_t w = 0; w < W; ++w) dst[w] += cmul_conj(sr[w], br[w]);
        }
      }
    }
  }
}

// One batch entry of the adjoint along W, from the inverse-transformed columns rows_k (C,n,H) to out_b (H,W).
template <typename real_t>
void adjoint_entry(const at::Tensor& rows_k, const at::Tensor& maps_b, const Columns<real_t>& cols, const Phases<real_t>& ph_h,
                   const Phases<real_t>& ph_w, at::Tensor& out_b) {
  using cplx = std::complex<real_t>;
  const int64_t C = maps_b.size(0), H = maps_b.size(1), W = maps_b.size(2);
  const auto* rk = reinterpret_cast<const cplx*>(rows_k.data_ptr());
  const auto* sp = reinterpret_cast<const cplx*>(maps_b.data_ptr());
  auto* op = reinterpret_cast<cplx*>(out_b.data_ptr());
  if (cols.pruned) {
    adjoint_rows_pruned(rk, sp, cols, C, H, W, op);
  } else {
    adjoint_rows_fft(rk, sp, cols, C, H, W, rows_k.options(), op);
  }
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < H; ++h) {
    const cplx qh = ph_h.q[h];
    cplx* dst = op + h * W;
    for (int64_t w = 0; w < W; ++w) dst[w] = cmul_conj(cmul(qh, ph_w.q[w]), dst[w]);
  }
}

template <typename real_t>
at::Tensor forward_impl(const at::Tensor& x, const at::Tensor& maps, std::vector<Columns<real_t>> cols, bool full) {
  using cplx = std::complex<real_t>;
  const int64_t B = x.size(0), C = maps.size(1), H = maps.size(2), W = maps.size(3);
  const Phases<real_t> ph_h(H), ph_w(W);
  const ColumnTransform<real_t> transform(H);
  for (auto& entry_cols : cols) prepare_row_transform(entry_cols, ph_w);
  const int64_t width = full ? W : static_cast<int64_t>(cols[0].index.size());
  auto out = at::empty({B, C, H, width}, x.options());
  for (int64_t b = 0; b < B; ++b) {
    const auto& entry_cols = cols[cols.size() == 1 ? 0 : b];
    auto out_b = out[b];
    if (entry_cols.index.empty()) {
      out_b.zero_();
      continue;
    }
    const auto rows_k = forward_columns<real_t>(x[b], maps[maps.size(0) == 1 ? 0 : b], entry_cols, ph_h, ph_w);
    columns_to_kspace(rows_k, entry_cols, transform, ph_h, width, full, reinterpret_cast<cplx*>(out_b.data_ptr()));
  }
  return out;
}

template <typename real_t>
at::Tensor adjoint_impl(const at::Tensor& k, const at::Tensor& maps, std::vector<Columns<real_t>> cols, bool full) {
  using cplx = std::complex<real_t>;
  const int64_t B = k.size(0), C = maps.size(1), H = maps.size(2), W = maps.size(3);
  const Phases<real_t> ph_h(H), ph_w(W);
  const ColumnTransform<real_t> transform(H);
  for (auto& entry_cols : cols) prepare_row_transform(entry_cols, ph_w);
  auto out = at::empty({B, H, W}, k.options());
  for (int64_t b = 0; b < B; ++b) {
    const auto& entry_cols = cols[cols.size() == 1 ? 0 : b];
    const int64_t n = static_cast<int64_t>(entry_cols.index.size());
    auto out_b = out[b];
    if (n == 0) {
      out_b.zero_();
      continue;
    }
    auto rows_k = at::empty({C, n, H}, k.options());
    kspace_to_columns(reinterpret_cast<const cplx*>(k.data_ptr()) + b * C * H * k.size(3), entry_cols, transform, ph_h, k.size(3), full, rows_k);
    adjoint_entry<real_t>(rows_k, maps[maps.size(0) == 1 ? 0 : b], entry_cols, ph_h, ph_w, out_b);
  }
  return out;
}

// The sizes (B,C,H,W) of maps checked against an image x (B,H,W) of the same complex dtype.
std::vector<int64_t> check_image_and_maps(const at::Tensor& x, const at::Tensor& maps) {
  check_cpu_complex(x, "x");
  TORCH_CHECK(x.dim() == 3, "mbdlfast cpp: x must be (B,H,W), got ", x.sizes());
  const auto s = check_maps(maps, x.scalar_type(), x.size(0));
  TORCH_CHECK(s[2] == x.size(1) && s[3] == x.size(2), "mbdlfast cpp: maps must be (B,C,", x.size(1), ",", x.size(2), "), got ",
              maps.sizes());
  return s;
}

at::Tensor sense_forward_compact_cpu(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& columns) {
  const auto s = check_image_and_maps(x, maps);
  at::Tensor out;
  AT_DISPATCH_COMPLEX_TYPES(x.scalar_type(), "mbdlfast_forward_compact", [&] {
    using real_t = typename scalar_t::value_type;
    out = forward_impl<real_t>(x, maps, columns_from_index<real_t>(columns, s[0], s[3]), false);
  });
  return out;
}

at::Tensor sense_adjoint_compact_cpu(const at::Tensor& yc, const at::Tensor& maps, const at::Tensor& columns) {
  check_cpu_complex(yc, "yc");
  TORCH_CHECK(yc.dim() == 4, "mbdlfast cpp: yc must be (B,C,H,n_s), got ", yc.sizes());
  const auto s = check_maps(maps, yc.scalar_type(), yc.size(0));
  TORCH_CHECK(columns.dim() == 2 && yc.size(1) == s[1] && yc.size(2) == s[2] && yc.size(3) == columns.size(1),
              "mbdlfast cpp: yc must be (B,", s[1], ",", s[2], ",n_s) with n_s = columns.size(1), got yc ", yc.sizes(),
              " and columns ", columns.sizes());
  at::Tensor out;
  AT_DISPATCH_COMPLEX_TYPES(yc.scalar_type(), "mbdlfast_adjoint_compact", [&] {
    using real_t = typename scalar_t::value_type;
    out = adjoint_impl<real_t>(yc, maps, columns_from_index<real_t>(columns, s[0], s[3]), false);
  });
  return out;
}

at::Tensor sense_forward_1d_cpu(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight) {
  const auto s = check_image_and_maps(x, maps);
  at::Tensor out;
  AT_DISPATCH_COMPLEX_TYPES(x.scalar_type(), "mbdlfast_forward_1d", [&] {
    using real_t = typename scalar_t::value_type;
    out = forward_impl<real_t>(x, maps, columns_from_weight<real_t>(weight, x.scalar_type(), s[0], s[3]), true);
  });
  return out;
}

at::Tensor sense_adjoint_1d_cpu(const at::Tensor& y, const at::Tensor& maps, const at::Tensor& weight) {
  check_cpu_complex(y, "y");
  TORCH_CHECK(y.dim() == 4, "mbdlfast cpp: y must be (B,C,H,W), got ", y.sizes());
  const auto s = check_maps(maps, y.scalar_type(), y.size(0));
  TORCH_CHECK(y.size(1) == s[1] && y.size(2) == s[2] && y.size(3) == s[3], "mbdlfast cpp: y must be (B,", s[1], ",", s[2], ",",
              s[3], "), got ", y.sizes());
  at::Tensor out;
  AT_DISPATCH_COMPLEX_TYPES(y.scalar_type(), "mbdlfast_adjoint_1d", [&] {
    using real_t = typename scalar_t::value_type;
    out = adjoint_impl<real_t>(y, maps, columns_from_weight<real_t>(weight, y.scalar_type(), s[0], s[3]), true);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mbdlfast_ext, CPU, m) {
  m.impl("sense_forward_compact", &sense_forward_compact_cpu);
  m.impl("sense_adjoint_compact", &sense_adjoint_compact_cpu);
  m.impl("sense_forward", &sense_forward_1d_cpu);
  m.impl("sense_adjoint", &sense_adjoint_1d_cpu);
}
