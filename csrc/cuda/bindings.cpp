// CUDA implementations of the mbdlfast ops: argument checks, then the extern "C" launchers of
// sense_kernels.cu on the current stream. Compiled only when torch has CUDA. complex64 only.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>
#include <torch/library.h>

extern "C" {
cudaError_t mbdlfast_cuda_expand(const float2* x, const float2* maps, const float2* phase_h, const float2* phase_w, float2* out,
                                 int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, cudaStream_t stream);
cudaError_t mbdlfast_cuda_reduce(const float2* z, const float2* maps, const float2* phase_h, const float2* phase_w, float2* out,
                                 int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, cudaStream_t stream);
cudaError_t mbdlfast_cuda_soft_dc(const float2* k, const float2* y, const float* weight, const float* lam, float2* out, int64_t B,
                                  int64_t C, int64_t H, int64_t W, int64_t weight_b_stride, int64_t weight_h_stride,
                                  cudaStream_t stream);
cudaError_t mbdlfast_cuda_mask_phase(float2* k, const float* weight, const float2* phase_h, const float2* phase_w, int64_t B,
                                     int64_t C, int64_t H, int64_t W, int64_t weight_b_stride, int64_t weight_h_stride,
                                     int conjugate, cudaStream_t stream);
cudaError_t mbdlfast_cuda_gather_columns(const float2* rows, const int64_t* columns, const float2* phase_w, float2* out, int64_t B,
                                         int64_t C, int64_t H, int64_t W, int64_t n, int64_t columns_b_stride,
                                         cudaStream_t stream);
cudaError_t mbdlfast_cuda_scatter_columns(const float2* compact, const int64_t* columns, const float2* phase_w, float2* full,
                                          int64_t B, int64_t C, int64_t H, int64_t W, int64_t n, int64_t columns_b_stride,
                                          cudaStream_t stream);
size_t mbdlfast_cuda_shared_memory_optin(int device);
size_t mbdlfast_cuda_normal_1d_smem(int64_t W);
cudaError_t mbdlfast_cuda_normal_1d(const float2* x, const float2* maps, const float* weight, const float2* AHy, const float* gamma,
                                    float2* out, int64_t B, int64_t C, int64_t H, int64_t W, int shared_maps, int shared_weight,
                                    int device, size_t smem_limit, cudaStream_t stream);
}

namespace {

void check_cuda_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Tensor& like) {
  TORCH_CHECK(t.is_cuda(), "mbdlfast cuda: ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == like.device(), "mbdlfast cuda: ", name, " must be on ", like.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "mbdlfast cuda: ", name, " must have dtype ", dtype, " (the CUDA kernels are complex64 "
              "only), got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "mbdlfast cuda: ", name, " must be contiguous");
}

const float2* as_float2(const at::Tensor& t) { return reinterpret_cast<const float2*>(t.data_ptr()); }
float2* as_float2_mut(at::Tensor& t) { return reinterpret_cast<float2*>(t.data_ptr()); }

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "mbdlfast cuda: ", what, " failed: ", cudaGetErrorString(err));
}

void check_maps(const at::Tensor& maps, const at::Tensor& image, int64_t B, int64_t H, int64_t W) {
  check_cuda_tensor(maps, "maps", at::kComplexFloat, image);
  TORCH_CHECK(maps.dim() == 4 && (maps.size(0) == 1 || maps.size(0) == B) && maps.size(2) == H && maps.size(3) == W,
              "mbdlfast cuda: maps must be (B|1,C,", H, ",", W, ") with B=", B, ", got ", maps.sizes());
}

