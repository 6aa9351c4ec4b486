/* Malformed GGUF files, made in memory from stories260K.gguf: the file is
 * walked into its metadata records and tensor infos, then either patched in
 * place or reassembled with records replaced, repeated or added. Each must
 * fail (open, then validate) with the stated code.
 *
 * Truncation coverage: every length from 0 to 64 bytes past the start of
 * the tensor data (the whole header, metadata and tensor-info region, byte by
 * byte), every length within 16 bytes of every tensor's start/end, a stride
 * of 257 bytes elsewhere, and size-1. Each attempt uses one copy of the
 * file with everything after the cut poisoned for ASan, so any read past the
 * cut is reported. */
#include "import/safetensors_writer.h" /* st_buf */
#include "malformed_util.h"

#define MAX_RECORDS 64

typedef struct record {
  uint64_t start, end; /* the raw bytes of the record */
  char name[300];      /* key or tensor name */
  uint64_t value_at;   /* KV: offset of the value (after the type) */
  uint32_t n_dims;     /* tensor info */
  uint64_t dims[4], dims_at, type_at, offset_at;
  uint32_t type;
  uint64_t offset;
} record;

static uint8_t *file;
static size_t file_len;
static record kvs[MAX_RECORDS], tis[MAX_RECORDS];
static uint64_t n_kvs, n_tis, infos_end, data_start;

static uint64_t rd64(uint64_t at) {
  uint64_t v;
  memcpy(&v, file + at, 8);
  return v;
}
static uint32_t rd32(uint64_t at) {
  uint32_t v;
  memcpy(&v, file + at, 4);
  return v;
}

/* Skips one value of `type` at *at (the trusted original file). */
static void skip_value(uint32_t type, uint64_t *at) {
  static const int sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  if (type == 8) {
    *at += 8 + rd64(*at);
  } else if (type == 9) {
    uint32_t elem = rd32(*at);
    uint64_t n = rd64(*at + 4);
    *at += 12;
    for (uint64_t i = 0; i < n; i++)
      skip_value(elem, at);
  } else {
    *at += (uint64_t)sizes[type];
  }
}

static void walk(void) {
  n_tis = rd64(8);
  n_kvs = rd64(16);
  if (n_tis > MAX_RECORDS || n_kvs > MAX_RECORDS) abort();
  uint64_t at = 24;
  for (uint64_t i = 0; i < n_kvs; i++) {
    record *r = &kvs[i];
    r->start = at;
    uint64_t len = rd64(at);
    snprintf(r->name, sizeof(r->name), "%.*s", (int)len, (const char *)file + at + 8);
    at += 8 + len;
    r->type = rd32(at);
    r->value_at = at + 4;
    at += 4;
    skip_value(r->type, &at);
    r->end = at;
  }
  for (uint64_t i = 0; i < n_tis; i++) {
    record *r = &tis[i];
    r->start = at;
    uint64_t len = rd64(at);
    snprintf(r->name, sizeof(r->name), "%.*s", (int)len, (const char *)file + at + 8);
    at += 8 + len;
    r->n_dims = rd32(at);
    r->dims_at = at + 4;
    for (uint32_t d = 0; d < r->n_dims; d++)
      r->dims[d] = rd64(at + 4 + 8 * d);
    at += 4 + 8 * r->n_dims;
    r->type_at = at;
    r->type = rd32(at);
    r->offset_at = at + 4;
    r->offset = rd64(at + 4);
    at += 12;
    r->end = at;
  }
  infos_end = at;
  data_start = (at + 31) / 32 * 32;
}

static const record *kv_named(const char *key) {
  for (uint64_t i = 0; i < n_kvs; i++)
    if (strcmp(kvs[i].name, key) == 0) return &kvs[i];
  fprintf(stderr, "no key %s\n", key);
  exit(1);
}
static const record *tensor_named(const char *name) {
  for (uint64_t i = 0; i < n_tis; i++)
    if (strcmp(tis[i].name, name) == 0) return &tis[i];
  fprintf(stderr, "no tensor %s\n", name);
  exit(1);
}

/* ---- In-place patches ---------------------------------------------------- */

static void patch_case(const char *what, uint64_t at, const void *value, size_t n, qiao_code code) {
  uint8_t *copy = exact_copy(file, file_len);
  memcpy(copy + at, value, n);
  expect_code(what, try_open_exact(copy, file_len), code);
  free(copy);
}
static void patch64(const char *what, uint64_t at, uint64_t v, qiao_code code) {
  patch_case(what, at, &v, 8, code);
}
static void patch32(const char *what, uint64_t at, uint32_t v, qiao_code code) {
  patch_case(what, at, &v, 4, code);
}

