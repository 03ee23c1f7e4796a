// Copies to memory that will not be read again soon (k-space rows written once), with non-temporal
// stores: they skip the read-for-ownership of each destination line, so a write costs its own
// traffic only, and they leave the caches to the data still being worked on. SSE2 (baseline
// x86-64): 16-byte stores, which the write-combining buffers join into whole lines. Elsewhere
// (arch.h) plain copies.
#pragma once

#include "arch.h"

#if MBDLFAST_X86_64
#include <emmintrin.h>
#endif

#include <algorithm>
#include <complex>
#include <cstdint>

namespace mbdlfast {

#if MBDLFAST_X86_64

inline void stream_copy(const std::complex<float>* src, std::complex<float>* dst, int64_t n) {
  int64_t i = 0;
  if (n > 0 && reinterpret_cast<uintptr_t>(dst) % 16 != 0) dst[0] = src[0], i = 1;  // to a 16-byte boundary
  for (; i + 2 <= n; i += 2) _mm_stream_ps(reinterpret_cast<float*>(dst + i), _mm_loadu_ps(reinterpret_cast<const float*>(src + i)));
  if (i < n) dst[i] = src[i];
}

inline void stream_copy(const std::complex<double>* src, std::complex<double>* dst, int64_t n) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0) {  // not from at::empty; plain stores
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) _mm_stream_pd(reinterpret_cast<double*>(dst + i), _mm_loadu_pd(reinterpret_cast<const double*>(src + i)));
}

// Orders the streamed stores before what follows (they are weakly ordered).
inline void stream_fence() { _mm_sfence(); }

#else

template <typename real_t>
inline void stream_copy(const std::complex<real_t>* src, std::complex<real_t>* dst, int64_t n) {
  std::copy(src, src + n, dst);
}

inline void stream_fence() {}

#endif

}  // namespace mbdlfast
