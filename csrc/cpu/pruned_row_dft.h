// The row transform of A^H A for a 1D mask along W, computed only at the sampled frequencies.
//
// With a mask along W, A^H A applies T = IFFT_W diag(weight) FFT_W to every coil row. Only the
// frequencies K = {k : weight[k] != 0} matter (about W/R + ACS of them), so instead of two full FFTs
// we use one Cooley-Tukey split W = P*Q (P a power of two) and prune its second stage:
//
//   n = Q*b + a, k = c + P*d:   X[k] = sum_a exp(-2 pi i a d / Q) * t_c[a] U_c[a],
//                               U_c[a] = sum_b x[Q*b + a] exp(-2 pi i b c / P)      (length-P FFTs)
//
// with twiddles t_c[a] = exp(-2 pi i a c / W). The length-Q DFT is evaluated at the sampled d only,
// and symmetrically: the terms a and Q - a share a cosine and a sine of opposite sign, so with
// s_a = t U[a] + t U[Q-a] and e_a = t U[a] - t U[Q-a] each output is
//
//   X[d] = t U[0] + sum_{a=1}^{Q/2} cos(2 pi a d / Q) s_a  -  i sum_{a=1}^{Q/2} sin(2 pi a d / Q) e_a,
//
// half the multiply-adds of the plain sum, and X[Q-d] (the same two sums with the sign of the sine
// part flipped) comes for free where it is sampled too, as it is for every d of a residue group
// that an equispaced mask fills. The inverse is the conjugate transpose of the same stages.
//
// Rows are processed kLanes at a time in structure-of-arrays form (slot n holds the real and the
// imaginary parts of x[n] for kLanes rows), so every inner loop runs over the lanes and vectorises.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#define MBDLFAST_INLINE inline __attribute__((always_inline))
#define MBDLFAST_INLINE_LAMBDA __attribute__((always_inline))

namespace mbdlfast {

template <typename real_t>
struct PrunedRowPlan {
  static constexpr int kLanes = 64 / sizeof(real_t);  // one 512-bit vector
  static constexpr int kTile = 4;                     // outputs accumulated at once (independent FMA chains)

  int64_t W = 0, P = 1, Q = 0, log2P = 0;
  std::vector<int64_t> bit_reverse;          // P entries
  std::vector<real_t> fft_re, fft_im;        // exp(-2 pi i j / P), j < P
  std::vector<real_t> twiddle_re, twiddle_im;  // t_c[a] = exp(-2 pi i a c / W), (c, a) row-major
  // Jobs: one sampled d of group c, with Q - d where that is sampled too (and differs from d).
  std::vector<int64_t> job_begin;            // P + 1 offsets into the jobs, grouped by c
  std::vector<int64_t> job_d, job_partner;   // spectrum positions of d and of Q - d (-1: none)
  std::vector<real_t> job_cos, job_sin;      // cos / sin(2 pi a d / Q) for a = 1..half, (job, a) row-major
  int64_t max_group_jobs = 0;
  std::vector<real_t> scale;                 // weight[k] * norm per sampled frequency (spectrum order)
  std::vector<int64_t> position;             // W entries: k's position in the spectrum, or -1

