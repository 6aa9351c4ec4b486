/* bench_cpu_matmul: weight-read bandwidth of the CPU backend's matmul for
 * the Qwen2.5-0.5B MLP shape (m = 4864, k = 896), per weight dtype, for one
 * token (decode, memory bound) and 128 tokens (prefill, compute bound).
 *
 *   bench_cpu_matmul [n_threads] [seconds per case] [model]
 *
 * With "model" it instead times every matmul of one Qwen2.5-0.5B forward pass
 * (24 layers of q, k, v, o, gate, up, down; decode also the 151936-row
 * lm_head) with all weights distinct, i.e. streamed from DRAM as in real
 * decoding, and prints the tokens/s that the matmuls alone would allow.
 *
 * GB/s counts each weight byte once per matmul call (what decode is bound
 * by); GFLOP/s is 2 * n * m * k per call. "cold" cycles through copies of
 * the weight totalling >= 512 MiB, so they come from DRAM as in a real model
 * (whose layers do not fit in cache); "hot" reuses one copy (cache
 * resident). GB/s/cpu-sec divides by the process's CPU time instead of
 * wall time: per-core kernel throughput, robust when the machine is shared
 * (with 1 thread). QIAO_CPU_ISA picks the kernels; QIAO_BENCH_Q8=1 asks for
 * Q8 activations (x_precision, device ABI 1.2). "hot" n=128 rows, in
 * GFLOP/s/cpu-sec, give the kernels' own compute rate. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpu_backend.h"
#include "cpu_internal.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) { /* CPU time of the whole process */
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void die(const qiao_dev_api *api, qiao_dev_error *e) {
  if (e == NULL) return;
  fprintf(stderr, "error: %s\n", api->error_message(e));
  exit(1);
}

/* Random weights of `dtype` with sane magnitudes. */
static uint8_t *make_weights(qiao_dev_dtype dtype, uint64_t m, uint64_t k, uint64_t *out_bytes) {
  uint64_t n = m * k, bytes;
  switch (dtype) {
  case QIAO_DEV_F32: bytes = n * 4; break;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: bytes = n * 2; break;
  case QIAO_DEV_Q8_0: bytes = n / 32 * 34; break;
  default: bytes = n / 32 * 18; break;
  }
  uint8_t *w = malloc(bytes);
  for (uint64_t i = 0; i < bytes; i++)
    w[i] = (uint8_t)(rng = rng * 6364136223846793005ull + 1) >> 0;
  if (dtype == QIAO_DEV_F32)
    for (uint64_t i = 0; i < n; i++)
      ((float *)(void *)w)[i] = frand() * 0.05f;
  if (dtype == QIAO_DEV_F16 || dtype == QIAO_DEV_BF16)
    for (uint64_t i = 0; i < n; i++) {
      float f = frand() * 0.05f;
      uint32_t bits;
      memcpy(&bits, &f, 4);
      uint16_t h = dtype == QIAO_DEV_F16 ? qiao__cpu_f32_to_f16(f) : (uint16_t)(bits >> 16);
      memcpy(w + 2 * i, &h, 2);
    }
  if (dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0) {
    uint64_t bs = dtype == QIAO_DEV_Q8_0 ? 34 : 18;
    for (uint64_t b = 0; b < n / 32; b++) {
      uint16_t d = qiao__cpu_f32_to_f16(0.001f + 0.001f * (frand() + 1.0f));
      memcpy(w + b * bs, &d, 2);
    }
  }
  *out_bytes = bytes;
  return w;
}

