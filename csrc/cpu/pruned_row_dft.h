// The row transform of A^H A for a 1D mask along W, computed only at the sampled frequencies.
//
// With a mask along W, A^H A applies T = IFFT_W diag(weight) FFT_W to every coil row. Only the
// frequencies K = {k : weight[k] != 0} matter (about W/R + ACS of them), so instead of two full FFTs
// we use one Cooley-Tukey split W = P*Q (P a power of two) and prune its second stage:
//
//   n = Q*b + a, k = c + P*d:   X[k] = sum_a exp(-2 pi i a k / W) * U_c[a],
//                               U_c[a] = sum_b x[Q*b + a] exp(-2 pi i b c / P)      (length-P FFTs)
//
// so the forward transform is Q radix-2 FFTs of length P (cheap) plus, for each k in K, one length-Q
// dot product; the inverse is the conjugate transpose of the same two stages. Per row that is about
// W*log2(P) + 2*Q*|K| complex multiply-adds instead of two FFTs of length W, and at R = 4 the pruned
// stage is the smaller part.
//
// Rows are processed kLanes at a time in structure-of-arrays form (slot n holds the real and the
// imaginary parts of x[n] for kLanes rows), so every inner loop runs over the lanes and vectorises.
#pragma once

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#define MBDLFAST_INLINE inline __attribute__((always_inline))

namespace mbdlfast {

template <typename real_t>
struct PrunedRowPlan {
  static constexpr int kLanes = 64 / sizeof(real_t);  // one 512-bit vector
  static constexpr int kTile = 4;                     // outputs accumulated at once (independent FMA chains)

  int64_t W = 0, P = 1, Q = 0, log2P = 0;
  std::vector<int64_t> bit_reverse;          // P entries
  std::vector<real_t> fft_re, fft_im;        // exp(-2 pi i j / P), j < P/2
  std::vector<int64_t> group_begin;          // P + 1 offsets into freqs (frequencies grouped by k mod P)
  std::vector<real_t> scale;                 // weight[k] * norm per sampled frequency
  std::vector<int64_t> position;             // W entries: k's index among the sampled, or -1
  std::vector<real_t> coef_re, coef_im;      // exp(-2 pi i a k / W), (sampled frequency, a) row-major