/* ---- Reassembly ------------------------------------------------------------ */

/* Encoded records appended to the metadata or the tensor infos. */
typedef struct extra {
  st_buf kv, ti;
  uint64_t n_kv, n_ti;
  int skip_kv, skip_ti; /* index of an original record to leave out, or -1 */
  int replace_ti;       /* index of an original tensor info replaced by `ti` */
} extra;

static void put_str(st_buf *b, const char *s, uint64_t len) {
  st_buf_put(b, &len, 8);
  st_buf_put(b, s, len);
}
static void kv_u32(extra *e, const char *key, uint32_t v) {
  uint32_t type = 4;
  put_str(&e->kv, key, strlen(key));
  st_buf_put(&e->kv, &type, 4);
  st_buf_put(&e->kv, &v, 4);
  e->n_kv++;
}
static void kv_header(extra *e, const char *key, uint32_t type) {
  put_str(&e->kv, key, strlen(key));
  st_buf_put(&e->kv, &type, 4);
  e->n_kv++;
}
/* A tensor info whose name is `len` bytes of `name` (NUL bytes allowed). */
static void ti_add_n(extra *e, const char *name, uint64_t len, uint32_t n_dims,
                     const uint64_t *dims, uint32_t type, uint64_t offset) {
  put_str(&e->ti, name, len);
  st_buf_put(&e->ti, &n_dims, 4);
  st_buf_put(&e->ti, dims, 8 * (size_t)n_dims);
  st_buf_put(&e->ti, &type, 4);
  st_buf_put(&e->ti, &offset, 8);
  e->n_ti++;
}
static void ti_add(extra *e, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                   uint64_t offset) {
  put_str(&e->ti, name, strlen(name));
  st_buf_put(&e->ti, &n_dims, 4);
  st_buf_put(&e->ti, dims, 8 * (size_t)n_dims);
  st_buf_put(&e->ti, &type, 4);
  st_buf_put(&e->ti, &offset, 8);
  e->n_ti++;
}

/* The file with the records of `e`; the tensor data is re-aligned to 32. */
static void build_case(const char *what, extra *e, qiao_code code) {
  st_buf out = {0};
  uint64_t n_ti = n_tis + e->n_ti - (e->skip_ti >= 0) - (e->replace_ti >= 0);
  uint64_t n_kv = n_kvs + e->n_kv - (e->skip_kv >= 0);
  st_buf_put(&out, file, 8);
  st_buf_put(&out, &n_ti, 8);
  st_buf_put(&out, &n_kv, 8);
  for (uint64_t i = 0; i < n_kvs; i++)
    if ((int)i != e->skip_kv) st_buf_put(&out, file + kvs[i].start, kvs[i].end - kvs[i].start);
  if (e->kv.len) st_buf_put(&out, e->kv.data, e->kv.len);
  for (uint64_t i = 0; i < n_tis; i++) {
    if ((int)i == e->replace_ti && e->ti.len) st_buf_put(&out, e->ti.data, e->ti.len);
    if ((int)i != e->skip_ti && (int)i != e->replace_ti)
      st_buf_put(&out, file + tis[i].start, tis[i].end - tis[i].start);
  }
  if (e->replace_ti < 0 && e->ti.len) st_buf_put(&out, e->ti.data, e->ti.len);
  while (out.len % 32)
    st_buf_put(&out, "", 1);
  st_buf_put(&out, file + data_start, file_len - data_start);
  expect_code(what, try_open_buffer(out.data, out.len), code);
  free(out.data);
  free(e->kv.data);
  free(e->ti.data);
}

static extra no_extra(void) {
  extra e;
  memset(&e, 0, sizeof(e));
  e.skip_kv = e.skip_ti = e.replace_ti = -1;
  return e;
}

/* ---- Cases -------------------------------------------------------------- */

