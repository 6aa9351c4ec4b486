/* The iq4_nl and iq4_xs element types of format 1.3 (format.md §4.1):
 * their descriptors, row sizes (whole blocks only, overflow refused), the
 * reference dequantization on hand-built blocks (every nibble, every 6-bit
 * IQ4_XS scale, values worked out here from the table), a .qiao file with
 * such a tensor written as minor version 3 and read back byte for byte, the
 * same through .gguf (GGUF types 20 and 23), and the quantizers: a block
 * whose values are exactly representable comes back exactly, rows that
 * are not whole iq4_xs super-blocks fall back to iq4_nl, and random values
 * come back within the 4-bit grid's error. Shapes too large for 64 bits are
 * refused by the readers (format_gguf_malformed). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format/dtype_convert.h"
#include "format/model_internal.h"
#include "qiao/model.h"
#include "test_util.h"

static const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

static void descriptors(void) {
  const qiao_dtype_info *nl = qiao_dtype_get_info(QIAO_DTYPE_IQ4_NL);
  const qiao_dtype_info *xs = qiao_dtype_get_info(QIAO_DTYPE_IQ4_XS);
  CHECK(QIAO_DTYPE_IQ4_NL == 15 && QIAO_DTYPE_IQ4_XS == 16 && QIAO_DTYPE_COUNT == 17);
  CHECK(nl && strcmp(nl->name, "iq4_nl") == 0 && nl->block_elems == 32 && nl->block_bytes == 18 &&
        nl->bits == 4 && strcmp(nl->scale_type, "f16") == 0);
  CHECK(xs && strcmp(xs->name, "iq4_xs") == 0 && xs->block_elems == 256 && xs->block_bytes == 136 &&
        xs->bits == 4 && strcmp(xs->scale_type, "f16+i6") == 0);
  qiao_dtype t = QIAO_DTYPE_F32;
  CHECK_OK(qiao_dtype_from_name("iq4_nl", &t));
  CHECK(t == QIAO_DTYPE_IQ4_NL);
  CHECK_OK(qiao_dtype_from_name("iq4_xs", &t));
  CHECK(t == QIAO_DTYPE_IQ4_XS);
  uint64_t bytes = 0;
  CHECK_OK(qiao_dtype_row_bytes(QIAO_DTYPE_IQ4_NL, 4096, &bytes));
  CHECK(bytes == 4096 / 32 * 18);
  CHECK_OK(qiao_dtype_row_bytes(QIAO_DTYPE_IQ4_XS, 4864, &bytes));
  CHECK(bytes == 4864 / 256 * 136);
  CHECK_ERR(qiao_dtype_row_bytes(QIAO_DTYPE_IQ4_XS, 4896, &bytes), QIAO_MALFORMED);
  CHECK_ERR(qiao_dtype_row_bytes(QIAO_DTYPE_IQ4_NL, 48, &bytes), QIAO_MALFORMED);
  /* fewer bytes than elements: any whole-block row fits in 64 bits */
  CHECK_OK(qiao_dtype_row_bytes(QIAO_DTYPE_IQ4_NL, UINT64_MAX / 32 * 32, &bytes));
  CHECK(bytes == UINT64_MAX / 32 * 18);
}

/* IQ4_NL: d = -0.75 (f16 0xba00); byte j: nibbles j and (7 j + 3) % 16.
 * IQ4_XS: d = 0.0625 (0x2c00); sub-block ib of super-block b has ls =
 * (23 ib + 8 b) % 64 (b = 0..3: every value 0..63 occurs); byte j of it:
 * nibbles (j + 5 ib) % 16 and (j * 9 + ib) % 16. */