  int64_t sampled() const { return static_cast<int64_t>(scale.size()); }
  int64_t half() const { return Q / 2; }  // the term pairs (a, Q - a) for a = 1..half
  int64_t jobs(int64_t c) const { return job_begin[c + 1] - job_begin[c]; }
  // Scratch values a row transform needs beside its slots (see pruned_spectrum).
  int64_t work_size() const { return (2 * P + 2 * sampled() + 4 * std::max(half(), max_group_jobs)) * kLanes; }
};

// The power of two P (up to 64, dividing W) that minimises the modelled work, and that work in
// complex multiply-adds per row; P = 1 when W is odd. Per row and direction the pruned stages cost
// the twiddles (W) and about Q/2 per sampled frequency (the symmetric sums, without counting the
// pairs that halve it again).
inline int64_t pruned_row_split(int64_t W, int64_t sampled, int64_t* work) {
  int64_t best_P = 1, best_work = W * sampled;
  for (int64_t P = 2, log2P = 1; P <= 64 && W % P == 0; P *= 2, ++log2P) {
    const int64_t candidate = W * log2P + 2 * W + (W / P) * sampled;
    if (candidate < best_work) best_P = P, best_work = candidate;
  }
  if (work) *work = best_work;
  return best_P;
}

// How much more a multiply-add costs in two library FFTs of length W than in the pruned stages;
// library FFTs are at their best at powers of two, whose work counts kPowerOfTwoDiscount of the
// rest. Set from timing both transforms (MBDLFAST_ROW_TRANSFORM) on the 2-core EPYC at W from 97 to
// 2048, from R = 4 to full masks: the library FFTs won only at large full masks (W = 999, 2048) and
// at W = 1023 with R = 4, where the modelled pruned work exceeds about 4 times theirs.
constexpr double kPowerOfTwoDiscount = 0.35;
constexpr double kFftCostFactor = 4.0;

// The split P (1 = a direct DFT at the sampled frequencies) with which A^H A transforms rows for a
// 1D mask of ``sampled`` of W columns, or 0 where two library FFTs are modelled faster.
inline int64_t normal_1d_row_split(int64_t W, int64_t sampled) {
  int64_t pruned_work = 0;
  const int64_t P = pruned_row_split(W, sampled, &pruned_work);
  const double fft_work = 2.0 * W * std::log2(static_cast<double>(W)) * ((W & (W - 1)) == 0 ? kPowerOfTwoDiscount : 1.0);
  return pruned_work < kFftCostFactor * fft_work ? P : 0;
}

// exp(2 pi i m / n), with m reduced modulo n in integers first, for accuracy at any n.
inline std::complex<double> unit_root(int64_t m, int64_t n) {
  const double angle = 2.0 * M_PI * static_cast<double>(((m % n) + n) % n) / static_cast<double>(n);
  return {std::cos(angle), std::sin(angle)};
}

// The plan for the frequencies with weight[k] != 0, each scaled by weight[k] * norm in the forward
// stage (norm = 1/W for A^H A, where the inverse FFT's 1/W is folded in; 1/sqrt(W) for A, "ortho").
template <typename real_t>
PrunedRowPlan<real_t> make_pruned_row_plan(const real_t* weight, int64_t W, double norm) {
  PrunedRowPlan<real_t> plan;
  plan.W = W;
  int64_t sampled = 0;
  for (int64_t k = 0; k < W; ++k) sampled += weight[k] != 0;
  plan.P = pruned_row_split(W, sampled, nullptr);
  plan.Q = W / plan.P;
  while ((int64_t{1} << plan.log2P) < plan.P) ++plan.log2P;
  plan.bit_reverse.resize(plan.P);
  for (int64_t j = 0; j < plan.P; ++j) {
    int64_t r = 0;
    for (int64_t bit = 0; bit < plan.log2P; ++bit) r |= ((j >> bit) & 1) << (plan.log2P - 1 - bit);
    plan.bit_reverse[j] = r;
  }
  for (int64_t j = 0; j < plan.P; ++j) {
    const auto w = unit_root(-j, plan.P);
    plan.fft_re.push_back(static_cast<real_t>(w.real()));
    plan.fft_im.push_back(static_cast<real_t>(w.imag()));
  }
  plan.position.assign(W, -1);
  for (int64_t c = 0; c < plan.P; ++c) {  // spectrum order: by group c = k mod P, then by d
    for (int64_t k = c; k < W; k += plan.P) {
      if (weight[k] == 0) continue;
      plan.position[k] = plan.sampled();
      plan.scale.push_back(static_cast<real_t>(weight[k] * norm));
    }
  }
  plan.job_begin.assign(1, 0);
  for (int64_t c = 0; c < plan.P; ++c) {
    for (int64_t a = 0; a < plan.Q; ++a) {
      const auto t = unit_root(-a * c, W);
      plan.twiddle_re.push_back(static_cast<real_t>(t.real()));
      plan.twiddle_im.push_back(static_cast<real_t>(t.imag()));
    }
    for (int64_t d = 0; d < plan.Q; ++d) {
      const int64_t k = c + plan.P * d, partner_d = (plan.Q - d) % plan.Q, partner_k = c + plan.P * partner_d;
      if (plan.position[k] < 0 || (partner_d < d && plan.position[partner_k] >= 0)) continue;  // unsampled, or a partner's job
      plan.job_d.push_back(plan.position[k]);
      plan.job_partner.push_back(partner_d != d ? plan.position[partner_k] : -1);
      for (int64_t a = 1; a <= plan.half(); ++a) {
        const auto r = unit_root(a * d, plan.Q);
        plan.job_cos.push_back(static_cast<real_t>(r.real()));
        plan.job_sin.push_back(static_cast<real_t>(r.imag()));
      }
    }
    plan.job_begin.push_back(static_cast<int64_t>(plan.job_d.size()));
    plan.max_group_jobs = std::max(plan.max_group_jobs, plan.jobs(c));
  }
  return plan;
}

// One radix-4 butterfly over the lanes: two radix-2 stages of spans h and 2h fused, with the
// twiddles w^t, w^2t, w^3t (w = exp(-+2 pi i / P), t = j P / 4h) on the inputs a2, a1, a3 and then a
// 4-point DFT that needs no multiplications: with A1 = w^2t a1, A2 = w^t a2, A3 = w^3t a3,
//   c0 = a0 + A1 + (A2 + A3),  c2 = a0 + A1 - (A2 + A3),  c1 = a0 - A1 -+ i (A2 - A3),  c3 = a0 - A1 +- i (A2 - A3).
// Three complex multiplications and four loads and stores per point pair of stages, against the
// four and eight of two radix-2 stages. Outputs may alias the inputs.
template <typename real_t, bool inverse>
MBDLFAST_INLINE void butterfly4(const PrunedRowPlan<real_t>& plan, int64_t t, const real_t* const* in_r, const real_t* const* in_i,
                                real_t* const* out_r, real_t* const* out_i) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const real_t sign = inverse ? -1 : 1;
  const real_t w1r = plan.fft_re[2 * t], w1i = sign * plan.fft_im[2 * t];
  const real_t w2r = plan.fft_re[t], w2i = sign * plan.fft_im[t];
  const real_t w3r = plan.fft_re[3 * t], w3i = sign * plan.fft_im[3 * t];
  const real_t *a0r = in_r[0], *a0i = in_i[0], *a1r = in_r[1], *a1i = in_i[1];
  const real_t *a2r = in_r[2], *a2i = in_i[2], *a3r = in_r[3], *a3i = in_i[3];
  real_t *c0r = out_r[0], *c0i = out_i[0], *c1r = out_r[1], *c1i = out_i[1];
  real_t *c2r = out_r[2], *c2i = out_i[2], *c3r = out_r[3], *c3i = out_i[3];
  const auto combine = [&](int l, real_t A1r, real_t A1i, real_t A2r, real_t A2i, real_t A3r, real_t A3i) MBDLFAST_INLINE_LAMBDA {
    const real_t s0r = a0r[l] + A1r, s0i = a0i[l] + A1i, d0r = a0r[l] - A1r, d0i = a0i[l] - A1i;
    const real_t s1r = A2r + A3r, s1i = A2i + A3i, d1r = A2r - A3r, d1i = A2i - A3i;
    const real_t rr = sign * d1i, ri = -sign * d1r;  // -+ i (A2 - A3)
    c0r[l] = s0r + s1r, c0i[l] = s0i + s1i, c2r[l] = s0r - s1r, c2i[l] = s0i - s1i;
    c1r[l] = d0r + rr, c1i[l] = d0i + ri, c3r[l] = d0r - rr, c3i[l] = d0i - ri;
  };
  if (t == 0) {
#pragma omp simd
    for (int l = 0; l < L; ++l) combine(l, a1r[l], a1i[l], a2r[l], a2i[l], a3r[l], a3i[l]);
  } else {
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      combine(l, w1r * a1r[l] - w1i * a1i[l], w1r * a1i[l] + w1i * a1r[l], w2r * a2r[l] - w2i * a2i[l],
              w2r * a2i[l] + w2i * a2r[l], w3r * a3r[l] - w3i * a3i[l], w3r * a3i[l] + w3i * a3r[l]);
    }
  }
}