  int64_t sampled() const { return static_cast<int64_t>(scale.size()); }
};

// The power of two P (up to 64, dividing W) that minimises the modelled work, and that work in
// complex multiply-adds per row; P = 1 when W is odd.
inline int64_t pruned_row_split(int64_t W, int64_t sampled, int64_t* work) {
  int64_t best_P = 1, best_work = 2 * W * sampled;
  for (int64_t P = 2, log2P = 1; P <= 64 && W % P == 0; P *= 2, ++log2P) {
    const int64_t candidate = W * log2P + 2 * (W / P) * sampled;
    if (candidate < best_work) best_P = P, best_work = candidate;
  }
  if (work) *work = best_work;
  return best_P;
}

// How much more a multiply-add costs in two library FFTs of length W than in the pruned stages
// (powers of two count half, as library FFTs are at their best there). Set from timing both
// transforms (MBDLFAST_ROW_TRANSFORM) on the 2-core EPYC at W from 64 to 640 and R = 2, 4, 8: the
// library FFTs won only where the modelled pruned work exceeded about 4 times theirs.
constexpr double kFftCostFactor = 4.0;

// The split P (1 = a direct DFT at the sampled frequencies) with which A^H A transforms rows for a
// 1D mask of ``sampled`` of W columns, or 0 where two library FFTs are modelled faster.
inline int64_t normal_1d_row_split(int64_t W, int64_t sampled) {
  int64_t pruned_work = 0;
  const int64_t P = pruned_row_split(W, sampled, &pruned_work);
  const double fft_work = 2.0 * W * std::log2(static_cast<double>(W)) / ((W & (W - 1)) == 0 ? 2.0 : 1.0);
  return pruned_work < kFftCostFactor * fft_work ? P : 0;
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
  const double two_pi = 2.0 * M_PI;
  for (int64_t j = 0; j < plan.P / 2; ++j) {
    plan.fft_re.push_back(static_cast<real_t>(std::cos(two_pi * j / plan.P)));
    plan.fft_im.push_back(static_cast<real_t>(-std::sin(two_pi * j / plan.P)));
  }
  plan.group_begin.assign(plan.P + 1, 0);
  plan.position.assign(W, -1);
  for (int64_t c = 0; c < plan.P; ++c) {
    plan.group_begin[c] = plan.sampled();
    for (int64_t k = c; k < W; k += plan.P) {
      if (weight[k] == 0) continue;
      plan.position[k] = plan.sampled();
      plan.scale.push_back(static_cast<real_t>(weight[k] * norm));
      for (int64_t a = 0; a < plan.Q; ++a) {
        const double angle = -two_pi * static_cast<double>((a * k) % W) / static_cast<double>(W);
        plan.coef_re.push_back(static_cast<real_t>(std::cos(angle)));
        plan.coef_im.push_back(static_cast<real_t>(std::sin(angle)));
      }
    }
  }
  plan.group_begin[plan.P] = plan.sampled();
  return plan;
}

// In-place radix-2 FFT of length P (a compile-time power of two, >= 4) over the slots a, Q + a, ...,
// (P-1)Q + a of a lane buffer, for every a < Q; ``inverse``: conjugate twiddles, unnormalised.
// Decimation in time: the first stage (twiddle 1) reads the slots in bit-reversed order and the last
// stage writes them back, so the middle stages alone run in ``tmp`` (2 * P * kLanes values).
template <typename real_t, int P, bool inverse>
MBDLFAST_INLINE void slot_ffts(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                               real_t* __restrict tmp) {
  static_assert(P >= 4 && (P & (P - 1)) == 0, "slot_ffts: P must be a power of two >= 4");
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t Q = plan.Q;
  real_t* __restrict tr = tmp;
  real_t* __restrict ti = tmp + P * L;
  const auto twiddle = [&](int j, int stride, real_t& wr, real_t& wi) {
    wr = plan.fft_re[j * stride];
    wi = inverse ? -plan.fft_im[j * stride] : plan.fft_im[j * stride];
  };
  for (int64_t a = 0; a < Q; ++a) {
    for (int i = 0; i < P / 2; ++i) {  // stage 1: pairs (rev(2i), rev(2i) + P/2) of the input
      const int64_t u = (Q * plan.bit_reverse[2 * i] + a) * L, v = u + Q * (P / 2) * L;
      real_t* __restrict o0r = tr + 2 * i * L;
      real_t* __restrict o0i = ti + 2 * i * L;
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        o0r[l] = re[u + l] + re[v + l], o0i[l] = im[u + l] + im[v + l];
        o0r[L + l] = re[u + l] - re[v + l], o0i[L + l] = im[u + l] - im[v + l];
      }
    }
    for (int half = 2; half < P / 2; half *= 2) {  // middle stages, in tmp
      const int stride = P / (2 * half);
      for (int start = 0; start < P; start += 2 * half) {
        for (int j = 0; j < half; ++j) {
          real_t wr, wi;
          twiddle(j, stride, wr, wi);
          real_t* __restrict ur = tr + (start + j) * L;
          real_t* __restrict ui = ti + (start + j) * L;
          real_t* __restrict vr = tr + (start + j + half) * L;
          real_t* __restrict vi = ti + (start + j + half) * L;
#pragma omp simd
          for (int l = 0; l < L; ++l) {
            const real_t xr = wr * vr[l] - wi * vi[l], xi = wr * vi[l] + wi * vr[l];
            vr[l] = ur[l] - xr, vi[l] = ui[l] - xi;
            ur[l] += xr, ui[l] += xi;
          }
        }
      }
    }
    for (int j = 0; j < P / 2; ++j) {  // last stage: outputs j and j + P/2 straight to their slots
      real_t wr, wi;
      twiddle(j, 1, wr, wi);
      const real_t* __restrict ur = tr + j * L;
      const real_t* __restrict ui = ti + j * L;
      const real_t* __restrict vr = tr + (j + P / 2) * L;
      const real_t* __restrict vi = ti + (j + P / 2) * L;
      const int64_t o0 = (Q * j + a) * L, o1 = o0 + Q * (P / 2) * L;
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        const real_t xr = wr * vr[l] - wi * vi[l], xi = wr * vi[l] + wi * vr[l];
        re[o0 + l] = ur[l] + xr, im[o0 + l] = ui[l] + xi;
        re[o1 + l] = ur[l] - xr, im[o1 + l] = ui[l] - xi;
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

// Pruned forward stage for ``T`` sampled frequencies k0..k0+T-1 of group c (U_c at ``ur``/``ui``):
// z_k = scale_k * sum_a coef[k][a] U_c[a]. T independent accumulators keep the FMA units busy.
template <typename real_t, int T>
MBDLFAST_INLINE void pruned_forward_tile(const PrunedRowPlan<real_t>& plan, int64_t k0, const real_t* __restrict ur,
                                         const real_t* __restrict ui, real_t* __restrict zr, real_t* __restrict zi) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t Q = plan.Q;
  real_t acc_r[T][L] = {}, acc_i[T][L] = {};
  for (int64_t a = 0; a < Q; ++a) {
    for (int t = 0; t < T; ++t) {
      const real_t er = plan.coef_re[(k0 + t) * Q + a], ei = plan.coef_im[(k0 + t) * Q + a];
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        acc_r[t][l] += er * ur[a * L + l] - ei * ui[a * L + l];
        acc_i[t][l] += er * ui[a * L + l] + ei * ur[a * L + l];
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    const real_t s = plan.scale[k0 + t];
#pragma omp simd
    for (int l = 0; l < L; ++l) zr[(k0 + t) * L + l] = s * acc_r[t][l], zi[(k0 + t) * L + l] = s * acc_i[t][l];
  }
}

// Pruned forward stage over all sampled k; ``z`` holds 2 * sampled * kLanes values (real, imaginary).
template <typename real_t>
MBDLFAST_INLINE void pruned_forward(const PrunedRowPlan<real_t>& plan, const real_t* __restrict re,
                                    const real_t* __restrict im, real_t* __restrict z) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes, T = PrunedRowPlan<real_t>::kTile;
  const int64_t Q = plan.Q, S = plan.sampled();
  for (int64_t c = 0; c < plan.P; ++c) {
    const real_t* ur = re + c * Q * L;
    const real_t* ui = im + c * Q * L;
    int64_t k = plan.group_begin[c];
    for (; k + T <= plan.group_begin[c + 1]; k += T) pruned_forward_tile<real_t, T>(plan, k, ur, ui, z, z + S * L);
    for (; k < plan.group_begin[c + 1]; ++k) pruned_forward_tile<real_t, 1>(plan, k, ur, ui, z, z + S * L);
  }
}

// Pruned inverse stage for ``T`` positions a0..a0+T-1 of group c:
// V_c[a] = sum_{k in group c} conj(coef[k][a]) z_k (the conjugate transpose of the forward stage).
template <typename real_t, int T>
MBDLFAST_INLINE void pruned_inverse_tile(const PrunedRowPlan<real_t>& plan, int64_t c, int64_t a0,
                                         const real_t* __restrict zr, const real_t* __restrict zi,
                                         real_t* __restrict vr, real_t* __restrict vi) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  const int64_t Q = plan.Q;
  real_t acc_r[T][L] = {}, acc_i[T][L] = {};
  for (int64_t k = plan.group_begin[c]; k < plan.group_begin[c + 1]; ++k) {
    for (int t = 0; t < T; ++t) {
      const real_t er = plan.coef_re[k * Q + a0 + t], ei = plan.coef_im[k * Q + a0 + t];
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        acc_r[t][l] += er * zr[k * L + l] + ei * zi[k * L + l];
        acc_i[t][l] += er * zi[k * L + l] - ei * zr[k * L + l];
      }
    }
  }
  for (int t = 0; t < T; ++t) {
#pragma omp simd
    for (int l = 0; l < L; ++l) vr[(a0 + t) * L + l] = acc_r[t][l], vi[(a0 + t) * L + l] = acc_i[t][l];
  }
}