static void test_counts_and_lengths(void) {
  patch64("tensor count huge", 8, 1ull << 40, QIAO_MALFORMED); /* cannot fit */
  patch64("tensor count one more", 8, n_tis + 1, QIAO_MALFORMED);
  patch64("metadata count huge", 16, 1ull << 40, QIAO_MALFORMED);
  /* The first tensor info read as metadata: its dims give a huge key length. */
  patch64("metadata count one more", 16, n_kvs + 1, QIAO_LIMIT);
  patch32("version 1", 4, 1, QIAO_UNSUPPORTED);
  patch32("version 99", 4, 99, QIAO_UNSUPPORTED);
  patch64("key length huge", kvs[0].start, 1ull << 62, QIAO_LIMIT);
  patch64("key length past the end", kvs[0].start, file_len, QIAO_MALFORMED);
  patch64("key length 0 (empty key)", kv_named("general.name")->start, 0, QIAO_MALFORMED);
  const record *arch = kv_named("general.architecture");
  patch64("string length huge", arch->value_at, 1ull << 60, QIAO_LIMIT);
  patch64("string length past the end", arch->value_at, file_len, QIAO_MALFORMED);
  const record *tokens = kv_named("tokenizer.ggml.tokens");
  patch64("array length huge", tokens->value_at + 4, 1ull << 40, QIAO_LIMIT);
  /* Reading on past the 512 tokens meets a huge string length. */
  patch64("array length past the end", tokens->value_at + 4, 1ull << 22, QIAO_LIMIT);
  patch32("array element type invalid", tokens->value_at, 99, QIAO_MALFORMED);
  patch32("array of arrays", tokens->value_at, 9, QIAO_UNSUPPORTED);
  patch32("value type invalid", arch->value_at - 4, 99, QIAO_MALFORMED);
  const record *name0 = &tis[0];
  patch64("tensor name length huge", name0->start, 1ull << 62, QIAO_LIMIT);
}

/* A canonical key stored with another type than llama.cpp reads it as (it
 * refuses them: "key ... has wrong type"): refused, naming the key. The key
 * is replaced by a value of `type` with `n` bytes of `value`. */
static void wrong_type_case(const char *key, uint32_t type, const void *value, size_t n) {
  extra e = no_extra();
  const record *r = kv_named(key);
  e.skip_kv = (int)(r - kvs);
  kv_header(&e, key, type);
  st_buf_put(&e.kv, value, n);
  char what[128];
  snprintf(what, sizeof(what), "%s of type %u", key, type);
  expect_field = key;
  build_case(what, &e, QIAO_MALFORMED);
}

static void test_canonical_key_types(void) {
  uint64_t u64 = 5;
  int32_t i32 = 5;
  uint16_t u16 = 5;
  double f64 = 1e-5;
  float f32 = 64.0f;
  uint8_t yes = 1;
  wrong_type_case("llama.block_count", 10, &u64, 8);                      /* u64 */
  wrong_type_case("llama.context_length", 5, &i32, 4);                    /* i32 */
  wrong_type_case("llama.embedding_length", 6, &f32, 4);                  /* f32 */
  wrong_type_case("llama.attention.head_count", 2, &u16, 2);              /* u16 */
  wrong_type_case("llama.attention.layer_norm_rms_epsilon", 12, &f64, 8); /* f64 */
  wrong_type_case("tokenizer.ggml.bos_token_id", 5, &i32, 4);             /* i32 */
  wrong_type_case("tokenizer.ggml.eos_token_id", 7, &yes, 1);             /* bool */
  wrong_type_case("tokenizer.ggml.model", 4, &i32, 4);                    /* u32, not a string */
  /* token types as u8: llama.cpp reads the array as i32 whatever it holds */
  const record *types = kv_named("tokenizer.ggml.token_type");
  if (types != NULL) {
    extra e = no_extra();
    e.skip_kv = (int)(types - kvs);
    kv_header(&e, "tokenizer.ggml.token_type", 9);
    uint32_t elem = 0; /* u8 */
    uint64_t n = 512;
    st_buf_put(&e.kv, &elem, 4);
    st_buf_put(&e.kv, &n, 8);
    uint8_t ones[512];
    memset(ones, 1, sizeof(ones));
    st_buf_put(&e.kv, ones, sizeof(ones));
    expect_field = "tokenizer.ggml.token_type";
    build_case("token types stored as u8", &e, QIAO_MALFORMED);
  }
}

