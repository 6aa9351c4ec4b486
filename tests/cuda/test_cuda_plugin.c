/* cuda_plugin: libqiao-cuda.so loads through the runtime's checks, opens
 * with or without a GPU, and refuses bad arguments cleanly. Without a GPU
 * (CI): 0 devices and a clear error from device_open(0). With one: device 0
 * opens, a tiny upload / add / download round trip is exact, and every block
 * type of ABI 1.3/1.4 it claims is checked on the device: embed exactly
 * against the host build of the kernels' dequantization (cuda_dequant.h,
 * itself checked against the CPU backend by cuda_dequant), matmul (decode
 * and tiled paths) and matmul_experts within the ABI's 1e-4 budget. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dequant.h"
#include "qiao/backend.h"
#include "test_util.h"

static const qiao_dev_api *api;

/* Checks that `e` is an error with `code` and a non-empty message; destroys it. */
static void expect(qiao_dev_error *e, qiao_dev_code code, const char *needle, int line) {
  if (e == NULL) {
    fprintf(stderr, "line %d: expected error code %d, got success\n", line, (int)code);
    test_failures++;
    return;
  }
  const char *msg = api->error_message(e);
  if (api->error_code(e) != code || msg == NULL || msg[0] == '\0' ||
      (needle != NULL && strstr(msg, needle) == NULL)) {
    fprintf(stderr, "line %d: expected code %d with '%s', got %d: %s\n", line, (int)code,
            needle ? needle : "", (int)api->error_code(e), msg ? msg : "(null)");
    test_failures++;
  }
  api->error_destroy(e);
}
#define EXPECT(e, code, needle) expect((e), (code), (needle), __LINE__)

static void check_ok(qiao_dev_error *e, int line) {
  if (e != NULL) {
    fprintf(stderr, "line %d: unexpected error: %s\n", line, api->error_message(e));
    api->error_destroy(e);
    test_failures++;
  }
}
#define OK(e) check_ok((e), __LINE__)