// In-place FFT of length P (a compile-time power of two, >= 4) over the slots a, Q + a, ...,
// (P-1)Q + a of a lane buffer, for every a < Q; ``inverse``: conjugate twiddles, unnormalised.
// Decimation in time in radix-4 stages (with one radix-2 stage first where log2 P is odd): the first
// stage reads the slots in bit-reversed order and the last writes them back, so the stages between
// run in ``tmp`` (2 * P * kLanes values).
template <typename real_t, int P, bool inverse>
MBDLFAST_INLINE void slot_ffts(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                               real_t* __restrict tmp) {
  static_assert(P >= 4 && (P & (P - 1)) == 0, "slot_ffts: P must be a power of two >= 4");
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  constexpr bool radix2_first = __builtin_ctz(P) % 2 == 1;
  const int64_t Q = plan.Q;
  real_t* tr = tmp;
  real_t* ti = tmp + P * L;
  for (int64_t a = 0; a < Q; ++a) {
    const auto slot = [&](int64_t i) MBDLFAST_INLINE_LAMBDA { return (Q * i + a) * L; };
    int64_t h = 1;  // the span of the next radix-2 stage
    if constexpr (radix2_first) {  // pairs (rev(2i), rev(2i) + P/2) of the input, twiddle 1
      for (int i = 0; i < P / 2; ++i) {
        const int64_t u = slot(plan.bit_reverse[2 * i]), v = u + Q * (P / 2) * L;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          tr[2 * i * L + l] = re[u + l] + re[v + l], ti[2 * i * L + l] = im[u + l] + im[v + l];
          tr[(2 * i + 1) * L + l] = re[u + l] - re[v + l], ti[(2 * i + 1) * L + l] = im[u + l] - im[v + l];
        }
      }
      h = 2;
    }
    for (; h < P; h *= 4) {
      const bool first = h == 1, last = 4 * h == P;
      for (int64_t start = 0; start < P; start += 4 * h) {
        for (int64_t j = 0; j < h; ++j) {
          const real_t* in_r[4];
          const real_t* in_i[4];
          real_t* out_r[4];
          real_t* out_i[4];
          for (int k = 0; k < 4; ++k) {
            const int64_t i = start + j + k * h;
            const int64_t from = first ? slot(plan.bit_reverse[i]) : i * L;
            const int64_t to = last ? slot(i) : i * L;
            in_r[k] = (first ? re : tr) + from, in_i[k] = (first ? im : ti) + from;
            out_r[k] = (last ? re : tr) + to, out_i[k] = (last ? im : ti) + to;
          }
          butterfly4<real_t, inverse>(plan, j * (P / (4 * h)), in_r, in_i, out_r, out_i);
        }
      }
    }
  }
}

