// Complex products written out on the real and imaginary parts. std::complex's operator* checks for
// NaN/inf results (C99 Annex G) unless compiled with -ffast-math, which keeps GCC from vectorising
// the per-pixel loops of the kernels; these plain formulas vectorise.
#pragma once

#include <complex>

namespace mbdlfast {

template <typename T>
inline std::complex<T> cmul(std::complex<T> a, std::complex<T> b) {
  return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

// conj(a) * b
template <typename T>
inline std::complex<T> cmul_conj(std::complex<T> a, std::complex<T> b) {
  return {a.real() * b.real() + a.imag() * b.imag(), a.real() * b.imag() - a.imag() * b.real()};
}

}  // namespace mbdlfast
