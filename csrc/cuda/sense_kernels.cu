// CUDA kernels of the SENSE operator, complex64 only, as a pure-CUDA translation unit (no torch
// headers): it compiles with nvcc on machines without a GPU, and bindings.cpp calls the extern "C"
// launchers below. Complex numbers are float2 (x = real, y = imaginary). Every launcher returns the
// cudaError_t of its launch.
//
// Layouts (contiguous): image (B,H,W); coil data (B,C,H,W); maps (B|1,C,H,W); real weights
// (B|1,H|1,W) for k-space passes and (B|1,W) in uncentred FFT order for the fused normal operator.
// Optional modulation vectors (phase_h (H,), phase_w (W,)) implement shift-free centring: the
// centred DFT is p[k] * FFT(q[n] * x[n])[k]; passing nullptr skips the modulation.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace {

constexpr int kThreads = 256;
constexpr int kMaxDevices = 64;  // devices whose opt-in shared memory the normal launcher remembers

__device__ __forceinline__ float2 cmul(float2 a, float2 b) { return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
// conj(a) * b
__device__ __forceinline__ float2 cmul_conj(float2 a, float2 b) { return make_float2(a.x * b.x + a.y * b.y, a.x * b.y - a.y * b.x); }
__device__ __forceinline__ float2 conj2(float2 a) { return make_float2(a.x, -a.y); }

__device__ __forceinline__ float2 phase_at(const float2* phase_h, const float2* phase_w, int64_t h, int64_t w) {
  float2 p = make_float2(1.f, 0.f);
  if (phase_h) p = phase_h[h];
  if (phase_w) p = cmul(p, phase_w[w]);
  return p;
}

// out[b,c,h,w] = maps[b|0,c,h,w] * (q_h[h] q_w[w]) * x[b,h,w]
// Moves x, S in and C coil images out: 58.42 MB at 15x640x368, 17.4 us at 3.35 TB/s (an H100; a model).
__global__ void expand_kernel(const float2* __restrict__ x, const float2* __restrict__ maps, const float2* __restrict__ phase_h,
                              const float2* __restrict__ phase_w, float2* __restrict__ out, int64_t B, int64_t C, int64_t H,
                              int64_t W, bool shared_maps) {
  const int64_t total = B * C * H * W;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t w = i % W, h = (i / W) % H, c = (i / (W * H)) % C, b = i / (W * H * C);
    const float2 xv = cmul(x[(b * H + h) * W + w], phase_at(phase_h, phase_w, h, w));
    out[i] = cmul(maps[(((shared_maps ? 0 : b) * C + c) * H + h) * W + w], xv);
  }
}

// out[b,h,w] = conj(q_h[h] q_w[w]) * sum_c conj(maps[b|0,c,h,w]) * z[b,c,h,w]
// Moves z, S in and the image out: 58.42 MB at 15x640x368, 17.4 us at 3.35 TB/s (an H100; a model).
__global__ void reduce_kernel(const float2* __restrict__ z, const float2* __restrict__ maps, const float2* __restrict__ phase_h,
                              const float2* __restrict__ phase_w, float2* __restrict__ out, int64_t B, int64_t C, int64_t H,
                              int64_t W, bool shared_maps) {
  const int64_t total = B * H * W, HW = H * W;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = i / HW, pixel = i % HW;
    const float2* s = maps + (shared_maps ? 0 : b) * C * HW + pixel;
    const float2* zc = z + b * C * HW + pixel;
    float2 acc = make_float2(0.f, 0.f);
    for (int64_t c = 0; c < C; ++c) {
      const float2 term = cmul_conj(s[c * HW], zc[c * HW]);
      acc.x += term.x;
      acc.y += term.y;
    }
    out[i] = cmul_conj(phase_at(phase_h, phase_w, pixel / W, pixel % W), acc);
  }
}

