// One kernel body compiled for three x86-64 instruction sets, the best chosen at run time; on other
// architectures (arch.h) for the baseline only.
//
// ``Kernel`` provides ``using Args = ...;`` and ``template <bool avx512> static void run(const Args&)``
// marked MBDLFAST_INLINE, so that each wrapper below inlines it and compiles it for its own target;
// ``avx512`` lets the body call AVX-512 helpers (lane_transpose.h) on the first path only. The
// extension itself is built for the baseline of its architecture, so it loads on any such CPU.
// MBDLFAST_CPU_ISA caps the choice.
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#include "arch.h"
#include "pruned_row_dft.h"

namespace mbdlfast {

#if MBDLFAST_X86_64
template <class Kernel>
__attribute__((target("avx512f,avx512dq,avx2,fma"))) void run_avx512(const typename Kernel::Args& args) {
  Kernel::template run<true>(args);
}

template <class Kernel>
__attribute__((target("avx2,fma"))) void run_avx2(const typename Kernel::Args& args) {
  Kernel::template run<false>(args);
}
#endif

template <class Kernel>
void run_baseline(const typename Kernel::Args& args) {
  Kernel::template run<false>(args);
}

// The instruction set of the paths below that this CPU supports, capped by
// MBDLFAST_CPU_ISA=avx512|avx2|baseline (so that tests and benchmarks can run the lower paths on a
// machine that has the higher ones): "avx512", "avx2" or "baseline".
inline std::string selected_isa() {
  const char* cap_env = std::getenv("MBDLFAST_CPU_ISA");
  const std::string cap = cap_env ? cap_env : "avx512";
  TORCH_CHECK(cap == "avx512" || cap == "avx2" || cap == "baseline",
              "mbdlfast cpp: MBDLFAST_CPU_ISA must be avx512, avx2 or baseline, got '", cap, "'");
#if MBDLFAST_X86_64
  __builtin_cpu_init();
  if (cap == "avx512" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return "avx512";
  if (cap != "baseline" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
  return "baseline";
}

// The kernel's path for selected_isa().
template <class Kernel>
auto best_isa(void) -> void (*)(const typename Kernel::Args&) {
#if MBDLFAST_X86_64
  const std::string isa = selected_isa();
  if (isa == "avx512") return &run_avx512<Kernel>;
  if (isa == "avx2") return &run_avx2<Kernel>;
#endif
  return &run_baseline<Kernel>;
}

}  // namespace mbdlfast