at::Tensor coil_expand_cuda(const at::Tensor& x, const at::Tensor& maps) {
  check_cuda_tensor(x, "x", at::kComplexFloat, x);
  TORCH_CHECK(x.dim() == 3, "mbdlfast cuda: x must be (B,H,W), got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  check_maps(maps, x, B, H, W);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty({B, maps.size(1), H, W}, x.options());
  check_launch(mbdlfast_cuda_expand(as_float2(x), as_float2(maps), nullptr, nullptr, as_float2_mut(out), B, maps.size(1), H, W,
                                    maps.size(0) == 1, c10::cuda::getCurrentCUDAStream()),
               "coil_expand");
  return out;
}

at::Tensor coil_reduce_cuda(const at::Tensor& z, const at::Tensor& maps) {
  check_cuda_tensor(z, "z", at::kComplexFloat, z);
  TORCH_CHECK(z.dim() == 4, "mbdlfast cuda: z must be (B,C,H,W), got ", z.sizes());
  const int64_t B = z.size(0), C = z.size(1), H = z.size(2), W = z.size(3);
  check_maps(maps, z, B, H, W);
  TORCH_CHECK(maps.size(1) == C, "mbdlfast cuda: maps must have ", C, " coils, got ", maps.size(1));
  const c10::cuda::CUDAGuard guard(z.device());
  auto out = at::empty({B, H, W}, z.options());
  check_launch(mbdlfast_cuda_reduce(as_float2(z), as_float2(maps), nullptr, nullptr, as_float2_mut(out), B, C, H, W,
                                    maps.size(0) == 1, c10::cuda::getCurrentCUDAStream()),
               "coil_reduce");
  return out;
}

// A real one-element float32 tensor on like's device (gamma, lam), read by the kernel itself.
void check_device_scalar(const at::Tensor& t, const char* name, const at::Tensor& like) {
  check_cuda_tensor(t, name, at::kFloat, like);
  TORCH_CHECK(t.numel() == 1, "mbdlfast cuda: ", name, " must have one element, got ", t.sizes());
}

at::Tensor normal_or_step(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight, const at::Tensor* AHy,
                          const at::Tensor* gamma) {
  check_cuda_tensor(x, "x", at::kComplexFloat, x);
  TORCH_CHECK(x.dim() == 3, "mbdlfast cuda: x must be (B,H,W), got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  check_maps(maps, x, B, H, W);
  check_cuda_tensor(weight, "weight", at::kFloat, x);
  TORCH_CHECK(weight.dim() == 2 && (weight.size(0) == 1 || weight.size(0) == B) && weight.size(1) == W,
              "mbdlfast cuda: weight must be (B|1,", W, "), got ", weight.sizes());
  TORCH_CHECK(W <= 1024, "mbdlfast cuda: the fused normal kernel handles W <= 1024, got ", W);
  if (AHy) {
    check_cuda_tensor(*AHy, "AHy", at::kComplexFloat, x);
    TORCH_CHECK(AHy->sizes() == x.sizes(), "mbdlfast cuda: AHy must have the shape of x ", x.sizes(), ", got ", AHy->sizes());
    check_device_scalar(*gamma, "gamma", x);
  }
  const int64_t C = maps.size(1);
  TORCH_CHECK(B <= 65535 && C <= 65535, "mbdlfast cuda: the fused normal kernel's grid takes B, C <= 65535, got B=", B, " C=", C);
  const c10::cuda::CUDAGuard guard(x.device());
  if (C == 0) return AHy ? x + *gamma * *AHy : at::zeros_like(x);
  const int device = x.get_device();
  const size_t needed = mbdlfast_cuda_normal_1d_smem(W);
  const size_t limit = mbdlfast_cuda_shared_memory_optin(device);
  TORCH_CHECK(limit > 0, "mbdlfast cuda: could not read the shared memory limit of device ", device);
  TORCH_CHECK(needed <= limit, "mbdlfast cuda: the fused normal kernel needs ", needed, " bytes of shared memory per block at W=", W,
              ", device ", device, " allows ", limit, " (cudaDevAttrMaxSharedMemoryPerBlockOptin)");
  auto out = at::zeros_like(x);  // the kernel adds every coil's share into it
  check_launch(mbdlfast_cuda_normal_1d(as_float2(x), as_float2(maps), weight.data_ptr<float>(), AHy ? as_float2(*AHy) : nullptr,
                                       gamma ? gamma->data_ptr<float>() : nullptr, as_float2_mut(out), B, C, H, W, maps.size(0) == 1,
                                       weight.size(0) == 1, device, limit, c10::cuda::getCurrentCUDAStream()),
               "sense_normal");
  return out;
}

at::Tensor sense_normal_cuda(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& circulant_weight) {
  return normal_or_step(x, maps, circulant_weight, nullptr, nullptr);
}

at::Tensor dc_gradient_step_cuda(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& circulant_weight,
                                 const at::Tensor& AHy, const at::Tensor& gamma) {
  return normal_or_step(x, maps, circulant_weight, &AHy, &gamma);
}

at::Tensor soft_kspace_dc_cuda(const at::Tensor& k, const at::Tensor& y, const at::Tensor& weight, const at::Tensor& lam) {
  check_cuda_tensor(k, "k", at::kComplexFloat, k);
  check_cuda_tensor(y, "y", at::kComplexFloat, k);
  check_cuda_tensor(weight, "weight", at::kFloat, k);
  TORCH_CHECK(k.dim() == 4 && y.sizes() == k.sizes(), "mbdlfast cuda: k and y must be (B,C,H,W) of one shape, got ", k.sizes(),
              " and ", y.sizes());
  const int64_t B = k.size(0), C = k.size(1), H = k.size(2), W = k.size(3);
  TORCH_CHECK(weight.dim() == 3 && (weight.size(0) == 1 || weight.size(0) == B) && (weight.size(1) == 1 || weight.size(1) == H) &&
                  weight.size(2) == W,
              "mbdlfast cuda: weight must be (B|1, H|1, W), got ", weight.sizes());
  check_device_scalar(lam, "lam", k);
  const c10::cuda::CUDAGuard guard(k.device());
  auto out = at::empty_like(k);
  check_launch(mbdlfast_cuda_soft_dc(as_float2(k), as_float2(y), weight.data_ptr<float>(), lam.data_ptr<float>(), as_float2_mut(out), B, C, H,
                                     W, weight.size(0) == 1 ? 0 : weight.size(1) * W, weight.size(1) == 1 ? 0 : W,
                                     c10::cuda::getCurrentCUDAStream()),
               "soft_kspace_dc");
  return out;
}

// Input (q) and output (p) modulations of the centred DFT of length n, complex64 on `device`:
// fftc(x)[k] = p[k] FFT(q x)[k], q[t] = w^(-c t), p[k] = w^(c^2 - c k), c = n / 2, w = exp(-2 pi i / n).
std::pair<at::Tensor, at::Tensor> centring_phases(int64_t n, const at::Device& device) {
  const auto index = at::arange(n, at::TensorOptions().dtype(at::kLong));
  const int64_t c = n / 2;
  const auto q_angle = at::remainder(index * c, n).to(at::kDouble) * (2.0 * M_PI / static_cast<double>(n));
  const auto p_angle = at::remainder(c * c - index * c, n).to(at::kDouble) * (-2.0 * M_PI / static_cast<double>(n));
  const auto one = at::ones({n}, at::TensorOptions().dtype(at::kDouble));
  auto as_device = [&](const at::Tensor& angle) { return at::polar(one, angle).to(device, at::kComplexFloat).contiguous(); };
  return {as_device(q_angle), as_device(p_angle)};
}

struct ImageShape {
  int64_t B, C, H, W;
};

ImageShape check_image(const at::Tensor& x, const at::Tensor& maps) {
  check_cuda_tensor(x, "x", at::kComplexFloat, x);
  TORCH_CHECK(x.dim() == 3, "mbdlfast cuda: x must be (B,H,W), got ", x.sizes());
  check_maps(maps, x, x.size(0), x.size(1), x.size(2));
  return {x.size(0), maps.size(1), x.size(1), x.size(2)};
}

ImageShape check_kspace(const at::Tensor& k, const at::Tensor& maps, const char* name) {
  check_cuda_tensor(k, name, at::kComplexFloat, k);
  TORCH_CHECK(k.dim() == 4, "mbdlfast cuda: ", name, " must be (B,C,H,W), got ", k.sizes());
  TORCH_CHECK(maps.dim() == 4, "mbdlfast cuda: maps must be (B|1,C,H,W), got ", maps.sizes());
  check_maps(maps, k, k.size(0), maps.size(2), maps.size(3));
  TORCH_CHECK(k.size(1) == maps.size(1) && k.size(2) == maps.size(2), "mbdlfast cuda: ", name, " must be (B,", maps.size(1), ",",
              maps.size(2), ",*) like the maps, got ", k.sizes());
  return {k.size(0), maps.size(1), maps.size(2), maps.size(3)};
}

// weight (B|1, W) float32 in centred order; returns its batch stride.
int64_t check_mask_weight(const at::Tensor& weight, const at::Tensor& like, int64_t B, int64_t W) {
  check_cuda_tensor(weight, "weight", at::kFloat, like);
  TORCH_CHECK(weight.dim() == 2 && (weight.size(0) == 1 || weight.size(0) == B) && weight.size(1) == W,
              "mbdlfast cuda: weight must be (B|1, W) with B=", B, " W=", W, ", got ", weight.sizes());
  return weight.size(0) == 1 ? 0 : W;
}

// columns (B|1, n) int64 with every value in [0, W) (checked on the device, one host sync); returns the batch stride.
int64_t check_columns(const at::Tensor& columns, const at::Tensor& like, int64_t B, int64_t W) {
  check_cuda_tensor(columns, "columns", at::kLong, like);
  TORCH_CHECK(columns.dim() == 2 && (columns.size(0) == 1 || columns.size(0) == B),
              "mbdlfast cuda: columns must be (B|1, n_s) with B=", B, ", got ", columns.sizes());
  if (columns.numel() > 0) {
    const auto [low, high] = at::aminmax(columns);
    TORCH_CHECK(low.item<int64_t>() >= 0 && high.item<int64_t>() < W, "mbdlfast cuda: columns must lie in [0, ", W, ")");
  }
  return columns.size(0) == 1 ? 0 : columns.size(1);
}

// S * (q_h q_w x) for all coils, (B,C,H,W).
at::Tensor modulated_coil_images(const at::Tensor& x, const at::Tensor& maps, const ImageShape& s, const at::Tensor& q_h,
                                 const at::Tensor& q_w) {
  auto coils = at::empty({s.B, s.C, s.H, s.W}, x.options());
  check_launch(mbdlfast_cuda_expand(as_float2(x), as_float2(maps), as_float2(q_h), as_float2(q_w), as_float2_mut(coils), s.B, s.C,
                                    s.H, s.W, maps.size(0) == 1, c10::cuda::getCurrentCUDAStream()),
               "coil expand");
  return coils;
}

// conj(q_h q_w) * sum_c conj(S_c) z_c, (B,H,W).
at::Tensor demodulated_reduce(const at::Tensor& z, const at::Tensor& maps, const ImageShape& s, const at::Tensor& q_h,
                              const at::Tensor& q_w) {
  auto out = at::empty({s.B, s.H, s.W}, z.options());
  check_launch(mbdlfast_cuda_reduce(as_float2(z), as_float2(maps), as_float2(q_h), as_float2(q_w), as_float2_mut(out), s.B, s.C,
                                    s.H, s.W, maps.size(0) == 1, c10::cuda::getCurrentCUDAStream()),
               "coil reduce");
  return out;
}

// In place: k *= weight * p_h p_w (conjugated for the adjoint); weight (B|1, H|1, W') with the given strides.
void apply_mask_phase(at::Tensor& k, const at::Tensor& weight, const at::Tensor& p_h, const at::Tensor* p_w, int64_t weight_b_stride,
                      int64_t weight_h_stride, bool conjugate) {
  check_launch(mbdlfast_cuda_mask_phase(as_float2_mut(k), weight.data_ptr<float>(), as_float2(p_h), p_w ? as_float2(*p_w) : nullptr,
                                        k.size(0), k.size(1), k.size(2), k.size(3), weight_b_stride, weight_h_stride, conjugate,
                                        c10::cuda::getCurrentCUDAStream()),
               "mask and phase");
}

// A x = weight * p_h p_w * FFT2(S q_h q_w x): cuFFT for the transforms, the kernels for the passes around them.
at::Tensor sense_forward_1d_cuda(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& weight) {
  const auto s = check_image(x, maps);
  const int64_t weight_b_stride = check_mask_weight(weight, x, s.B, s.W);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto [q_h, p_h] = centring_phases(s.H, x.device());
  const auto [q_w, p_w] = centring_phases(s.W, x.device());
  auto k = at::fft_fft2(modulated_coil_images(x, maps, s, q_h, q_w), c10::nullopt, {-2, -1}, "ortho").contiguous();
  apply_mask_phase(k, weight, p_h, &p_w, weight_b_stride, 0, false);
  return k;
}

// A^H y = conj(q) sum_c conj(S_c) IFFT2(weight * conj(p_h p_w) y_c).
at::Tensor sense_adjoint_1d_cuda(const at::Tensor& y, const at::Tensor& maps, const at::Tensor& weight) {
  const auto s = check_kspace(y, maps, "y");
  TORCH_CHECK(y.size(3) == s.W, "mbdlfast cuda: y must have ", s.W, " columns, got ", y.size(3));
  const int64_t weight_b_stride = check_mask_weight(weight, y, s.B, s.W);
  const c10::cuda::CUDAGuard guard(y.device());
  const auto [q_h, p_h] = centring_phases(s.H, y.device());
  const auto [q_w, p_w] = centring_phases(s.W, y.device());
  auto k = y.clone();
  apply_mask_phase(k, weight, p_h, &p_w, weight_b_stride, 0, true);
  const auto z = at::fft_ifft2(k, c10::nullopt, {-2, -1}, "ortho").contiguous();
  return demodulated_reduce(z, maps, s, q_h, q_w);
}

// Compact A x: FFT along W, keep the n_s columns (times p_w), FFT along H on those only, times p_h.
at::Tensor sense_forward_compact_cuda(const at::Tensor& x, const at::Tensor& maps, const at::Tensor& columns) {
  const auto s = check_image(x, maps);
  const int64_t columns_b_stride = check_columns(columns, x, s.B, s.W);
  const int64_t n = columns.size(1);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto [q_h, p_h] = centring_phases(s.H, x.device());
  const auto [q_w, p_w] = centring_phases(s.W, x.device());
  const auto rows = at::fft_fft(modulated_coil_images(x, maps, s, q_h, q_w), c10::nullopt, -1, "ortho").contiguous();
  auto kept = at::empty({s.B, s.C, s.H, n}, x.options());
  check_launch(mbdlfast_cuda_gather_columns(as_float2(rows), columns.data_ptr<int64_t>(), as_float2(p_w), as_float2_mut(kept), s.B,
                                            s.C, s.H, s.W, n, columns_b_stride, c10::cuda::getCurrentCUDAStream()),
               "gather columns");
  auto k = at::fft_fft(kept, c10::nullopt, -2, "ortho").contiguous();
  const auto ones = at::ones({1, 1, n}, x.options().dtype(at::kFloat));
  apply_mask_phase(k, ones, p_h, nullptr, 0, 0, false);
  return k;
}

// Compact A^H: conj(p_h) and IFFT along H on the n_s columns, zero-fill with conj(p_w), IFFT along W, reduce.
at::Tensor sense_adjoint_compact_cuda(const at::Tensor& yc, const at::Tensor& maps, const at::Tensor& columns) {
  const auto s = check_kspace(yc, maps, "yc");
  const int64_t columns_b_stride = check_columns(columns, yc, s.B, s.W);
  const int64_t n = columns.size(1);
  TORCH_CHECK(yc.size(3) == n, "mbdlfast cuda: yc must have n_s = ", n, " columns, got ", yc.size(3));
  const c10::cuda::CUDAGuard guard(yc.device());
  const auto [q_h, p_h] = centring_phases(s.H, yc.device());
  const auto [q_w, p_w] = centring_phases(s.W, yc.device());
  auto k = yc.clone();
  const auto ones = at::ones({1, 1, n}, yc.options().dtype(at::kFloat));
  apply_mask_phase(k, ones, p_h, nullptr, 0, 0, true);
  const auto kept = at::fft_ifft(k, c10::nullopt, -2, "ortho").contiguous();
  auto full = at::zeros({s.B, s.C, s.H, s.W}, yc.options());
  check_launch(mbdlfast_cuda_scatter_columns(as_float2(kept), columns.data_ptr<int64_t>(), as_float2(p_w), as_float2_mut(full), s.B,
                                             s.C, s.H, s.W, n, columns_b_stride, c10::cuda::getCurrentCUDAStream()),
               "scatter columns");
  const auto z = at::fft_ifft(full, c10::nullopt, -1, "ortho").contiguous();
  return demodulated_reduce(z, maps, s, q_h, q_w);
}

}  // namespace

TORCH_LIBRARY_IMPL(mbdlfast_ext, CUDA, m) {
  m.impl("coil_expand", &coil_expand_cuda);
  m.impl("coil_reduce", &coil_reduce_cuda);
  m.impl("sense_normal", &sense_normal_cuda);
  m.impl("dc_gradient_step", &dc_gradient_step_cuda);
  m.impl("soft_kspace_dc", &soft_kspace_dc_cuda);
  m.impl("sense_forward", &sense_forward_1d_cuda);
  m.impl("sense_adjoint", &sense_adjoint_1d_cuda);
  m.impl("sense_forward_compact", &sense_forward_compact_cuda);
  m.impl("sense_adjoint_compact", &sense_adjoint_compact_cuda);
}