// In place: k[b,c,h,w] *= weight[b|0,h|0,w] * p_h[h] p_w[w] (or its conjugate, for the adjoint).
// Moves k in and out: 56.53 MB at 15x640x368, 16.9 us at 3.35 TB/s (an H100; a model).
__global__ void mask_phase_kernel(float2* __restrict__ k, const float* __restrict__ weight, const float2* __restrict__ phase_h,
                                  const float2* __restrict__ phase_w, int64_t B, int64_t C, int64_t H, int64_t W,
                                  int64_t weight_b_stride, int64_t weight_h_stride, bool conjugate) {
  const int64_t total = B * C * H * W;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t w = i % W, h = (i / W) % H, b = i / (W * H * C);
    const float m = weight[b * weight_b_stride + h * weight_h_stride + w];
    float2 p = phase_at(phase_h, phase_w, h, w);
    if (conjugate) p = conj2(p);
    k[i] = cmul(k[i], make_float2(m * p.x, m * p.y));
  }
}

// out = k - lam * weight * (k - y); lam is read on the device (no host sync, capturable in a CUDA graph)
// Moves k, y in and out out: 84.79 MB at 15x640x368, 25.3 us at 3.35 TB/s (an H100; a model).
__global__ void soft_dc_kernel(const float2* __restrict__ k, const float2* __restrict__ y, const float* __restrict__ weight,
                               const float* __restrict__ lam_ptr, float2* __restrict__ out, int64_t B, int64_t C, int64_t H, int64_t W,
                               int64_t weight_b_stride, int64_t weight_h_stride) {
  const int64_t total = B * C * H * W;
  const float lam = *lam_ptr;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t w = i % W, h = (i / W) % H, b = i / (W * H * C);
    const float f = lam * weight[b * weight_b_stride + h * weight_h_stride + w];
    const float2 kv = k[i], yv = y[i];
    out[i] = make_float2(kv.x - f * (kv.x - yv.x), kv.y - f * (kv.y - yv.y));
  }
}

// Fused A^H A x (and optionally x - gamma (A^H A x - AHy)) for a 1D mask along W. With weight in
// uncentred order, A^H A x = sum_c conj(S_c) IFFT_W(weight FFT_W(S_c x)) row by row, and only the n_s
// sampled frequencies (weight != 0) contribute. One block owns (kRows image rows, one coil, one batch
// entry): grid (ceil(H / kRows), C, B), 1200 blocks at 15x640x368, batch 1. Phases, each spread over
// all threads:
//   1. stage u = S_c x for its rows and the W twiddles exp(-2 pi i t / W) in shared memory, and list
//      the sampled frequencies by a block scan (warp ballots; no thread works alone);
//   2. spectrum[r][j] = weight[f_j] / W * sum_w u[r][w] tw[f_j w mod W]: a warp owns 32 samples x
//      kForwardRows rows x one of kSegments slices of W (the twiddle index steps by f_j, no modulo), and
//      adds its partial sums into shared memory;
//   3. v[r][w] = sum_j conj(tw[f_j w mod W]) spectrum[r][j]: a thread owns kBackRows rows x kBackCols
//      columns (one reduction f_j w mod W per sample, by a multiply-high, then steps of f_j), and adds
//      conj(S_c) v into the zero-filled output with fp32 atomics (the coil sum; the last bits depend on
//      the order of the adds). For the DC step the coil-0 blocks also add x + gamma AHy, every block
//      -gamma conj(S_c) v.
// Must move x, S in and the output twice (zero fill, final write), the C re-reads of x and the atomic
// adds resolving in L2: 33.91 MB at 15x640x368 (n_s = 92), 10.1 us at 3.35 TB/s (an H100); the DC step
// also reads AHy: 35.80 MB, 10.7 us. It is not memory-bound: 2 C H W n_s = 650 M complex multiply-adds
// (5.2 GFLOP) take about 78 us at the H100's 67 TFLOP/s FP32 FMA. Both times are models, not measurements.
// Shared memory 54,016 B at W = 368 (mbdlfast_cuda_normal_1d_smem). ptxas (nvcc 13, -O3 --use_fast_math):
// sm_90 48 registers, sm_80 41, no spills.
constexpr int kRows = 8;          // image rows per block
constexpr int kForwardRows = 4;   // rows per warp task in the forward DFT
constexpr int kSegments = 4;      // slices of W per forward task: 3 x 2 x 4 = 24 tasks for 8 warps at n_s = 92
constexpr int kBackRows = 2;      // back-projection tile per thread: kBackRows x kBackCols outputs
constexpr int kBackCols = 2;
constexpr int kWarps = kThreads / 32;
static_assert(kRows % kForwardRows == 0 && kRows % kBackRows == 0, "row tiles must divide kRows");

