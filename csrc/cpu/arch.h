// The target architecture of the CPU kernels. The x86-64 SIMD code (SSE2 streaming stores, the
// AVX2 and AVX-512 paths chosen at run time, the AVX-512 register transposes) compiles only where
// MBDLFAST_X86_64 is 1; elsewhere (aarch64: Grace, GH200) the same kernels build from their portable
// baseline code, which the compiler vectorises for the target.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define MBDLFAST_X86_64 1
#else
#define MBDLFAST_X86_64 0
#endif
