/* The block-scaled FP8 type (f8_e4m3_b128, format.md §4.1/§4.2): every E4M3
 * code decodes to the value of the spec's formula (float64, from the bits'
 * meaning), NaN codes are NaN, the encoder rounds to nearest with ties to
 * the even code and saturates at 448, and blocks convert as §4.2 says. */
#include <math.h>

#include <unistd.h>
#include <xxhash.h>

#include "format/dtype_convert.h"
#include "format/fp8.h"
#include "format/model_internal.h"
#include "qiao/model.h"
#include "test_util.h"

/* The spec's value of code q, from its fields (NAN for the NaN codes). */
static double spec_value(unsigned q) {
  unsigned s = q >> 7, e = (q >> 3) & 15, m = q & 7;
  if (e == 15 && m == 7) return NAN;
  double v = e == 0 ? (m / 8.0) * ldexp(1, -6) : (1 + m / 8.0) * ldexp(1, (int)e - 7);
  return s ? -v : v;
}

static void every_code(void) {
  int nan_codes = 0;
  for (unsigned q = 0; q < 256; q++) {
    double want = spec_value(q);
    float got = qiao__e4m3_to_f32((uint8_t)q);
    if (isnan(want)) {
      CHECK(isnan(got) && qiao__e4m3_is_nan((uint8_t)q));
      nan_codes++;
      continue;
    }
    CHECK(!qiao__e4m3_is_nan((uint8_t)q));
    CHECK((double)got == want && (signbit(got) != 0) == (q >= 0x80));
    /* every value encodes back to its own code */
    CHECK(qiao__f32_to_e4m3(got) == q);
  }
  CHECK(nan_codes == 2);
  CHECK(qiao__e4m3_to_f32(0x7e) == 448.0f && qiao__e4m3_to_f32(0xfe) == -448.0f);
  CHECK(qiao__e4m3_to_f32(0x01) == 0x1p-9f); /* the smallest subnormal */
  CHECK(qiao__e4m3_to_f32(0x07) == 7 * 0x1p-9f && qiao__e4m3_to_f32(0x08) == 0x1p-6f);
  CHECK(signbit(qiao__e4m3_to_f32(0x80)) && qiao__e4m3_to_f32(0x80) == 0.0f);
}

/* Between two consecutive non-negative codes: the midpoint goes to the even
 * code, anything nearer to one side to that side. */
static void rounding(void) {
  for (unsigned q = 0; q < 0x7e; q++) {
    double lo = spec_value(q), hi = spec_value(q + 1), mid = (lo + hi) / 2;
    unsigned even = q % 2 == 0 ? q : q + 1;
    CHECK(qiao__f32_to_e4m3((float)mid) == even);
    CHECK(qiao__f32_to_e4m3(-(float)mid) == (0x80 | even));
    CHECK(qiao__f32_to_e4m3(nextafterf((float)mid, 0)) == q);
    CHECK(qiao__f32_to_e4m3(nextafterf((float)mid, INFINITY)) == q + 1);
  }
  CHECK(qiao__f32_to_e4m3(0x1p-10f) == 0x00);             /* half the smallest: tie to 0 */
  CHECK(qiao__f32_to_e4m3(nextafterf(0x1p-10f, 1)) == 1); /* just above: the smallest */
  CHECK(qiao__f32_to_e4m3(1e-30f) == 0 && qiao__f32_to_e4m3(-1e-30f) == 0x80);
  CHECK(qiao__f32_to_e4m3(449.0f) == 0x7e && qiao__f32_to_e4m3(1e30f) == 0x7e);
  CHECK(qiao__f32_to_e4m3(-INFINITY) == 0xfe && qiao__f32_to_e4m3(INFINITY) == 0x7e);
  CHECK(qiao__f32_to_e4m3(NAN) == 0);
  CHECK(qiao__f32_to_e4m3(-0.0f) == 0x80);
}