template <typename real_t>
MBDLFAST_INLINE void pruned_inverse(const PrunedRowPlan<real_t>& plan, const real_t* __restrict z, real_t* __restrict re,
                                    real_t* __restrict im) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes, T = PrunedRowPlan<real_t>::kTile;
  const int64_t Q = plan.Q, S = plan.sampled();
  for (int64_t c = 0; c < plan.P; ++c) {
    real_t* vr = re + c * Q * L;
    real_t* vi = im + c * Q * L;
    int64_t a = 0;
    for (; a + T <= Q; a += T) pruned_inverse_tile<real_t, T>(plan, c, a, z, z + S * L, vr, vi);
    for (; a < Q; ++a) pruned_inverse_tile<real_t, 1>(plan, c, a, z, z + S * L, vr, vi);
  }
}

// Where the pruned spectrum of a row transform lives in ``work``: 2 * sampled * kLanes values (real
// parts, then imaginary parts), after the 2 * P * kLanes of FFT scratch. ``work`` holds both.
template <typename real_t>
real_t* pruned_spectrum(const PrunedRowPlan<real_t>& plan, real_t* work) {
  return work + 2 * plan.P * PrunedRowPlan<real_t>::kLanes;
}

// Scaled DFT at the sampled frequencies: pruned_spectrum <- scale * FFT(rows); the slots are clobbered.
template <typename real_t>
MBDLFAST_INLINE void pruned_row_forward(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                        real_t* __restrict work) {
  all_slot_ffts<real_t, false>(plan, re, im, work);
  pruned_forward(plan, re, im, pruned_spectrum(plan, work));
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
  pruned_inverse(plan, z, re, im);
  all_slot_ffts<real_t, true>(plan, re, im, work);
}

// T = IFFT diag(weight) FFT on kLanes rows held in (re, im) slot order, in place (plan norm 1/W).
template <typename real_t>
MBDLFAST_INLINE void pruned_row_normal(const PrunedRowPlan<real_t>& plan, real_t* __restrict re, real_t* __restrict im,
                                       real_t* __restrict work) {
  pruned_row_forward(plan, re, im, work);
  pruned_inverse(plan, pruned_spectrum(plan, work), re, im);
  all_slot_ffts<real_t, true>(plan, re, im, work);
}

// MBDLFAST_ROW_TRANSFORM=pruned|fft forces one row transform (for benchmarks and tests); unset or
// "auto" takes the work model's choice (normal_1d_row_split).
inline bool use_pruned_rows(int64_t W, int64_t sampled) {
  const char* forced = std::getenv("MBDLFAST_ROW_TRANSFORM");
  const std::string choice = forced ? forced : "auto";
  TORCH_CHECK(choice == "auto" || choice == "pruned" || choice == "fft",
              "mbdlfast cpp: MBDLFAST_ROW_TRANSFORM must be auto, pruned or fft, got '", choice, "'");
  return choice == "auto" ? normal_1d_row_split(W, sampled) > 0 : choice == "pruned";
}

}  // namespace mbdlfast