// The length-2 case: one butterfly per a, slot a and slot Q + a.
template <typename real_t>
MBDLFAST_INLINE void slot_ffts_2(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  for (int64_t a = 0; a < plan.Q; ++a) {
    const int64_t u = a * L, v = (plan.Q + a) * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const real_t sr = re[u + l] + re[v + l], si = im[u + l] + im[v + l];
      re[v + l] = re[u + l] - re[v + l], im[v + l] = im[u + l] - im[v + l];
      re[u + l] = sr, im[u + l] = si;
    }
  }
}

template <typename real_t, bool inverse>
MBDLFAST_INLINE void all_slot_ffts(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                   real_t* __restrict tmp) {
  switch (plan.P) {
    case 2: return slot_ffts_2(plan, re, im);
    case 4: return slot_ffts<real_t, 4, inverse>(plan, re, im, tmp);
    case 8: return slot_ffts<real_t, 8, inverse>(plan, re, im, tmp);
    case 16: return slot_ffts<real_t, 16, inverse>(plan, re, im, tmp);
    case 32: return slot_ffts<real_t, 32, inverse>(plan, re, im, tmp);
    case 64: return slot_ffts<real_t, 64, inverse>(plan, re, im, tmp);
    default: return;  // P = 1: the slots already hold U_0
  }
}