static void descriptor(void) {
  const qiao_dtype_info *info = qiao_dtype_get_info(QIAO_DTYPE_F8_E4M3_B128);
  CHECK(info != NULL && strcmp(info->name, "f8_e4m3_b128") == 0 && info->block_elems == 128 &&
        info->block_bytes == 132 && info->bits == 8 && strcmp(info->scale_type, "f32") == 0);
  qiao_dtype dt = QIAO_DTYPE_F32;
  CHECK_OK(qiao_dtype_from_name("f8_e4m3_b128", &dt));
  CHECK(dt == QIAO_DTYPE_F8_E4M3_B128);
  uint64_t bytes = 0;
  CHECK_OK(qiao_dtype_row_bytes(QIAO_DTYPE_F8_E4M3_B128, 384, &bytes));
  CHECK(bytes == 3 * 132);
  CHECK_ERR(qiao_dtype_row_bytes(QIAO_DTYPE_F8_E4M3_B128, 320, &bytes), QIAO_MALFORMED);
}

/* f32 -> blocks -> f32 (format.md §4.2): d = amax / 448, the largest
 * magnitude lands on 448, every value within half a step of the grid. */
static void blocks(void) {
  enum { N = 384 };
  float x[N], y[N];
  uint8_t b[N / 128 * 132];
  uint32_t state = 12345;
  for (int i = 0; i < N; i++) {
    state = state * 1664525u + 1013904223u;
    x[i] = ((float)(state >> 8) / 16777216.0f - 0.5f) * (i < 128 ? 2.0f : i < 256 ? 1e-3f : 300.0f);
  }
  x[5] = 0.0f, x[6] = -0.0f, x[300] = INFINITY, x[301] = NAN; /* the third block: saturate, 0 */
  for (int i = 256; i < 384; i++) /* the third block's amax is over the finite values */
    if (i != 300 && i != 301) x[i] = x[i] > 0 ? x[i] : -x[i];
  qiao__dtype_from_f32(QIAO_DTYPE_F8_E4M3_B128, x, b, N);
  qiao__dtype_to_f32(QIAO_DTYPE_F8_E4M3_B128, b, y, N);
  for (int blk = 0; blk < N / 128; blk++) {
    float amax = 0, d;
    for (int i = 0; i < 128; i++)
      if (isfinite(x[blk * 128 + i])) amax = fmaxf(amax, fabsf(x[blk * 128 + i]));
    memcpy(&d, b + blk * 132, 4);
    CHECK(d == amax / 448.0f);
    for (int i = 0; i < 128; i++) {
      int k = blk * 128 + i;
      uint8_t q = b[blk * 132 + 4 + i];
      CHECK(y[k] == d * qiao__e4m3_to_f32(q)); /* one rounding */
      if (!isfinite(x[k])) continue;
      double v = x[k] / d, got = spec_value(q);
      /* the nearest code: no other code is closer */
      for (unsigned c = 0; c < 256; c++)
        if (!isnan(spec_value(c))) CHECK(fabs(spec_value(c) - v) >= fabs(got - v) - 1e-12);
    }
  }
  CHECK(b[256 / 128 * 132 + 4 + 300 - 256] == 0x7e); /* +infinity saturates */
  CHECK(b[256 / 128 * 132 + 4 + 301 - 256] == 0x00); /* NaN gives 0 */
  CHECK(signbit(y[6]) && y[5] == 0 && !signbit(y[5]));
  float zeros[128] = {0};
  qiao__dtype_from_f32(QIAO_DTYPE_F8_E4M3_B128, zeros, b, 128);
  float d0;
  memcpy(&d0, b, 4);
  CHECK(d0 == 0);
  for (int i = 0; i < 128; i++)
    CHECK(b[4 + i] == 0);
  uint8_t codes[5] = {1, 0x7e, 0xfe, 0xff, 0x7f};
  CHECK(qiao__e4m3_find_nan(codes, 5) == 3 && qiao__e4m3_find_nan(codes, 3) == 3);
}

/* A model of one f8_e4m3_b128 tensor of 2 blocks, element 137 the NaN
 * code 0xFF when `nan`. */