static void dequantization(uint8_t *nl, float *nl_want, uint8_t *xs, float *xs_want) {
  uint16_t dn = 0xba00, dx = 0x2c00;
  memcpy(nl, &dn, 2);
  for (int j = 0; j < 16; j++) {
    int lo = j, hi = (7 * j + 3) % 16;
    nl[2 + j] = (uint8_t)(lo | hi << 4);
    nl_want[j] = -0.75f * (float)levels[lo], nl_want[j + 16] = -0.75f * (float)levels[hi];
  }
  for (int b = 0; b < 4; b++) {
    uint8_t *blk = xs + 136 * b;
    memset(blk, 0, 136);
    memcpy(blk, &dx, 2);
    for (int ib = 0; ib < 8; ib++) {
      int ls = (23 * ib + 8 * b) % 64;
      blk[4 + ib / 2] |= (uint8_t)((ls & 15) << (4 * (ib % 2)));
      blk[2 + ib / 4] |= (uint8_t)((ls >> 4) << (2 * (ib % 4)));
      for (int j = 0; j < 16; j++) {
        int lo = (j + 5 * ib) % 16, hi = (j * 9 + ib) % 16;
        blk[8 + 16 * ib + j] = (uint8_t)(lo | hi << 4);
        float a = 0.0625f * (float)(ls - 32);
        xs_want[256 * b + 32 * ib + j] = a * (float)levels[lo];
        xs_want[256 * b + 32 * ib + j + 16] = a * (float)levels[hi];
      }
    }
  }
  float got[1024];
  qiao__dtype_to_f32(QIAO_DTYPE_IQ4_NL, nl, got, 32);
  CHECK(memcmp(got, nl_want, 32 * 4) == 0);
  qiao__dtype_to_f32(QIAO_DTYPE_IQ4_XS, xs, got, 1024);
  CHECK(memcmp(got, xs_want, 1024 * 4) == 0);
}

static unsigned file_minor(const char *path) {
  uint8_t h[8] = {0};
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  size_t n = fread(h, 1, 8, f);
  fclose(f);
  return n == 8 ? (unsigned)(h[6] | h[7] << 8) : 0;
}

/* Both tensors through a writer (.qiao or .gguf) and back unchanged; their
 * values equal the f32 twin's. */
static void round_trip(const char *dir, uint8_t *nl, uint8_t *xs, const float *xs_want) {
  const char *exts[] = {"qiao", "gguf"};
  for (int e = 0; e < 2; e++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/iq4.%s", dir, exts[e]);
    qiao_model *m = NULL;
    CHECK_OK(qiao__model_create(path, exts[e], &m));
    if (m == NULL) return;
    uint64_t snl[2] = {1, 32}, sxs[2] = {2, 512};
    CHECK_OK(qiao__model_add_tensor(m, "a.weight", QIAO_DTYPE_IQ4_NL, 2, snl, nl, 18));
    CHECK_OK(qiao__model_add_tensor(m, "b.weight", QIAO_DTYPE_IQ4_XS, 2, sxs, xs, 4 * 136));
    qiao_convert_options keep = {.struct_size = sizeof(keep),
                                 .format = e == 0 ? QIAO_FILE_QIAO : QIAO_FILE_GGUF,
                                 .weight_dtype = QIAO_DTYPE_COUNT};
    CHECK_OK(qiao_model_write(m, path, &keep));
    qiao_model_close(m);
    if (e == 0) CHECK(file_minor(path) == 3);
    qiao_model *r = NULL;
    CHECK_OK(qiao_model_open(path, NULL, &r));
    if (r == NULL) continue;
    const qiao_tensor *a = qiao_model_tensor_find(r, "a.weight");
    const qiao_tensor *b = qiao_model_tensor_find(r, "b.weight");
    CHECK(a && a->dtype == QIAO_DTYPE_IQ4_NL && a->n_bytes == 18 && memcmp(a->data, nl, 18) == 0);
    CHECK(b && b->dtype == QIAO_DTYPE_IQ4_XS && b->n_bytes == 4 * 136 &&
          memcmp(b->data, xs, 4 * 136) == 0);
    if (b) {
      float got[1024];
      qiao__dtype_to_f32(b->dtype, b->data, got, 1024);
      CHECK(memcmp(got, xs_want, sizeof(got)) == 0);
    }
    qiao_model_close(r);
    unlink(path);
  }
}

/* iq4_nl: 32 values that are d * T[q] for an f16 d, with both ends of the
 * table present (the search tries m / -127), come back bit for bit; iq4_xs:
 * eight such groups whose scales are d * (ls - 32) for one f16 d. Random
 * values with outliers (every 37th x8): relative RMS error under 0.15, a
 * gross-error bound (measured 0.119 and 0.121; format_quant_k holds the
 * quantizers to llama.cpp's error on real weights). */
