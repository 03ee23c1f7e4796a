// Moving rows into and out of lane order for pruned_row_dft.h, fused with the coil products:
//
//   to_lanes:    slot n, lane l  <-  S_l[n] * x_l[n]                  (the coil expansion)
//   from_lanes:  out_l[n]       +=  conj(S_l[n]) * (slot n, lane l)   (the coil reduction)
//
// or, with ``S`` null (the plain transposes, for the columns of k-space along H), slot n, lane l <- x_l[n]
// and out_l[n] = (slot n, lane l). ``S``, ``x`` and ``out`` hold one row pointer per lane (row-major
// complex values); the lane buffers hold the real and the imaginary parts separately, slot-major
// (slot n at n * kLanes). The generic versions are plain loops over short column tiles; for float on
// AVX-512 (x86-64 only, arch.h), 8 columns of 16 rows are one 16 x 16 register transpose
// (interleaved complex in, split real/imaginary out).
#pragma once

#include "arch.h"

#if MBDLFAST_X86_64
#include <immintrin.h>
#endif

#include <algorithm>
#include <complex>
#include <cstdint>
#include <type_traits>

#include "complex_math.h"
#include "pruned_row_dft.h"

namespace mbdlfast {

constexpr int64_t kPrefetchAhead = 32;  // complex values: the 16 rows of maps are too many streams for the hardware prefetcher
constexpr int64_t kTransposeColumns = 8;  // columns per step: short enough for the strided stores to stay in L1

template <bool coil_product, typename real_t>
MBDLFAST_INLINE void to_lanes(const std::complex<real_t>* const* S, const std::complex<real_t>* const* x, int64_t n_begin,
                              int64_t n_end, real_t* __restrict re, real_t* __restrict im) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kTransposeColumns) {
    const int64_t n1 = std::min(n_end, n0 + kTransposeColumns);
    for (int l = 0; l < L; ++l) {
      for (int64_t n = n0; n < n1; ++n) {
        const std::complex<real_t> v = coil_product ? cmul(S[l][n], x[l][n]) : x[l][n];
        re[n * L + l] = v.real(), im[n * L + l] = v.imag();
      }
    }
  }
}

// Lanes whose ``out`` is null are skipped.
template <bool coil_product, typename real_t>
MBDLFAST_INLINE void from_lanes(const std::complex<real_t>* const* S, const real_t* __restrict re,
                                const real_t* __restrict im, int64_t n_begin, int64_t n_end,
                                std::complex<real_t>* const* out) {
  constexpr int L = PrunedRowPlan<real_t>::kLanes;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kTransposeColumns) {
    const int64_t n1 = std::min(n_end, n0 + kTransposeColumns);
    for (int l = 0; l < L; ++l) {
      if (!out[l]) continue;
      for (int64_t n = n0; n < n1; ++n) {
        const std::complex<real_t> v(re[n * L + l], im[n * L + l]);
        if constexpr (coil_product) {
          out[l][n] += cmul_conj(S[l][n], v);
        } else {
          out[l][n] = v;
        }
      }
    }
  }
}

#if MBDLFAST_X86_64
// In-register transpose of 16 x 16 floats: v[i] lane k  ->  v[k] lane i.
__attribute__((target("avx512f"))) MBDLFAST_INLINE void transpose16x16(__m512* v) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(v[8 * i + j], v[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_f32x4(v[8 * i + j], v[8 * i + j + 4], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    v[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    v[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

// a * b (conjugate: conj(a) * b) on 8 interleaved complex floats.
template <bool conjugate>
__attribute__((target("avx512f"))) MBDLFAST_INLINE __m512 cmul8(__m512 a, __m512 b) {
  const __m512 cross = _mm512_mul_ps(_mm512_movehdup_ps(a), _mm512_shuffle_ps(b, b, 0xB1));
  return conjugate ? _mm512_fmsubadd_ps(_mm512_moveldup_ps(a), b, cross)
                   : _mm512_fmaddsub_ps(_mm512_moveldup_ps(a), b, cross);
}

// to_lanes for float on AVX-512 over the whole columns of 8; returns where the generic tail starts.
// Not inlined: callers are compiled for any instruction set and call this only on AVX-512 machines.
template <bool coil_product>
__attribute__((target("avx512f"))) inline int64_t to_lanes_avx512(const std::complex<float>* const* S,
                                                                        const std::complex<float>* const* x, int64_t W,
                                                                        float* __restrict re, float* __restrict im) {
  const int64_t end = W - W % 8;
  for (int64_t n0 = 0; n0 < end; n0 += 8) {
    const bool prefetch = n0 + kPrefetchAhead < W;  // within the row
    __m512 v[16];
    for (int l = 0; l < 16; ++l) {
      const std::complex<float>* streamed = coil_product ? S[l] : x[l];
      if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(streamed + n0 + kPrefetchAhead), _MM_HINT_T0);
      v[l] = _mm512_loadu_ps(reinterpret_cast<const float*>(x[l] + n0));
      if constexpr (coil_product) v[l] = cmul8<false>(_mm512_loadu_ps(reinterpret_cast<const float*>(S[l] + n0)), v[l]);
    }
    transpose16x16(v);
    for (int j = 0; j < 8; ++j) {
      _mm512_storeu_ps(re + (n0 + j) * 16, v[2 * j]);
      _mm512_storeu_ps(im + (n0 + j) * 16, v[2 * j + 1]);
    }
  }
  return end;
}

template <bool coil_product>
__attribute__((target("avx512f"))) inline int64_t from_lanes_avx512(const std::complex<float>* const* S,
                                                                          const float* __restrict re,
                                                                          const float* __restrict im, int64_t W,
                                                                          std::complex<float>* const* out) {
  const int64_t end = W - W % 8;
  for (int64_t n0 = 0; n0 < end; n0 += 8) {
    const bool prefetch = n0 + kPrefetchAhead < W;  // within the row
    __m512 v[16];
    for (int j = 0; j < 8; ++j) {
      v[2 * j] = _mm512_loadu_ps(re + (n0 + j) * 16);
      v[2 * j + 1] = _mm512_loadu_ps(im + (n0 + j) * 16);
    }
    transpose16x16(v);
    for (int l = 0; l < 16; ++l) {
      if (!out[l]) continue;
      float* o = reinterpret_cast<float*>(out[l] + n0);
      if constexpr (coil_product) {
        if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(S[l] + n0 + kPrefetchAhead), _MM_HINT_T0);
        const __m512 product = cmul8<true>(_mm512_loadu_ps(reinterpret_cast<const float*>(S[l] + n0)), v[l]);
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), product));
      } else {
        _mm512_storeu_ps(o, v[l]);
      }
    }
  }
  return end;
}