/* Matmul-only tokens/s of a Qwen2.5-0.5B-shaped model. */
static void model_bench(const qiao_dev_api *api, qiao_dev_device *device, qiao_dev_queue *queue,
                        double seconds) {
  const uint64_t dim = 896, kv = 128, ffn = 4864, vocab = 151936, layers = 24, prefill = 128;
  const uint64_t shapes[7][2] = {{dim, dim}, {dim, kv},  {dim, kv}, {dim, dim},
                                 {dim, ffn}, {dim, ffn}, {ffn, dim}}; /* (k, m) */
  const qiao_dev_dtype dtypes[] = {QIAO_DEV_F16, QIAO_DEV_Q8_0, QIAO_DEV_Q4_0};
  float *x = malloc(prefill * ffn * sizeof(float));
  for (uint64_t i = 0; i < prefill * ffn; i++)
    x[i] = frand();
  qiao_dev_buffer *xb, *ob;
  die(api, api->buffer_create(device, prefill * ffn * 4, &xb));
  die(api, api->buffer_create(device, prefill * vocab * 4, &ob));
  die(api, api->upload(queue, (qiao_dev_ref){xb, 0}, x, prefill * ffn * 4));
  printf("%-6s %10s %12s %12s\n", "dtype", "weights", "decode t/s", "prefill128 t/s");
  for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
    uint64_t per_elem_num = dtypes[d] == QIAO_DEV_F16 ? 64 : dtypes[d] == QIAO_DEV_Q8_0 ? 34 : 18;
    uint64_t total = 0; /* bytes: layers, then the lm_head */
    for (int i = 0; i < 7; i++)
      total += layers * shapes[i][0] * shapes[i][1] * per_elem_num / 32;
    uint64_t head_off = total;
    total += vocab * dim * per_elem_num / 32;
    uint8_t *w = malloc(total);
    for (uint64_t i = 0; i < total; i++)
      w[i] = (uint8_t)(i * 2654435761u >> 13) & 0x3f;
    qiao_dev_buffer *wb;
    die(api, api->buffer_wrap_host(device, w, total, &wb));
    double rate[2];
    for (int mode = 0; mode < 2; mode++) { /* decode (n = 1), prefill (n = 128, no lm_head) */
      uint64_t n = mode ? prefill : 1, passes = 0;
      double t0 = now(), t1;
      do {
        uint64_t off = 0;
        for (uint64_t l = 0; l < layers; l++)
          for (int i = 0; i < 7; i++) {
            qiao_dev_matmul_args a = {sizeof(a), n,         shapes[i][0], shapes[i][1], {xb, 0},
                                      dtypes[d], {wb, off}, {NULL, 0},    {ob, 0},      0,
                                      0};
            die(api, api->matmul(queue, &a));
            off += shapes[i][0] * shapes[i][1] * per_elem_num / 32;
          }
        if (!mode) {
          qiao_dev_matmul_args a = {sizeof(a),      1,         dim,     vocab, {xb, 0}, dtypes[d],
                                    {wb, head_off}, {NULL, 0}, {ob, 0}, 0,     0};
          die(api, api->matmul(queue, &a));
        }
        passes++;
        t1 = now();
      } while (t1 - t0 < seconds);
      rate[mode] = (double)(passes * n) / (t1 - t0);
    }
    printf("%-6s %8.0fMB %12.1f %12.1f\n", qiao__cpu_dtype_name(dtypes[d]), (double)total / 1e6,
           rate[0], rate[1]);
    fflush(stdout);
    api->buffer_destroy(wb);
    free(w);
  }
  api->buffer_destroy(xb);
  api->buffer_destroy(ob);
  free(x);
}