// Where the pruned spectrum of a row transform lives in ``work``: 2 * sampled * kLanes values (real
// parts, then imaginary parts), after the 2 * P * kLanes of FFT scratch and before the symmetric
// sums of one group. ``work`` holds plan.work_size() values.
template <typename real_t>
real_t* pruned_spectrum(const PrunedRowPlan<real_t>& plan, real_t* work) {
  return work + 2 * plan.P * PrunedRowPlan<real_t>::kLanes;
}

template <typename real_t>
real_t* group_sums(const PrunedRowPlan<real_t>& plan, real_t* work) {
  return pruned_spectrum(plan, work) + 2 * plan.sampled() * PrunedRowPlan<real_t>::kLanes;
}

// Forward, one group c: the twiddled slot pairs s_a = t U[a] + t U[Q-a] and e_a = t U[a] - t U[Q-a]
// for a = 1..half (at a = Q - a, s_a = t U[a] and e_a = 0), stored as s_re, s_im, e_re, e_im.
template <typename real_t>
MBDLFAST_INLINE void forward_pair_sums(const PrunedRowPlan<real_t>& plan, int64_t c, const real_t* __restrict ur,
                                       const real_t* __restrict ui, real_t* __restrict sums) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t Q = plan.Q, H = plan.half();
  const real_t* tr = plan.twiddle_re.data() + c * Q;
  const real_t* ti = plan.twiddle_im.data() + c * Q;
  for (int64_t a = 1; a <= H; ++a) {
    const int64_t b = Q - a;
    real_t* __restrict sr = sums + (a - 1) * L;
    real_t* __restrict si = sr + H * L;
    real_t* __restrict er = si + H * L;
    real_t* __restrict ei = er + H * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const real_t xr = tr[a] * ur[a * L + l] - ti[a] * ui[a * L + l], xi = tr[a] * ui[a * L + l] + ti[a] * ur[a * L + l];
      const real_t yr = a == b ? 0 : tr[b] * ur[b * L + l] - ti[b] * ui[b * L + l];
      const real_t yi = a == b ? 0 : tr[b] * ui[b * L + l] + ti[b] * ur[b * L + l];
      sr[l] = xr + yr, si[l] = xi + yi, er[l] = xr - yr, ei[l] = xi - yi;
    }
  }
}