static qiao_model *one_tensor(int nan) {
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_create("mem", "qiao", &m));
  if (m == NULL) return NULL;
  uint8_t *data = NULL;
  CHECK_OK(qiao__model_alloc(m, 2 * 132, (void **)&data));
  float d = 0.5f;
  for (int b = 0; data && b < 2; b++) {
    memcpy(data + 132 * b, &d, 4);
    for (int j = 0; j < 128; j++)
      data[132 * b + 4 + j] = (uint8_t)((j * 3 + b) % 127); /* no NaN code */
  }
  if (data && nan) data[132 + 4 + 9] = 0xff;
  uint64_t shape[2] = {2, 128};
  CHECK_OK(qiao__model_add_tensor(m, "w.weight", QIAO_DTYPE_F8_E4M3_B128, 2, shape, data, 264));
  return m;
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* A .qiao file with an f8_e4m3_b128 tensor is a format 1.2 file. Its data
 * must not hold a NaN code: the writer refuses to write one (nothing is
 * left behind), and validation refuses a file holding one even when its
 * hashes are right (planted here, hashes recomputed), naming the element. */
static void file_of_version_1_2(void) {
  char path[] = "/tmp/fp8_codec-XXXXXX.qiao";
  int fd = mkstemps(path, 5);
  CHECK(fd >= 0);
  if (fd < 0) return;
  close(fd);
  qiao_convert_options o = {sizeof(o), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, false};
  qiao_model *m = one_tensor(1);
  char refused[64];
  snprintf(refused, sizeof(refused), "%s.nan.qiao", path);
  qiao_status *st = m ? qiao_model_write(m, refused, &o) : NULL;
  CHECK(qiao_status_code(st) == QIAO_MALFORMED && st &&
        strstr(qiao_status_message(st), "tensor w.weight: ") &&
        strstr(qiao_status_message(st), "element 137 is the FP8 NaN code 0xff"));
  qiao_status_free(st);
  CHECK(access(refused, F_OK) != 0);
  qiao_model_close(m);

  m = one_tensor(0);
  if (m) CHECK_OK(qiao_model_write(m, path, &o));
  qiao_model_close(m);
  static uint8_t bytes[1 << 16];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(bytes, 1, sizeof(bytes), f) : 0;
  if (f) fclose(f);
  CHECK(n > 96 && n < sizeof(bytes));
  if (n <= 96 || n >= sizeof(bytes)) return;
  CHECK(bytes[6] == 2 && bytes[7] == 0); /* minor version 2 */
  qiao_model *back = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &back));
  st = back ? qiao_model_validate(back) : NULL;
  /* it fails, for want of a model, but not on its data */
  CHECK(st == NULL || strstr(qiao_status_message(st), "NaN") == NULL);
  qiao_status_free(st);
  qiao_model_close(back);

  /* plant the NaN code, then make the tensor hash (the last entry's hash
   * sits 16 bytes before table_end) and the header hash right again */
  uint64_t table_end = le64(bytes + 56), data_offset = le64(bytes + 64);
  CHECK(data_offset + 264 <= n && table_end < data_offset);
  if (data_offset + 264 > n || table_end >= data_offset) return;
  bytes[data_offset + 132 + 4 + 9] = 0xff;
  put64(bytes + table_end - 16, XXH3_64bits(bytes + data_offset, 264));
  put64(bytes + 80, 0);
  put64(bytes + 80, XXH3_64bits(bytes, (size_t)table_end));
  f = fopen(path, "wb");
  CHECK(f != NULL && fwrite(bytes, 1, n, f) == n);
  if (f) fclose(f);
  back = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &back));
  st = back ? qiao_model_validate(back) : NULL;
  CHECK(qiao_status_code(st) == QIAO_MALFORMED && st &&
        strstr(qiao_status_message(st), "tensor w.weight: element 137 is the FP8 NaN code 0xff"));
  qiao_status_free(st);
  qiao_model_close(back);
  unlink(path);
}

int main(void) {
  file_of_version_1_2();
  every_code();
  rounding();
  descriptor();
  blocks();
  TEST_END();
}