// p mod W for p < 2^32 / W by a precomputed magic = ceil(2^32 / W) (exact there; the callers keep
// p < W^2 with W <= 1024).
__device__ __forceinline__ int mod_width(unsigned p, unsigned W, unsigned magic) { return (int)(p - __umulhi(p, magic) * W); }

// No __launch_bounds__: with it, nvcc 13's ptxas spills 12 bytes at 40 registers for sm_90.
__global__ void normal_1d_kernel(const float2* __restrict__ x, const float2* __restrict__ maps, const float* __restrict__ weight,
                                 const float2* __restrict__ AHy, const float* __restrict__ gamma_ptr, float2* __restrict__ out, int C,
                                 int H, int W, unsigned magic, bool shared_maps, bool shared_weight) {
  extern __shared__ float2 smem[];
  const int padded = (W + 31) / 32 * 32;  // spectrum row stride: room for every frequency
  float2* twiddle = smem;                 // W
  float2* u = twiddle + W;                // kRows x W
  float2* spectrum = u + kRows * W;       // kRows x padded
  int* frequency = reinterpret_cast<int*>(spectrum + kRows * padded);  // W
  float* gain = reinterpret_cast<float*>(frequency + W);              // W: weight / W of each listed frequency
  __shared__ int warp_counts[kWarps];

  const int h0 = blockIdx.x * kRows, c = blockIdx.y;
  const int64_t b = blockIdx.z, HW = (int64_t)H * W;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float2* x_rows = x + b * HW + (int64_t)h0 * W;
  const float2* map_rows = maps + ((shared_maps ? 0 : b) * C + c) * HW + (int64_t)h0 * W;
  const float* weight_row = weight + (shared_weight ? 0 : b) * W;
  const int rows = min(kRows, H - h0);

  // 1. Staging (rows past H are zero) and the list of sampled frequencies, 256 candidates a round.
  for (int t = threadIdx.x; t < W; t += kThreads) {
    float s, co;
    sincospif(-2.f * (float)t / (float)W, &s, &co);
    twiddle[t] = make_float2(co, s);
  }
  for (int i = threadIdx.x; i < kRows * W; i += kThreads) u[i] = i < rows * W ? cmul(map_rows[i], x_rows[i]) : make_float2(0.f, 0.f);
  for (int i = threadIdx.x; i < kRows * padded; i += kThreads) spectrum[i] = make_float2(0.f, 0.f);
  int n_s = 0;
  for (int base = 0; base < W; base += kThreads) {
    const int f = base + threadIdx.x;
    const float g = f < W ? weight_row[f] : 0.f;
    const unsigned ballot = __ballot_sync(0xffffffffu, g != 0.f);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = n_s, total = n_s;
    #pragma unroll
    for (int k = 0; k < kWarps; ++k) {
      before += k < warp ? warp_counts[k] : 0;
      total += warp_counts[k];
    }
    if (g != 0.f) {
      const int j = before + __popc(ballot & ((1u << lane) - 1u));
      frequency[j] = f;
      gain[j] = g / (float)W;
    }
    n_s = total;
    __syncthreads();  // warp_counts is rewritten next round; also publishes the staging
  }

  // 2. Forward DFT at the sampled frequencies: warp tasks (sample group, row group, W slice).
  const int groups = (n_s + 31) / 32, slice = (W + kSegments - 1) / kSegments;
  constexpr int kRowGroups = kRows / kForwardRows;
  for (int task = warp; task < groups * kRowGroups * kSegments; task += kWarps) {
    const int j = (task / (kRowGroups * kSegments)) * 32 + lane;
    const int r0 = (task / kSegments) % kRowGroups * kForwardRows;
    const int w_begin = min(W, task % kSegments * slice), w_end = min(W, w_begin + slice);
    const int f = j < n_s ? frequency[j] : 0;
    int t = mod_width((unsigned)(f * w_begin), W, magic);
    float2 acc[kForwardRows];
    #pragma unroll
    for (int r = 0; r < kForwardRows; ++r) acc[r] = make_float2(0.f, 0.f);
    for (int w = w_begin; w < w_end; ++w) {
      const float2 e = twiddle[t];
      #pragma unroll
      for (int r = 0; r < kForwardRows; ++r) {
        const float2 v = u[(r0 + r) * W + w];  // the same address across the warp: a broadcast
        acc[r].x += v.x * e.x - v.y * e.y;
        acc[r].y += v.x * e.y + v.y * e.x;
      }
      t += f;
      if (t >= W) t -= W;
    }
    if (j < n_s) {
      const float g = gain[j];
      #pragma unroll
      for (int r = 0; r < kForwardRows; ++r) {
        float* dst = reinterpret_cast<float*>(spectrum + (r0 + r) * padded + j);
        atomicAdd(dst, g * acc[r].x);
        atomicAdd(dst + 1, g * acc[r].y);
      }
    }
  }
  __syncthreads();

  // 3. Back-projection onto kBackRows x kBackCols tiles, conj(S_c) and the coil sum into out.
  const bool dc_step = AHy != nullptr;
  const float gamma = dc_step ? *gamma_ptr : 0.f;
  const int col_tiles = (W + kBackCols - 1) / kBackCols;
  for (int tile = threadIdx.x; tile < kRows / kBackRows * col_tiles; tile += kThreads) {
    const int r0 = tile / col_tiles * kBackRows, w0 = tile % col_tiles * kBackCols;
    float2 acc[kBackRows][kBackCols];
    #pragma unroll
    for (int r = 0; r < kBackRows; ++r)
      #pragma unroll
      for (int k = 0; k < kBackCols; ++k) acc[r][k] = make_float2(0.f, 0.f);
    for (int j = 0; j < n_s; ++j) {
      const int f = frequency[j];
      float2 z[kBackRows];
      #pragma unroll
      for (int r = 0; r < kBackRows; ++r) z[r] = spectrum[(r0 + r) * padded + j];
      int t = mod_width((unsigned)(f * w0), W, magic);
      #pragma unroll
      for (int k = 0; k < kBackCols; ++k) {
        const float2 e = twiddle[t];
        #pragma unroll
        for (int r = 0; r < kBackRows; ++r) {
          const float2 term = cmul_conj(e, z[r]);
          acc[r][k].x += term.x;
          acc[r][k].y += term.y;
        }
        t += f;
        if (t >= W) t -= W;
      }
    }
    #pragma unroll
    for (int r = 0; r < kBackRows; ++r) {
      if (r0 + r >= rows) break;
      #pragma unroll
      for (int k = 0; k < kBackCols; ++k) {
        const int w = w0 + k;
        if (w >= W) break;
        const int64_t pixel = (int64_t)(r0 + r) * W + w;
        float2 v = cmul_conj(map_rows[pixel], acc[r][k]);
        if (dc_step) {
          v = make_float2(-gamma * v.x, -gamma * v.y);
          if (c == 0) {
            const float2 xv = x_rows[pixel], a = AHy[b * HW + (int64_t)h0 * W + pixel];
            v.x += xv.x + gamma * a.x;
            v.y += xv.y + gamma * a.y;
          }
        }
        float* dst = reinterpret_cast<float*>(out + b * HW + (int64_t)h0 * W + pixel);
        atomicAdd(dst, v.x);
        atomicAdd(dst + 1, v.y);
      }
    }
  }
}