// Forward, ``T`` jobs j0.. of one group: X[d] = U[0] + A - iB and X[Q-d] = U[0] + A + iB with
// A = sum_a cos_a s_a and B = sum_a sin_a e_a, each times its scale, into the spectrum ``z``.
template <typename real_t, int T>
MBDLFAST_INLINE void forward_jobs_tile(const PrunedRowPlan<real_t>& plan, int64_t j0, const real_t* __restrict ur,
                                       const real_t* __restrict ui, const real_t* __restrict sums, real_t* __restrict z) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t H = plan.half(), S = plan.sampled();
  const real_t* cs = plan.job_cos.data() + j0 * H;
  const real_t* sn = plan.job_sin.data() + j0 * H;
  real_t ar[T][L] = {}, ai[T][L] = {}, br[T][L] = {}, bi[T][L] = {};
  for (int64_t a = 0; a < H; ++a) {
    const real_t* sr = sums + a * L;
    const real_t* si = sr + H * L;
    const real_t* er = si + H * L;
    const real_t* ei = er + H * L;
    for (int t = 0; t < T; ++t) {
      const real_t c = cs[t * H + a], s = sn[t * H + a];
#pragma omp simd
      for (int l = 0; l < L; ++l) ar[t][l] += c * sr[l], ai[t][l] += c * si[l], br[t][l] += s * er[l], bi[t][l] += s * ei[l];
    }
  }
  for (int t = 0; t < T; ++t) {
    const int64_t k = plan.job_d[j0 + t], k2 = plan.job_partner[j0 + t];
    const real_t s1 = plan.scale[k];
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      z[k * L + l] = s1 * (ur[l] + ar[t][l] + bi[t][l]);
      z[(S + k) * L + l] = s1 * (ui[l] + ai[t][l] - br[t][l]);
    }
    if (k2 < 0) continue;
    const real_t s2 = plan.scale[k2];
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      z[k2 * L + l] = s2 * (ur[l] + ar[t][l] - bi[t][l]);
      z[(S + k2) * L + l] = s2 * (ui[l] + ai[t][l] + br[t][l]);
    }
  }
}

// Pruned forward stage over all sampled k (the slots hold U_c[a] at slot c*Q + a).
template <typename real_t>
MBDLFAST_INLINE void pruned_forward(const PrunedRowPlan<real_t>& plan, const real_t* __restrict re,
                                    const real_t* __restrict im, real_t* __restrict work) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes, T = PrunedRowPlan<real_t>::kTile;
  real_t* __restrict z = pruned_spectrum(plan, work);
  real_t* __restrict sums = group_sums(plan, work);
  for (int64_t c = 0; c < plan.P; ++c) {
    if (plan.jobs(c) == 0) continue;
    const real_t* ur = re + c * plan.Q * L;
    const real_t* ui = im + c * plan.Q * L;
    forward_pair_sums(plan, c, ur, ui, sums);
    int64_t j = plan.job_begin[c];
    for (; j + T <= plan.job_begin[c + 1]; j += T) forward_jobs_tile<real_t, T>(plan, j, ur, ui, sums, z);
    for (; j < plan.job_begin[c + 1]; ++j) forward_jobs_tile<real_t, 1>(plan, j, ur, ui, sums, z);
  }
}

// Inverse, one group c: per job, E = z_d + z_{Q-d} and O = z_d - z_{Q-d} (E = O = z_d without a
// partner), stored as E_re, E_im, O_re, O_im over the group's jobs.
template <typename real_t>
MBDLFAST_INLINE void inverse_job_sums(const PrunedRowPlan<real_t>& plan, int64_t c, const real_t* __restrict z,
                                      real_t* __restrict sums) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t S = plan.sampled(), J = plan.jobs(c);
  for (int64_t j = 0; j < J; ++j) {
    const int64_t k = plan.job_d[plan.job_begin[c] + j], k2 = plan.job_partner[plan.job_begin[c] + j];
    real_t* __restrict er = sums + j * L;
    real_t* __restrict ei = er + J * L;
    real_t* __restrict orr = ei + J * L;
    real_t* __restrict oi = orr + J * L;
    const real_t* zr = z + k * L;
    const real_t* zi = z + (S + k) * L;
    const real_t* pr = z + (k2 < 0 ? k : k2) * L;
    const real_t* pi = z + (S + (k2 < 0 ? k : k2)) * L;
    const real_t sign = k2 < 0 ? 0 : 1;  // no partner: E = O = z_d
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      er[l] = zr[l] + sign * pr[l], ei[l] = zi[l] + sign * pi[l];
      orr[l] = zr[l] - sign * pr[l], oi[l] = zi[l] - sign * pi[l];
    }
  }
}