int main(int argc, char **argv) {
  uint32_t n_threads = argc > 1 ? (uint32_t)atoi(argv[1]) : 0;
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  const uint64_t m = 4864, k = 896, max_n = 128;
  const char *q8_env = getenv("QIAO_BENCH_Q8");
  const int q8 = q8_env != NULL && strcmp(q8_env, "1") == 0;
  const qiao_dev_api *api = qiao_cpu_get_api();
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  qiao_dev_backend *backend;
  die(api, api->backend_open(&bo, &backend));
  qiao_dev_device_options dopt = {.struct_size = sizeof(dopt), .n_threads = n_threads};
  qiao_dev_device *device;
  die(api, api->device_open(backend, 0, &dopt, &device));
  qiao_dev_queue *queue;
  die(api, api->queue_create(device, &queue));
  if (argc > 3 && strcmp(argv[3], "model") == 0) {
    printf("kernels %s, %u threads, Qwen2.5-0.5B matmuls\n", device->kernels->name,
           device->n_threads);
    model_bench(api, device, queue, seconds);
    api->queue_destroy(queue);
    api->device_close(device);
    api->backend_close(backend);
    return 0;
  }
  printf("kernels %s, %u threads, m=%llu k=%llu\n", device->kernels->name, device->n_threads,
         (unsigned long long)m, (unsigned long long)k);

  float *x = malloc(max_n * k * sizeof(float));
  for (uint64_t i = 0; i < max_n * k; i++)
    x[i] = frand();
  qiao_dev_buffer *xb, *ob;
  die(api, api->buffer_create(device, max_n * k * 4, &xb));
  die(api, api->buffer_create(device, max_n * m * 4, &ob));
  die(api, api->upload(queue, (qiao_dev_ref){xb, 0}, x, max_n * k * 4));

  const qiao_dev_dtype dtypes[] = {QIAO_DEV_F32, QIAO_DEV_F16, QIAO_DEV_BF16, QIAO_DEV_Q8_0,
                                   QIAO_DEV_Q4_0};
  printf("%-6s %5s %6s %10s %10s %10s %14s %16s\n", "dtype", "mode", "n", "ms/call", "GB/s",
         "GFLOP/s", "GB/s/cpu-sec", "GFLOP/s/cpu-sec");
  for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
    uint64_t w_bytes;
    uint8_t *w = make_weights(dtypes[d], m, k, &w_bytes);
    uint64_t copies = ((uint64_t)512 << 20) / w_bytes + 1;
    uint8_t *many = malloc(copies * w_bytes);
    for (uint64_t c = 0; c < copies; c++)
      memcpy(many + c * w_bytes, w, w_bytes);
    qiao_dev_buffer *wb;
    die(api, api->buffer_wrap_host(device, many, copies * w_bytes, &wb));
    for (int mode = 0; mode < 4; mode++) { /* hot n=1, cold n=1, cold n=128, hot n=128 */
      uint64_t n = mode >= 2 ? max_n : 1, n_copies = mode == 0 || mode == 3 ? 1 : copies;
      if (q8 && mode == 2) continue; /* a Q8 tile copy per weight copy: not a cold read */
      qiao_dev_matmul_args a = {sizeof(a),
                                n,
                                k,
                                m,
                                {xb, 0},
                                dtypes[d],
                                {wb, 0},
                                {NULL, 0},
                                {ob, 0},
                                0,
                                q8 ? QIAO_DEV_PRECISION_Q8 : QIAO_DEV_PRECISION_EXACT};
      die(api, api->matmul(queue, &a)); /* warm up */
      uint64_t calls = 0;
      double t0 = now(), t1, c0 = cpu_now();
      do {
        a.w.offset = (calls % n_copies) * w_bytes;
        die(api, api->matmul(queue, &a));
        calls++;
        t1 = now();
      } while (t1 - t0 < seconds);
      double per_call = (t1 - t0) / (double)calls;
      double cpu_per_call = (cpu_now() - c0) / (double)calls;
      printf("%-6s %5s %6llu %10.3f %10.2f %10.1f %14.2f %16.1f\n", qiao__cpu_dtype_name(dtypes[d]),
             mode == 0 || mode == 3 ? "hot" : "cold", (unsigned long long)n, per_call * 1e3,
             (double)w_bytes / per_call / 1e9, 2.0 * (double)(n * m * k) / per_call / 1e9,
             (double)w_bytes / cpu_per_call / 1e9, 2.0 * (double)(n * m * k) / cpu_per_call / 1e9);
      fflush(stdout);
    }
    api->buffer_destroy(wb);
    free(many);
    free(w);
  }
  api->buffer_destroy(xb);
  api->buffer_destroy(ob);
  api->queue_destroy(queue);
  api->device_close(device);
  api->backend_close(backend);
  free(x);
  return 0;
}