/* Host-side validation that runs before any CUDA call. */
static void check_validation(qiao_dev_backend *handle) {
  qiao_dev_backend *b = NULL;
  EXPECT(api->backend_open(NULL, &b), QIAO_DEV_INVALID_ARGUMENT, "NULL");
  qiao_dev_backend_options small = {sizeof(size_t), QIAO_DEVICE_ABI_MAJOR, 0};
  EXPECT(api->backend_open(&small, &b), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  qiao_dev_backend_options major2 = {sizeof(major2), QIAO_DEVICE_ABI_MAJOR + 1, 0};
  EXPECT(api->backend_open(&major2, &b), QIAO_DEV_UNSUPPORTED, "major");
  CHECK(b == NULL); /* out-parameters untouched on failure */

  uint32_t count = 0;
  EXPECT(api->device_count(NULL, &count), QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT(api->device_count(handle, NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);
  qiao_dev_properties props = {.struct_size = sizeof(props)};
  EXPECT(api->device_get_properties(handle, UINT32_MAX, &props), QIAO_DEV_INVALID_ARGUMENT,
         "out of range");
  qiao_dev_device *dev = NULL;
  EXPECT(api->device_open(handle, UINT32_MAX, NULL, &dev), QIAO_DEV_INVALID_ARGUMENT,
         "out of range");
  CHECK(dev == NULL);

  /* A handle of another kind is refused, not used. */
  uint64_t fake[64];
  memset(fake, 0, sizeof(fake));
  EXPECT(api->device_count((qiao_dev_backend *)fake, &count), QIAO_DEV_BAD_HANDLE, NULL);
  qiao_dev_add_args add = {.struct_size = sizeof(add), .n = 4};
  EXPECT(api->add(NULL, &add), QIAO_DEV_INVALID_ARGUMENT, "queue");
  EXPECT(api->add((qiao_dev_queue *)fake, &add), QIAO_DEV_BAD_HANDLE, NULL);
  EXPECT(api->matmul((qiao_dev_queue *)fake, NULL), QIAO_DEV_BAD_HANDLE, NULL);
  EXPECT(api->queue_synchronize(NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);
  uint32_t yes = 7;
  EXPECT(api->op_supported((qiao_dev_device *)fake, QIAO_DEV_OP_ADD, QIAO_DEV_F32, &yes),
         QIAO_DEV_BAD_HANDLE, NULL);
  CHECK(yes == 7);

  /* Every destroy accepts NULL. */
  api->error_destroy(NULL);
  api->backend_close(NULL);
  api->device_close(NULL);
  api->buffer_destroy(NULL);
  api->queue_destroy(NULL);
}

/* ---- (1.3, 1.4) the block types on the device */

static uint32_t rng = 0x12345678u;
static uint32_t rnd_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}
static float rnd_unit(void) {
  return (float)(rnd_u32() % 2000001u) / 1e6f - 1.0f;
} /* [-1, 1] */

/* Random blocks of dtype dt whose scale fields are small finite values (the
 * f16 fields of each type, F8's F32 scale), so that products stay finite. */
static unsigned char *tame_blocks(int dt, uint64_t n_blocks) {
  const uint32_t bb = cuq_block_bytes(dt);
  unsigned char *w = malloc(n_blocks * bb);
  for (uint64_t i = 0; i < n_blocks * bb; i++)
    w[i] = (unsigned char)rnd_u32();
  int f16_at[2] = {-1, -1}; /* byte offsets of the block's f16 scale fields */
  switch (dt) {
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_1: f16_at[0] = 0, f16_at[1] = 2; break;
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_IQ4_NL:
  case QIAO_DEV_IQ4_XS: f16_at[0] = 0; break;
  case QIAO_DEV_Q6_K: f16_at[0] = 208; break;
  case QIAO_DEV_Q2_K: f16_at[0] = 80, f16_at[1] = 82; break;
  case QIAO_DEV_Q3_K: f16_at[0] = 108; break;
  default: break;
  }
  for (uint64_t b = 0; b < n_blocks; b++) {
    unsigned char *blk = w + b * bb;
    for (int f = 0; f < 2; f++)
      if (f16_at[f] >= 0) { /* an f16 in [2^-10, 2^-6): exponent field 5..8 */
        uint16_t h = (uint16_t)((5 + rnd_u32() % 4) << 10 | (rnd_u32() & 1023));
        blk[f16_at[f]] = (unsigned char)h, blk[f16_at[f] + 1] = (unsigned char)(h >> 8);
      }
    if (dt == QIAO_DEV_F8_E4M3_B128) {
      float d = rnd_unit() / 256.0f;
      memcpy(blk, &d, 4);
      for (int j = 0; j < 128; j++)
        if ((blk[4 + j] & 0x7f) == 0x7f) blk[4 + j] ^= 1; /* NaN bytes are never stored */
    }
  }
  return w;
}

/* Uploads n bytes into a new buffer of the device (NULL on failure). */
static qiao_dev_buffer *upload(qiao_dev_device *dev, qiao_dev_queue *q, const void *data,
                               uint64_t n) {
  qiao_dev_buffer *b = NULL;
  OK(api->buffer_create(dev, n, &b));
  if (b != NULL && data != NULL) OK(api->upload(q, (qiao_dev_ref){b, 0}, data, n));
  return b;
}

/* got vs want (n rows of m, F32 vs double) in the ABI's metric (spec §11.1):
 * each row's error relative to max(its norm, the RMS row norm). */
static double abi_error(const float *got, const double *want, uint64_t n, uint64_t m) {
  double total = 0.0, worst = 0.0;
  for (uint64_t i = 0; i < n * m; i++)
    total += want[i] * want[i];
  const double floor_norm = sqrt(total / (double)n);
  for (uint64_t r = 0; r < n; r++) {
    double e = 0.0, b = 0.0;
    for (uint64_t j = 0; j < m; j++) {
      const double d = (double)got[r * m + j] - want[r * m + j];
      e += d * d, b += want[r * m + j] * want[r * m + j];
    }
    const double err = sqrt(e) / fmax(sqrt(b), floor_norm);
    if (!(err <= worst)) worst = err; /* NaN counts as the worst */
  }
  return worst;
}

static void check_block_type(qiao_dev_device *dev, qiao_dev_queue *q, int dt) {
  enum { ROWS = 6, BLOCKS = 2, NX = 11 };
  const uint64_t k = (uint64_t)cuq_block_elems(dt) * BLOCKS,
                 rb = (uint64_t)BLOCKS * cuq_block_bytes(dt);
  unsigned char *w = tame_blocks(dt, ROWS * BLOCKS);
  float *x = malloc(NX * k * 4), *out = malloc(NX * ROWS * 4), *deq = malloc(ROWS * k * 4);
  double *want = malloc(NX * ROWS * sizeof(double));
  for (uint64_t i = 0; i < NX * k; i++)
    x[i] = rnd_unit();
  for (uint64_t r = 0; r < ROWS; r++)
    for (uint64_t i = 0; i < k; i++)
      deq[r * k + i] = cuq_dequant(dt, w + r * rb, i);
  int32_t ids[ROWS];
  for (int r = 0; r < ROWS; r++)
    ids[r] = ROWS - 1 - r;
  qiao_dev_buffer *wb = upload(dev, q, w, ROWS * rb), *xb = upload(dev, q, x, NX * k * 4);
  qiao_dev_buffer *ib = upload(dev, q, ids, sizeof(ids));
  qiao_dev_buffer *ob = upload(dev, q, NULL, NX * (k > ROWS ? k : ROWS) * 4);
  if (wb != NULL && xb != NULL && ib != NULL && ob != NULL) {
    /* embed: exact */
    qiao_dev_embed_args em = {sizeof(em),         ROWS,    ROWS,    k,
                              (qiao_dev_dtype)dt, {wb, 0}, {ib, 0}, {ob, 0}};
    OK(api->embed(q, &em));
    float *emb = malloc(ROWS * k * 4);
    OK(api->download(q, emb, (qiao_dev_ref){ob, 0}, ROWS * k * 4));
    OK(api->queue_synchronize(q));
    int bad = 0;
    for (uint64_t t = 0; t < ROWS; t++)
      for (uint64_t i = 0; i < k; i++)
        bad += memcmp(&emb[t * k + i], &deq[(uint64_t)ids[t] * k + i], 4) != 0;
    if (bad) fprintf(stderr, "embed dtype %d: %d elements differ from cuda_dequant.h\n", dt, bad);
    CHECK(bad == 0);
    free(emb);
    /* matmul: n = 3 (the decode kernel) and n = NX (the tiled kernel) */
    const uint64_t ns[2] = {3, NX};
    for (int c = 0; c < 2; c++) {
      const uint64_t n = ns[c];
      for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < ROWS; j++) {
          double s = 0.0;
          for (uint64_t p = 0; p < k; p++)
            s += (double)x[i * k + p] * deq[j * k + p];
          want[i * ROWS + j] = s;
        }
      qiao_dev_matmul_args mm = {.struct_size = sizeof(mm),
                                 .n = n,
                                 .k = k,
                                 .m = ROWS,
                                 .x = {xb, 0},
                                 .w_dtype = (qiao_dev_dtype)dt,
                                 .w = {wb, 0},
                                 .out = {ob, 0}};
      OK(api->matmul(q, &mm));
      OK(api->download(q, out, (qiao_dev_ref){ob, 0}, n * ROWS * 4));
      OK(api->queue_synchronize(q));
      const double err = abi_error(out, want, n, ROWS);
      if (!(err <= 1e-4))
        fprintf(stderr, "matmul dtype %d n %llu: error %g\n", dt, (unsigned long long)n, err);
      CHECK(err <= 1e-4);
    }
    /* matmul_experts: 2 tokens, experts (ids) of 3 rows each, x per token */
    const int32_t eids[4] = {1, 0, 1, 1};
    qiao_dev_buffer *eb = upload(dev, q, eids, sizeof(eids));
    qiao_dev_matmul_experts_args me = {.struct_size = sizeof(me),
                                       .n_tokens = 2,
                                       .k = 2,
                                       .n_experts = 2,
                                       .in_dim = k,
                                       .out_dim = 3,
                                       .x = {xb, 0},
                                       .w_dtype = (qiao_dev_dtype)dt,
                                       .w = {wb, 0},
                                       .ids = {eb, 0},
                                       .out = {ob, 0}};
    for (uint64_t s = 0; s < 4; s++)
      for (uint64_t j = 0; j < 3; j++) {
        double acc = 0.0;
        for (uint64_t p = 0; p < k; p++)
          acc += (double)x[s / 2 * k + p] * deq[((uint64_t)eids[s] * 3 + j) * k + p];
        want[s * 3 + j] = acc;
      }
    if (eb != NULL) {
      OK(api->matmul_experts(q, &me));
      OK(api->download(q, out, (qiao_dev_ref){ob, 0}, 4 * 3 * 4));
      OK(api->queue_synchronize(q));
      const double err = abi_error(out, want, 4, 3);
      if (!(err <= 1e-4)) fprintf(stderr, "matmul_experts dtype %d: error %g\n", dt, err);
      CHECK(err <= 1e-4);
    }
    api->buffer_destroy(eb);
  }
  api->buffer_destroy(wb), api->buffer_destroy(xb), api->buffer_destroy(ib),
      api->buffer_destroy(ob);
  free(w), free(x), free(out), free(deq), free(want);
}

static void check_block_types(qiao_dev_device *dev) {
  qiao_dev_queue *q = NULL;
  OK(api->queue_create(dev, &q));
  if (q == NULL) return;
  for (int dt = QIAO_DEV_Q4_K; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
    uint32_t yes = 0;
    OK(api->op_supported(dev, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)dt, &yes));
    CHECK(yes == 1); /* every block type of 1.3 and 1.4 */
    if (yes) check_block_type(dev, q, dt);
  }
  api->queue_destroy(q);
}

/* With a GPU: properties, capabilities, a refused call, and an exact round trip. */
static void check_device(qiao_dev_backend *handle) {
  qiao_dev_properties props = {.struct_size = sizeof(props)};
  OK(api->device_get_properties(handle, 0, &props));
  printf("cuda device 0: %s (%s), %llu bytes, %u SMs\n", props.name, props.driver_version,
         (unsigned long long)props.memory_bytes, (unsigned)props.compute_units);
  CHECK(props.memory_bytes > 0 && props.max_buffer_bytes > 0 && props.compute_units >= 1);
  CHECK(strcmp(props.vendor, "NVIDIA") == 0);
  /* No batch-invariant mode (device ABI 1.1): not claimed, and refused. */
  CHECK((props.flags & QIAO_DEV_FLAG_BATCH_INVARIANT) == 0);
  qiao_dev_device_options invariant = {.struct_size = sizeof(invariant),
                                       .flags = QIAO_DEV_OPEN_BATCH_INVARIANT};
  qiao_dev_device *refused = NULL;
  EXPECT(api->device_open(handle, 0, &invariant, &refused), QIAO_DEV_UNSUPPORTED,
         "batch-invariant");
  CHECK(refused == NULL);

  qiao_dev_device *dev = NULL;
  OK(api->device_open(handle, 0, NULL, &dev));
  if (dev == NULL) return;
  uint32_t yes = 0;
  OK(api->op_supported(dev, QIAO_DEV_OP_MATMUL, QIAO_DEV_Q4_0, &yes));
  CHECK(yes == 1);
  OK(api->op_supported(dev, QIAO_DEV_OP_ATTENTION, QIAO_DEV_BF16, &yes));
  CHECK(yes == 0);
  OK(api->op_supported(dev, (qiao_dev_op)1000, QIAO_DEV_F32, &yes));
  CHECK(yes == 0);
  OK(api->op_supported(dev, QIAO_DEV_OP_ATTENTION_LATENT, QIAO_DEV_F16, &yes));
  CHECK(yes == 1);
  OK(api->op_supported(dev, QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F32, &yes));
  CHECK(yes == 1);

  qiao_dev_buffer *buf = NULL;
  EXPECT(api->buffer_create(dev, UINT64_MAX, &buf), QIAO_DEV_OUT_OF_MEMORY, NULL);
  OK(api->buffer_create(dev, 3 * 16 * sizeof(float), &buf));
  qiao_dev_queue *q = NULL;
  OK(api->queue_create(dev, &q));
  if (buf != NULL && q != NULL) {
    float a[16], b[16], out[16];
    for (int i = 0; i < 16; i++)
      a[i] = 0.1f * (float)i, b[i] = 1e7f - (float)i * 3.0f, out[i] = -1.0f;
    qiao_dev_ref ra = {buf, 0}, rb = {buf, 64}, ro = {buf, 128};
    OK(api->upload(q, ra, a, sizeof(a)));
    OK(api->upload(q, rb, b, sizeof(b)));
    qiao_dev_add_args add = {sizeof(add), 16, ra, rb, ro};
    OK(api->add(q, &add));
    qiao_dev_add_args bad = add;
    bad.n = 17; /* out runs past the buffer */
    EXPECT(api->add(q, &bad), QIAO_DEV_INVALID_ARGUMENT, "exceed");
    OK(api->download(q, out, ro, sizeof(out)));
    OK(api->queue_synchronize(q));
    for (int i = 0; i < 16; i++)
      CHECK(out[i] == a[i] + b[i]);
  }
  api->queue_destroy(q);
  api->buffer_destroy(buf);
  check_block_types(dev);
  api->device_close(dev);
}

int main(void) {
  qiao_backend *backend = NULL;
  CHECK_OK(qiao_backend_load(QIAO_CUDA_PLUGIN, &backend));
  if (backend == NULL) TEST_END();
  api = qiao_backend_api(backend);
  CHECK(strcmp(qiao_backend_name(backend), "cuda") == 0);
  CHECK(api->abi_major == QIAO_DEVICE_ABI_MAJOR);
  CHECK(api->buffer_wrap_host == NULL);
  /* (1.4) a 1.4 table: the appended entries are there, since op_supported claims their ops. */
  CHECK(api->abi_minor >= 4);
  CHECK(api->struct_size >= sizeof(qiao_dev_api));
  CHECK(api->latent_write != NULL && api->attention_latent != NULL && api->moe_route != NULL);
  qiao_dev_backend *handle = qiao_backend_handle(backend);

  uint32_t count = UINT32_MAX;
  OK(api->device_count(handle, &count));
  printf("cuda devices: %u\n", (unsigned)count);
  CHECK(count != UINT32_MAX);
  check_validation(handle);
  if (count == 0) {
    /* No GPU or driver: a clear error, not a crash. */
    qiao_dev_device *dev = NULL;
    EXPECT(api->device_open(handle, 0, NULL, &dev), QIAO_DEV_INVALID_ARGUMENT, "no CUDA device");
    CHECK(dev == NULL);
    qiao_dev_properties props = {.struct_size = sizeof(props)};
    EXPECT(api->device_get_properties(handle, 0, &props), QIAO_DEV_INVALID_ARGUMENT,
           "no CUDA device");
  } else {
    check_device(handle);
  }
  qiao_backend_unload(backend);
  TEST_END();
}