// Compact k-space: out[b,c,h,j] = rows[b,c,h,col] * p_w[col], col = columns[b|0, j] (rows transformed along W).
// Moves the n_s = 92 kept columns in and out: 14.13 MB at 15x640x368, 4.2 us at 3.35 TB/s (an H100; a
// model); at R = 4 every 32-byte sector of the rows holds a kept column, so DRAM reads 35.33 MB, 10.5 us.
__global__ void gather_columns_kernel(const float2* __restrict__ rows, const int64_t* __restrict__ columns,
                                      const float2* __restrict__ phase_w, float2* __restrict__ out, int64_t B, int64_t C,
                                      int64_t H, int64_t W, int64_t n, int64_t columns_b_stride) {
  const int64_t total = B * C * H * n;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = i % n, row = i / n, b = i / (n * H * C);
    const int64_t col = columns[b * columns_b_stride + j];
    out[i] = cmul(rows[row * W + col], phase_w[col]);
  }
}

// Adjoint of the gather into a zeroed full array: full[b,c,h,col] += compact[b,c,h,j] * conj(p_w[col]).
// Atomic adds, so that repeated columns add up as the adjoint requires. Moves the compact data in and
// the kept columns out: 14.13 MB at 15x640x368, n_s = 92, 4.2 us at 3.35 TB/s (an H100; a model); by
// 32-byte sectors at R = 4 the writes touch the whole array: 35.33 MB, 10.5 us.
__global__ void scatter_columns_kernel(const float2* __restrict__ compact, const int64_t* __restrict__ columns,
                                       const float2* __restrict__ phase_w, float2* __restrict__ full, int64_t B, int64_t C,
                                       int64_t H, int64_t W, int64_t n, int64_t columns_b_stride) {
  const int64_t total = B * C * H * n;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = i % n, row = i / n, b = i / (n * H * C);
    const int64_t col = columns[b * columns_b_stride + j];
    const float2 v = cmul_conj(phase_w[col], compact[i]);
    float* dst = reinterpret_cast<float*>(full + row * W + col);
    atomicAdd(dst, v.x);
    atomicAdd(dst + 1, v.y);
  }
}

