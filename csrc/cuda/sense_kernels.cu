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

#include <cstdint>

namespace {

constexpr int kThreads = 256;
constexpr int kMaxColumnsPerThread = 4;  // the fused normal kernel handles W <= kThreads * 4 = 1024

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

// Fused A^H A x (and optionally x - gamma (A^H A x - AHy)) for a 1D mask along W, one block per
// image row (b, h). With weight in uncentred order, A^H A x = sum_c conj(S_c) IFFT_W(weight FFT_W(S_c x))
// row by row. The block stages x's row, all coils' map rows and the W twiddles in shared memory,
// lists the sampled frequencies (weight != 0), and per coil computes the DFT at those n_s frequencies
// only, then the back-projection, accumulating conj(S_c) * (...) in registers: x and the maps are
// read once and the row written once. Cost per row: 2 C W n_s complex multiply-adds.
__global__ void normal_1d_kernel(const float2* __restrict__ x, const float2* __restrict__ maps, const float* __restrict__ weight,
                                 const float2* __restrict__ AHy, const float* __restrict__ gamma_ptr, float2* __restrict__ out, int64_t C, int64_t H,
                                 int W, bool shared_maps, bool shared_weight) {
  extern __shared__ float2 smem[];
  float2* twiddle = smem;             // W: exp(-2 pi i t / W)
  float2* x_row = twiddle + W;        // W
  float2* map_rows = x_row + W;       // C * W
  float2* coil_row = map_rows + C * W;  // W: S_c * x for the coil in flight
  float2* spectrum = coil_row + W;       // up to W sampled values
  int* frequency = reinterpret_cast<int*>(spectrum + W);  // up to W indices
  __shared__ int num_sampled;

  const int64_t b = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t HW = H * W;
  const float2* x_src = x + b * HW + h * W;
  const float2* map_src = maps + (shared_maps ? 0 : b) * C * HW + h * W;
  const float* weight_row = weight + (shared_weight ? 0 : b) * W;

  for (int t = threadIdx.x; t < W; t += blockDim.x) {
    float s, c;
    sincospif(-2.f * (float)t / (float)W, &s, &c);
    twiddle[t] = make_float2(c, s);
    x_row[t] = x_src[t];
  }
  for (int64_t i = threadIdx.x; i < C * W; i += blockDim.x) map_rows[i] = map_src[(i / W) * HW + i % W];
  if (threadIdx.x == 0) {
    int n = 0;
    for (int j = 0; j < W; ++j) {
      if (weight_row[j] != 0.f) frequency[n++] = j;
    }
    num_sampled = n;
  }
  __syncthreads();
  const int n_s = num_sampled;
  const float inv_w = 1.f / (float)W;

  float2 acc[kMaxColumnsPerThread];
  for (int k = 0; k < kMaxColumnsPerThread; ++k) acc[k] = make_float2(0.f, 0.f);

  for (int64_t c = 0; c < C; ++c) {
    const float2* s = map_rows + c * W;
    for (int w = threadIdx.x; w < W; w += blockDim.x) coil_row[w] = cmul(s[w], x_row[w]);
    __syncthreads();
    // Forward DFT at the sampled frequencies, weighted (and normalised for the inverse).
    for (int j = threadIdx.x; j < n_s; j += blockDim.x) {
      const int f = frequency[j];
      float2 sum = make_float2(0.f, 0.f);
      int t = 0;
      for (int w = 0; w < W; ++w) {
        const float2 term = cmul(coil_row[w], twiddle[t]);
        sum.x += term.x;
        sum.y += term.y;
        t += f;
        if (t >= W) t -= W;
      }
      const float g = weight_row[f] * inv_w;
      spectrum[j] = make_float2(g * sum.x, g * sum.y);
    }
    __syncthreads();
    // Back-projection onto this thread's columns and the conj(S_c) reduction.
    for (int k = 0; k < kMaxColumnsPerThread; ++k) {
      const int w = threadIdx.x + k * blockDim.x;
      if (w >= W) break;
      float2 v = make_float2(0.f, 0.f);
      for (int j = 0; j < n_s; ++j) {
        const float2 term = cmul_conj(twiddle[(frequency[j] * w) % W], spectrum[j]);
        v.x += term.x;
        v.y += term.y;
      }
      const float2 r = cmul_conj(s[w], v);
      acc[k].x += r.x;
      acc[k].y += r.y;
    }
    __syncthreads();
  }

  float2* dst = out + b * HW + h * W;
  for (int k = 0; k < kMaxColumnsPerThread; ++k) {
    const int w = threadIdx.x + k * blockDim.x;
    if (w >= W) break;
    if (AHy) {
      const float gamma = *gamma_ptr;
      const float2 a = AHy[b * HW + h * W + w], xv = x_row[w];
      dst[w] = make_float2(xv.x - gamma * (acc[k].x - a.x), xv.y - gamma * (acc[k].y - a.y));
    } else {
      dst[w] = acc[k];
    }
  }
}

// Compact k-space: out[b,c,h,j] = rows[b,c,h,col] * p_w[col], col = columns[b|0, j] (rows transformed along W).
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
// Atomic adds, so that repeated columns add up as the adjoint requires.
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

// Shared memory needed by the fused normal kernel, in bytes ((C + 4) W complex values + W ints).
size_t mbdlfast_cuda_normal_1d_smem(int64_t C, int64_t W) { return (size_t)((C + 4) * W) * sizeof(float2) + (size_t)W * sizeof(int); }

cudaError_t mbdlfast_cuda_normal_1d(const float2* x, const float2* maps, const float* weight, const float2* AHy, const float* gamma,
                                    float2* out, int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, int shared_weight,
                                    cudaStream_t stream) {
  if (W > kThreads * kMaxColumnsPerThread) return cudaErrorInvalidValue;
  const size_t smem = mbdlfast_cuda_normal_1d_smem(C, W);
  cudaError_t err = cudaFuncSetAttribute(normal_1d_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (err != cudaSuccess) return err;
  normal_1d_kernel<<<(unsigned)(B * H), kThreads, smem, stream>>>(x, maps, weight, AHy, gamma, out, C, H, (int)W,
                                                                   shared_maps != 0, shared_weight != 0);
  return cudaGetLastError();
}

}  // extern "C"