static void test_metadata_records(void) {
  extra e = no_extra();
  /* tokenizer.ggml.scores as int8 instead of f32. */
  const record *scores = kv_named("tokenizer.ggml.scores");
  e.skip_kv = (int)(scores - kvs);
  kv_header(&e, "tokenizer.ggml.scores", 9);
  uint32_t elem = 1;
  uint64_t n = 512;
  st_buf_put(&e.kv, &elem, 4);
  st_buf_put(&e.kv, &n, 8);
  uint8_t zeros[512] = {0};
  st_buf_put(&e.kv, zeros, sizeof(zeros));
  build_case("token scores stored as int8", &e, QIAO_MALFORMED);

  e = no_extra();
  const record *name = kv_named("general.name");
  st_buf_put(&e.kv, file + name->start, name->end - name->start);
  e.n_kv++;
  build_case("duplicate key", &e, QIAO_MALFORMED);

  e = no_extra();
  kv_u32(&e, "", 1);
  build_case("empty key", &e, QIAO_MALFORMED);

  char long_key[400];
  memset(long_key, 'k', sizeof(long_key) - 1);
  long_key[sizeof(long_key) - 1] = '\0';
  e = no_extra();
  kv_u32(&e, long_key, 1);
  build_case("over-long key", &e, QIAO_MALFORMED);

  e = no_extra();
  kv_u32(&e, "general.alignment", 0);
  build_case("alignment 0", &e, QIAO_MALFORMED);
  e = no_extra();
  kv_u32(&e, "general.alignment", 24);
  build_case("alignment not a power of two", &e, QIAO_MALFORMED);
  e = no_extra();
  kv_u32(&e, "general.alignment", 1u << 31);
  build_case("alignment absurdly large", &e, QIAO_MALFORMED);
  e = no_extra();
  kv_header(&e, "general.alignment", 8);
  put_str(&e.kv, "32", 2);
  build_case("alignment of the wrong type", &e, QIAO_MALFORMED);
  e = no_extra();
  kv_header(&e, "general.alignment", 10); /* u64: ggml's reader takes a u32 only */
  uint64_t align64 = 32;
  st_buf_put(&e.kv, &align64, 8);
  expect_field = "general.alignment";
  build_case("alignment stored as u64", &e, QIAO_MALFORMED);
  test_canonical_key_types();
}