static void quantizers(void) {
  float x[256], back[256];
  uint8_t blk[144]; /* 256 values: 8 iq4_nl blocks (144 bytes) or one iq4_xs (136) */
  for (int j = 0; j < 32; j++)
    x[j] = 0.375f * (float)levels[(j * 7 + (j == 0 ? 0 : 1)) % 16];
  x[0] = 0.375f * -127.0f, x[1] = 0.375f * 113.0f;
  qiao__dtype_from_f32(QIAO_DTYPE_IQ4_NL, x, blk, 32);
  qiao__dtype_to_f32(QIAO_DTYPE_IQ4_NL, blk, back, 32);
  CHECK(memcmp(back, x, 32 * 4) == 0);
  for (int ib = 0; ib < 8; ib++)
    for (int j = 0; j < 32; j++)
      x[32 * ib + j] = 0.03125f * (float)(ib == 0 ? -32 : 3 * ib - 12) *
                       (float)levels[j == 0 ? 0 : (j * 5 + ib) % 16];
  qiao__dtype_from_f32(QIAO_DTYPE_IQ4_XS, x, blk, 256);
  qiao__dtype_to_f32(QIAO_DTYPE_IQ4_XS, blk, back, 256);
  double err = 0, ref = 0;
  for (int i = 0; i < 256; i++)
    err += ((double)back[i] - x[i]) * ((double)back[i] - x[i]), ref += (double)x[i] * x[i];
  CHECK(err == 0);
  uint64_t state = 12345;
  for (int t = 0; t < 2; t++) {
    qiao_dtype dt = t == 0 ? QIAO_DTYPE_IQ4_NL : QIAO_DTYPE_IQ4_XS;
    err = ref = 0;
    for (int r = 0; r < 16; r++) {
      for (int i = 0; i < 256; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(state >> 40) / (float)(1 << 24) - 0.5f) * (i % 37 == 0 ? 8.0f : 1.0f);
      }
      qiao__dtype_from_f32(dt, x, blk, 256);
      qiao__dtype_to_f32(dt, blk, back, 256);
      for (int i = 0; i < 256; i++)
        err += ((double)back[i] - x[i]) * ((double)back[i] - x[i]), ref += (double)x[i] * x[i];
    }
    fprintf(stderr, "%s: random rows: relative RMS error %.4f\n", t == 0 ? "iq4_nl" : "iq4_xs",
            sqrt(err / ref));
    CHECK(sqrt(err / ref) < 0.15);
  }
}

/* `--type iq4_xs` on a model whose rows are 32 (a.weight) and 512 (b.weight)
 * long: iq4_nl and iq4_xs; 1-D tensors become f32. */
static void convert_types(const char *dir, const float *values) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/convert.qiao", dir);
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_create(path, "qiao", &m));
  if (m == NULL) return;
  uint64_t sa[2] = {2, 32}, sb[2] = {1, 512};
  CHECK_OK(qiao__model_add_tensor(m, "a.weight", QIAO_DTYPE_F32, 2, sa, values, 64 * 4));
  CHECK_OK(qiao__model_add_tensor(m, "b.weight", QIAO_DTYPE_F32, 2, sb, values, 512 * 4));
  qiao_convert_options o = {
      .struct_size = sizeof(o), .format = QIAO_FILE_QIAO, .weight_dtype = QIAO_DTYPE_IQ4_XS};
  CHECK_OK(qiao_model_write(m, path, &o));
  qiao_model_close(m);
  qiao_model *r = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &r));
  if (r) {
    const qiao_tensor *a = qiao_model_tensor_find(r, "a.weight");
    const qiao_tensor *b = qiao_model_tensor_find(r, "b.weight");
    CHECK(a && a->dtype == QIAO_DTYPE_IQ4_NL && a->n_bytes == 2 * 18);
    CHECK(b && b->dtype == QIAO_DTYPE_IQ4_XS && b->n_bytes == 2 * 136);
    CHECK(file_minor(path) == 3);
    qiao_model_close(r);
  }
  unlink(path);
}

int main(void) {
  descriptors();
  quantizers();
  uint8_t nl[18], xs[4 * 136];
  float nl_want[32], xs_want[1024];
  dequantization(nl, nl_want, xs, xs_want);
  char dir[] = "/tmp/qiao_iq4_format_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  round_trip(dir, nl, xs, xs_want);
  convert_types(dir, xs_want);
  rmdir(dir);
  TEST_END();
}