#endif  // MBDLFAST_X86_64

// Whole rows into and out of lane order, with the register transposes where ``avx512`` and float:
// with the coil products (S given) or plain (the overloads without S).
template <bool avx512, bool coil_product, typename real_t>
MBDLFAST_INLINE void rows_to_lanes_impl(const std::complex<real_t>* const* S, const std::complex<real_t>* const* x, int64_t W,
                                        real_t* __restrict re, real_t* __restrict im) {
  int64_t done = 0;
#if MBDLFAST_X86_64
  if constexpr (avx512 && std::is_same_v<real_t, float>) done = to_lanes_avx512<coil_product>(S, x, W, re, im);
#endif
  to_lanes<coil_product>(S, x, done, W, re, im);
}

template <bool avx512, bool coil_product, typename real_t>
MBDLFAST_INLINE void lanes_to_rows_impl(const std::complex<real_t>* const* S, const real_t* __restrict re,
                                        const real_t* __restrict im, int64_t W, std::complex<real_t>* const* out) {
  int64_t done = 0;
#if MBDLFAST_X86_64
  if constexpr (avx512 && std::is_same_v<real_t, float>) done = from_lanes_avx512<coil_product>(S, re, im, W, out);
#endif
  from_lanes<coil_product>(S, re, im, done, W, out);
}

template <bool avx512, typename real_t>
MBDLFAST_INLINE void rows_to_lanes(const std::complex<real_t>* const* S, const std::complex<real_t>* const* x, int64_t W,
                                   real_t* __restrict re, real_t* __restrict im) {
  rows_to_lanes_impl<avx512, true>(S, x, W, re, im);
}

template <bool avx512, typename real_t>
MBDLFAST_INLINE void rows_to_lanes(const std::complex<real_t>* const* x, int64_t W, real_t* __restrict re,
                                   real_t* __restrict im) {
  rows_to_lanes_impl<avx512, false>(static_cast<const std::complex<real_t>* const*>(nullptr), x, W, re, im);
}

template <bool avx512, typename real_t>
MBDLFAST_INLINE void lanes_to_rows(const std::complex<real_t>* const* S, const real_t* __restrict re,
                                   const real_t* __restrict im, int64_t W, std::complex<real_t>* const* out) {
  lanes_to_rows_impl<avx512, true>(S, re, im, W, out);
}

template <bool avx512, typename real_t>
MBDLFAST_INLINE void lanes_to_rows(const real_t* __restrict re, const real_t* __restrict im, int64_t W,
                                   std::complex<real_t>* const* out) {
  lanes_to_rows_impl<avx512, false>(static_cast<const std::complex<real_t>* const*>(nullptr), re, im, W, out);
}

// Lanes to one segment of a k-space column stored along H, and back (see sense_columns.cpp):
//   lanes_to_segment:      dst[l]  = phase * (zr[l] + i zi[l])        for l < rows
//   segment_to_lanes_add:  zr[l] + i zi[l] += conj(phase) * src[l]     for l < rows
template <typename real_t>
MBDLFAST_INLINE void lanes_to_segment(const real_t* __restrict zr, const real_t* __restrict zi, std::complex<real_t> phase,
                                      int64_t rows, std::complex<real_t>* __restrict dst) {
  real_t* __restrict d = reinterpret_cast<real_t*>(dst);
  const real_t pr = phase.real(), pi = phase.imag();
#pragma omp simd
  for (int64_t l = 0; l < rows; ++l) d[2 * l] = zr[l] * pr - zi[l] * pi, d[2 * l + 1] = zr[l] * pi + zi[l] * pr;
}

template <typename real_t>
MBDLFAST_INLINE void segment_to_lanes_add(const std::complex<real_t>* __restrict src, std::complex<real_t> phase, int64_t rows,
                                          real_t* __restrict zr, real_t* __restrict zi) {
  const real_t* __restrict s = reinterpret_cast<const real_t*>(src);
  const real_t pr = phase.real(), pi = phase.imag();
#pragma omp simd
  for (int64_t l = 0; l < rows; ++l) zr[l] += pr * s[2 * l] + pi * s[2 * l + 1], zi[l] += pr * s[2 * l + 1] - pi * s[2 * l];
}

}  // namespace mbdlfast