// Inverse, ``T`` terms a0.. (1 <= a <= half) of one group: Y[a] = C + iS and Y[Q-a] = C - iS with
// C = sum_j cos_j E_j and S = sum_j sin_j O_j, times conj(t_c[a]), into slots a and Q - a.
template <typename real_t, int T>
MBDLFAST_INLINE void inverse_terms_tile(const PrunedRowPlan<real_t>& plan, int64_t c, int64_t a0,
                                        const real_t* __restrict sums, real_t* __restrict vr, real_t* __restrict vi) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t Q = plan.Q, H = plan.half(), J = plan.jobs(c);
  const real_t* cs = plan.job_cos.data() + plan.job_begin[c] * H + (a0 - 1);
  const real_t* sn = plan.job_sin.data() + plan.job_begin[c] * H + (a0 - 1);
  real_t cr[T][L] = {}, ci[T][L] = {}, sr[T][L] = {}, si[T][L] = {};
  for (int64_t j = 0; j < J; ++j) {
    const real_t* er = sums + j * L;
    const real_t* ei = er + J * L;
    const real_t* orr = ei + J * L;
    const real_t* oi = orr + J * L;
    for (int t = 0; t < T; ++t) {
      const real_t cv = cs[j * H + t], sv = sn[j * H + t];
#pragma omp simd
      for (int l = 0; l < L; ++l) cr[t][l] += cv * er[l], ci[t][l] += cv * ei[l], sr[t][l] += sv * orr[l], si[t][l] += sv * oi[l];
    }
  }
  const real_t* tr = plan.twiddle_re.data() + c * Q;
  const real_t* ti = plan.twiddle_im.data() + c * Q;
  for (int t = 0; t < T; ++t) {
    const int64_t a = a0 + t, b = Q - a;
#pragma omp simd
    for (int l = 0; l < L; ++l) {  // conj(t_a) * (C + iS)
      const real_t yr = cr[t][l] - si[t][l], yi = ci[t][l] + sr[t][l];
      vr[a * L + l] = tr[a] * yr + ti[a] * yi, vi[a * L + l] = tr[a] * yi - ti[a] * yr;
    }
    if (b == a) continue;  // Q even, a = Q/2: the sine sum vanishes
#pragma omp simd
    for (int l = 0; l < L; ++l) {  // conj(t_b) * (C - iS)
      const real_t yr = cr[t][l] + si[t][l], yi = ci[t][l] - sr[t][l];
      vr[b * L + l] = tr[b] * yr + ti[b] * yi, vi[b * L + l] = tr[b] * yi - ti[b] * yr;
    }
  }
}

// Pruned inverse stage, the conjugate transpose of pruned_forward without its scales: slots <- the
// spectrum in ``work``; groups without sampled frequencies get zeros.
template <typename real_t>
MBDLFAST_INLINE void pruned_inverse(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                    real_t* __restrict work) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes, T = PrunedRowPlan<real_t>::kTile;
  const real_t* __restrict z = pruned_spectrum(plan, work);
  real_t* __restrict sums = group_sums(plan, work);
  for (int64_t c = 0; c < plan.P; ++c) {
    real_t* vr = re + c * plan.Q * L;
    real_t* vi = im + c * plan.Q * L;
    const int64_t J = plan.jobs(c);
    if (J == 0) {
      std::fill(vr, vr + plan.Q * L, real_t(0));
      std::fill(vi, vi + plan.Q * L, real_t(0));
      continue;
    }
    inverse_job_sums(plan, c, z, sums);
    std::fill(vr, vr + L, real_t(0));  // Y[0] = sum_j E_j (t_c[0] = 1)
    std::fill(vi, vi + L, real_t(0));
    for (int64_t j = 0; j < J; ++j) {
#pragma omp simd
      for (int l = 0; l < L; ++l) vr[l] += sums[j * L + l], vi[l] += sums[(J + j) * L + l];
    }
    int64_t a = 1;
    for (; a + T <= plan.half() + 1; a += T) inverse_terms_tile<real_t, T>(plan, c, a, sums, vr, vi);
    for (; a <= plan.half(); ++a) inverse_terms_tile<real_t, 1>(plan, c, a, sums, vr, vi);
  }
}

