/* cuda_probe: what this GPU can do at best, so that qiao's numbers can be
 * reported as shares of a measured bound (bench/cuda/README.md).
 *   - copy bandwidth: cudaMemcpy device to device of 1 GiB (bytes read +
 *     written per second), non-zero data, median of 20 timed repeats;
 *   - f16 matmul rate: cublasGemmEx 8192^3, F16 inputs, F32 compute/output
 *     (what the decode-free prefill path uses), median of 10 repeats.
 * Prints one JSON object. Exit status 1 on any CUDA/cuBLAS error. */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "cuda_probe: %s: %s\n", #x, cudaGetErrorName(e_));                           \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)
#define CHECK_BLAS(x)                                                                              \
  do {                                                                                             \
    cublasStatus_t s_ = (x);                                                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      fprintf(stderr, "cuda_probe: %s: %s\n", #x, cublasGetStatusName(s_));                        \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static float median(float *v, int n) {
  qsort(v, (size_t)n, sizeof(float), cmp_float);
  return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

__global__ void fill_half(__half *p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    p[i] = __float2half(0.001f * (float)((i * 2654435761u) % 1000) - 0.5f);
}

int main(void) {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));

  /* Copy bandwidth. */
  const size_t bytes = (size_t)1 << 30;
  void *src, *dst;
  CHECK(cudaMalloc(&src, bytes));
  CHECK(cudaMalloc(&dst, bytes));
  CHECK(cudaMemset(src, 0x5a, bytes));
  CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice)); /* warm up */
  float copy_ms[20];
  for (int r = 0; r < 20; r++) {
    CHECK(cudaEventRecord(start));
    CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&copy_ms[r], start, stop));
  }
  const double copy_gbs = 2.0 * (double)bytes / (median(copy_ms, 20) * 1e-3) / 1e9;
  CHECK(cudaFree(src));
  CHECK(cudaFree(dst));

  /* cuBLAS f16 GEMM rate. */
  const int n = 8192;
  __half *a, *b;
  float *c;
  CHECK(cudaMalloc(&a, (size_t)n * n * sizeof(__half)));
  CHECK(cudaMalloc(&b, (size_t)n * n * sizeof(__half)));
  CHECK(cudaMalloc(&c, (size_t)n * n * sizeof(float)));
  fill_half<<<1024, 256>>>(a, (size_t)n * n);
  fill_half<<<1024, 256>>>(b, (size_t)n * n);
  CHECK(cudaGetLastError());
  cublasHandle_t h;
  CHECK_BLAS(cublasCreate(&h));
  const float one = 1.0f, zero = 0.0f;
  float gemm_ms[10];
  for (int r = -1; r < 10; r++) {
    CHECK(cudaEventRecord(start));
    CHECK_BLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16F, n, b,
                            CUDA_R_16F, n, &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    if (r >= 0) CHECK(cudaEventElapsedTime(&gemm_ms[r], start, stop));
  }
  const double tflops = 2.0 * n * (double)n * n / (median(gemm_ms, 10) * 1e-3) / 1e12;
  cublasDestroy(h);
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaFree(c));
  printf("{\"device\": \"%s\", \"sm_count\": %d, \"memory_bytes\": %zu, "
         "\"copy_d2d_gb_per_s\": %.1f, \"cublas_f16_f32acc_tflops\": %.1f}\n",
         prop.name, prop.multiProcessorCount, prop.totalGlobalMem, copy_gbs, tflops);
  return 0;
}