int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return (int)(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace

extern "C" {

cudaError_t mbdlfast_cuda_expand(const float2* x, const float2* maps, const float2* phase_h, const float2* phase_w, float2* out,
                                 int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, cudaStream_t stream) {
  expand_kernel<<<grid_for(B * C * H * W), kThreads, 0, stream>>>(x, maps, phase_h, phase_w, out, B, C, H, W, shared_maps != 0);
  return cudaGetLastError();
}

cudaError_t mbdlfast_cuda_reduce(const float2* z, const float2* maps, const float2* phase_h, const float2* phase_w, float2* out,
                                 int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, cudaStream_t stream) {
  reduce_kernel<<<grid_for(B * H * W), kThreads, 0, stream>>>(z, maps, phase_h, phase_w, out, B, C, H, W, shared_maps != 0);
  return cudaGetLastError();
}

cudaError_t mbdlfast_cuda_mask_phase(float2* k, const float* weight, const float2* phase_h, const float2* phase_w, int64_t B,
                                     int64_t C, int64_t H, int64_t W, int64_t weight_b_stride, int64_t weight_h_stride,
                                     int conjugate, cudaStream_t stream) {
  mask_phase_kernel<<<grid_for(B * C * H * W), kThreads, 0, stream>>>(k, weight, phase_h, phase_w, B, C, H, W, weight_b_stride,
                                                                      weight_h_stride, conjugate != 0);
  return cudaGetLastError();
}

cudaError_t mbdlfast_cuda_soft_dc(const float2* k, const float2* y, const float* weight, const float* lam, float2* out, int64_t B,
                                  int64_t C, int64_t H, int64_t W, int64_t weight_b_stride, int64_t weight_h_stride,
                                  cudaStream_t stream) {
  soft_dc_kernel<<<grid_for(B * C * H * W), kThreads, 0, stream>>>(k, y, weight, lam, out, B, C, H, W, weight_b_stride,
                                                                   weight_h_stride);
  return cudaGetLastError();
}

cudaError_t mbdlfast_cuda_gather_columns(const float2* rows, const int64_t* columns, const float2* phase_w, float2* out, int64_t B,
                                         int64_t C, int64_t H, int64_t W, int64_t n, int64_t columns_b_stride,
                                         cudaStream_t stream) {
  gather_columns_kernel<<<grid_for(B * C * H * n), kThreads, 0, stream>>>(rows, columns, phase_w, out, B, C, H, W, n,
                                                                          columns_b_stride);
  return cudaGetLastError();
}

cudaError_t mbdlfast_cuda_scatter_columns(const float2* compact, const int64_t* columns, const float2* phase_w, float2* full,
                                          int64_t B, int64_t C, int64_t H, int64_t W, int64_t n, int64_t columns_b_stride,
                                          cudaStream_t stream) {
  scatter_columns_kernel<<<grid_for(B * C * H * n), kThreads, 0, stream>>>(compact, columns, phase_w, full, B, C, H, W, n,
                                                                           columns_b_stride);
  return cudaGetLastError();
}

// The opt-in shared memory per block of a device (cudaDevAttrMaxSharedMemoryPerBlockOptin), read once
// per device; 0 for a device it cannot read.
size_t mbdlfast_cuda_shared_memory_optin(int device) {
  static std::atomic<size_t> cached[kMaxDevices];
  if (device < 0 || device >= kMaxDevices) return 0;
  size_t value = cached[device].load(std::memory_order_relaxed);
  if (value == 0) {
    int bytes = 0;
    if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
    value = (size_t)bytes;
    cached[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

// Shared memory of the fused normal kernel, in bytes: twiddles, kRows staged rows and kRows spectrum
// rows (of W rounded up to 32) of complex64, W listed frequencies and their gains. Independent of C;
// mbdlfast/ops/extension_ops.py mirrors it.
size_t mbdlfast_cuda_normal_1d_smem(int64_t W) {
  const int64_t padded = (W + 31) / 32 * 32;
  return (size_t)((1 + kRows) * W + kRows * padded) * sizeof(float2) + (size_t)W * (sizeof(int) + sizeof(float));
}

// out must be zero-filled (the coil sum adds into it) and W <= 1024 (the index reduction's range);
// device is the current device, smem_limit its opt-in shared memory per block. Returns
// cudaErrorInvalidConfiguration when the kernel's shared memory exceeds it.
cudaError_t mbdlfast_cuda_normal_1d(const float2* x, const float2* maps, const float* weight, const float2* AHy, const float* gamma,
                                    float2* out, int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, int shared_weight,
                                    int device, size_t smem_limit, cudaStream_t stream) {
  if (W > 1024 || C > 65535 || B > 65535 || device < 0 || device >= kMaxDevices) return cudaErrorInvalidValue;
  if (B == 0 || C == 0 || H == 0 || W == 0) return cudaSuccess;
  const size_t smem = mbdlfast_cuda_normal_1d_smem(W);
  if (smem > smem_limit) return cudaErrorInvalidConfiguration;
  // The opt-in attribute once per device and size: raised only past the largest size set so far (the
  // lock, taken only then, keeps concurrent first calls from lowering it again).
  static std::atomic<size_t> configured[kMaxDevices];
  if (smem > configured[device].load(std::memory_order_acquire)) {
    static std::mutex raising;
    const std::lock_guard<std::mutex> lock(raising);
    if (smem > configured[device].load(std::memory_order_relaxed)) {
      const cudaError_t err = cudaFuncSetAttribute(normal_1d_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (err != cudaSuccess) return err;
      configured[device].store(smem, std::memory_order_release);
    }
  }
  // ceil(2^32 / W); W = 1 wraps to 0, harmless there since every index is 0
  const unsigned magic = 0xffffffffu / (unsigned)W + 1u;
  const dim3 grid((unsigned)((H + kRows - 1) / kRows), (unsigned)C, (unsigned)B);
  normal_1d_kernel<<<grid, kThreads, smem, stream>>>(x, maps, weight, AHy, gamma, out, (int)C, (int)H, (int)W, magic,
                                                      shared_maps != 0, shared_weight != 0);
  return cudaGetLastError();
}

}  // extern "C"