// Scaled DFT at the sampled frequencies: pruned_spectrum <- scale * FFT(rows); the slots are clobbered.
template <typename real_t>
MBDLFAST_INLINE void pruned_row_forward(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                        real_t* __restrict work) {
  all_slot_ffts<real_t, false>(plan, re, im, work);
  pruned_forward(plan, re, im, work);
}

// Its adjoint: rows <- (FFT restricted to the sampled frequencies)^H (scale * pruned_spectrum).
template <typename real_t>
MBDLFAST_INLINE void pruned_row_adjoint(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                        real_t* __restrict work) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  real_t* __restrict z = pruned_spectrum(plan, work);
  const int64_t S = plan.sampled();
  for (int64_t k = 0; k < S; ++k) {
    const real_t s = plan.scale[k];
#pragma omp simd
    for (int l = 0; l < L; ++l) z[k * L + l] *= s, z[(S + k) * L + l] *= s;
  }
  pruned_inverse(plan, re, im, work);
  all_slot_ffts<real_t, true>(plan, re, im, work);
}

// T = IFFT diag(weight) FFT on kLanes rows held in (re, im) slot order, in place (plan norm 1/W).
template <typename real_t>
MBDLFAST_INLINE void pruned_row_normal(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                       real_t* __restrict work) {
  pruned_row_forward(plan, re, im, work);
  pruned_inverse(plan, re, im, work);
  all_slot_ffts<real_t, true>(plan, re, im, work);
}

// ``variable``=<first>|<second> forces one of two transforms (for benchmarks and tests); unset or
// "auto" returns ``modelled``.
inline bool forced_or_modelled(const char* variable, const char* first, const char* second, bool modelled) {
  const char* forced = std::getenv(variable);
  const std::string choice = forced ? forced : "auto";
  TORCH_CHECK(choice == "auto" || choice == first || choice == second, "mbdlfast cpp: ", variable, " must be auto, ", first,
              " or ", second, ", got '", choice, "'");
  return choice == "auto" ? modelled : choice == first;
}

// Whether rows of width W with ``sampled`` frequencies take the pruned transform (else library FFTs);
// MBDLFAST_ROW_TRANSFORM=pruned|fft forces it.
inline bool use_pruned_rows(int64_t W, int64_t sampled) {
  return forced_or_modelled("MBDLFAST_ROW_TRANSFORM", "pruned", "fft", normal_1d_row_split(W, sampled) > 0);
}

// Whether the transform along H of the SENSE forward and adjoint (every one of the H frequencies)
// runs on columns in lanes rather than as library FFTs: where H has a prime factor above 7, for which
// the library falls back to a generic butterfly, and the direct DFT of the split H = P * Q is short.
// Timed against each other on the 2-core EPYC (both in one process, interleaved): lanes 0.80-0.84x
// the time at H = 230 (Q = 115), 1.2-1.3x at H = 323 (Q = 323), 5.5x at H = 1021 (prime); at H = 320
// and 640 (factors 2 and 5 only) the two were within 15%, forward and adjoint on opposite sides.
constexpr int64_t kMaxColumnDftLength = 128;

inline bool column_lanes_modelled(int64_t H) {
  int64_t rest = H, largest_factor = 1;
  for (int64_t f = 2; f * f <= rest; ++f) {
    while (rest % f == 0) rest /= f, largest_factor = f;
  }
  if (rest > 1) largest_factor = rest;
  return largest_factor > 7 && H / pruned_row_split(H, H, nullptr) <= kMaxColumnDftLength;
}

// MBDLFAST_COLUMN_TRANSFORM=lanes|fft forces the choice.
inline bool use_column_lanes(int64_t H) {
  return forced_or_modelled("MBDLFAST_COLUMN_TRANSFORM", "lanes", "fft", column_lanes_modelled(H));
}

}  // namespace mbdlfast