static void test_tensor_infos(void) {
  const uint64_t *d0 = tis[0].dims;
  extra e;
  e = no_extra();
  ti_add(&e, tis[1].name, tis[0].n_dims, d0, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "duplicate";
  build_case("duplicate tensor name", &e, QIAO_MALFORMED);

  /* the name of tensor 0 with a NUL byte inside, the rest of its record
   * unchanged: only the name check can refuse it */
  char nul_name[300];
  size_t name_len = strlen(tis[0].name);
  memcpy(nul_name, tis[0].name, name_len);
  nul_name[name_len / 2] = '\0';
  e = no_extra();
  ti_add_n(&e, nul_name, name_len, tis[0].n_dims, d0, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "tensor name";
  build_case("NUL byte in a tensor name", &e, QIAO_MALFORMED);

  char long_name[300];
  memset(long_name, 't', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  e = no_extra();
  ti_add(&e, long_name, tis[0].n_dims, d0, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "tensor name";
  build_case("over-long tensor name", &e, QIAO_MALFORMED);

  e = no_extra();
  ti_add(&e, "", tis[0].n_dims, d0, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "tensor name";
  build_case("empty tensor name", &e, QIAO_MALFORMED);

  uint64_t five[5] = {64, 512, 1, 1, 1};
  e = no_extra();
  ti_add(&e, tis[0].name, 5, five, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "dimensions";
  build_case("five dims", &e, QIAO_MALFORMED);

  uint64_t huge[3] = {1ull << 32, 1ull << 32, 1ull << 32};
  e = no_extra();
  ti_add(&e, tis[0].name, 3, huge, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  build_case("dims overflow", &e, QIAO_MALFORMED);

  e = no_extra();
  ti_add(&e, tis[0].name, 0, d0, tis[0].type, tis[0].offset);
  e.replace_ti = 0;
  expect_field = "dimensions";
  build_case("zero dims", &e, QIAO_MALFORMED);

  patch64("dim 0", tis[0].dims_at, 0, QIAO_MALFORMED);
  patch32("n_dims huge", tis[0].dims_at - 4, 1u << 30, QIAO_MALFORMED);
  patch32("dtype unknown", tis[0].type_at, 99, QIAO_UNSUPPORTED);
  patch32("dtype iq2_xxs (not supported)", tis[0].type_at, 16, QIAO_UNSUPPORTED);
  /* q4_K is read (format 1.1), but token_embd's rows of 64 are not whole
   * super-blocks of 256 */
  expect_field = "not a multiple of the q4_k block";
  patch32("row not a multiple of the k-quant block", tis[0].type_at, 12, QIAO_MALFORMED);
  /* blk.0.ffn_down rows are 172 wide: not a multiple of the 32 of q8_0. */
  const record *down = tensor_named("blk.0.ffn_down.weight");
  patch32("row not a multiple of the quant block", down->type_at, 8, QIAO_MALFORMED);
  expect_field = "not a multiple of the alignment";
  patch64("offset misaligned", tis[1].offset_at, tis[1].offset + 4, QIAO_MALFORMED);
  expect_field = "overlaps";
  patch64("offsets overlapping", tis[1].offset_at, tis[0].offset, QIAO_MALFORMED);
  const record *last = &tis[n_tis - 1];
  expect_field = "runs past the end";
  patch64("offset past the end", last->offset_at, last->offset + 4096, QIAO_MALFORMED);
  patch64("offset huge", last->offset_at, 1ull << 63, QIAO_MALFORMED);
  patch64("offset wraps", last->offset_at, UINT64_MAX - 31, QIAO_MALFORMED);
}

static void test_semantics(void) {
  patch32("block count above the tensors", kv_named("llama.block_count")->value_at, 6,
          QIAO_MALFORMED);
  patch32("block count below the tensors", kv_named("llama.block_count")->value_at, 4,
          QIAO_MALFORMED);
  patch32("head count 0", kv_named("llama.attention.head_count")->value_at, 0, QIAO_MALFORMED);
  patch32("heads not divisible by kv heads", kv_named("llama.attention.head_count_kv")->value_at, 3,
          QIAO_MALFORMED);
  patch32("kv head count 0", kv_named("llama.attention.head_count_kv")->value_at, 0,
          QIAO_MALFORMED);
  patch32("width disagrees with the tensors", kv_named("llama.embedding_length")->value_at, 128,
          QIAO_MALFORMED);
  patch32("ffn width disagrees", kv_named("llama.feed_forward_length")->value_at, 100,
          QIAO_MALFORMED);
  patch32("bos id beyond the vocab", kv_named("tokenizer.ggml.bos_token_id")->value_at, 512,
          QIAO_MALFORMED);
  patch32("eos id beyond the vocab", kv_named("tokenizer.ggml.eos_token_id")->value_at, 100000,
          QIAO_MALFORMED);
  patch32("unk id beyond the vocab", kv_named("tokenizer.ggml.unknown_token_id")->value_at, 513,
          QIAO_MALFORMED);
}

static void test_truncation(void) {
  uint64_t bounds[2 * MAX_RECORDS];
  size_t nb = 0;
  for (uint64_t i = 0; i < n_tis; i++) {
    bounds[nb++] = data_start + tis[i].offset;
    uint64_t elems = 1;
    for (uint32_t d = 0; d < tis[i].n_dims; d++)
      elems *= tis[i].dims[d];
    bounds[nb++] = data_start + tis[i].offset + 4 * elems; /* all F32 */
  }
  int tried = 0, failures_before = test_failures;
  for (size_t len = 0; len < file_len; len++) {
    if (!(len <= data_start + 64 || near_boundary(len, bounds, nb, 16) || len % 257 == 0 ||
          len == file_len - 1))
      continue;
    tried++;
    qiao_status *st = with_prefix(file, file_len, len, 0, try_open_exact);
    if (qiao_status_code(st) != QIAO_MALFORMED) {
      char what[64];
      snprintf(what, sizeof(what), "gguf truncated to %zu bytes", len);
      expect_code(what, st, QIAO_MALFORMED);
      if (test_failures - failures_before > 5) break;
    } else {
      cases_run++;
      qiao_status_free(st);
    }
  }
  fprintf(stderr, "gguf: %d truncation lengths tried\n", tried);
}

int main(void) {
  file =
      (uint8_t *)test_read_file(test_shared_path("models/stories260K/stories260K.gguf"), &file_len);
  walk();
  CHECK_OK(try_open_buffer(file, file_len)); /* the control */
  {
    /* Reassembling the unchanged records gives back the file. */
    st_buf out = {0};
    st_buf_put(&out, file, infos_end);
    while (out.len % 32)
      st_buf_put(&out, "", 1);
    st_buf_put(&out, file + data_start, file_len - data_start);
    CHECK(out.len == file_len && memcmp(out.data, file, file_len) == 0);
    free(out.data);
  }
  test_counts_and_lengths();
  test_metadata_records();
  test_tensor_infos();
  test_semantics();
  test_truncation();
  fprintf(stderr, "%d malformed GGUF cases\n", cases_run);
  free(file);
  TEST_END();
}
