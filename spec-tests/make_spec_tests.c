/* Writes the .qiao conformance files of spec-tests/ (see README.md there):
 * XXH3-64 test vectors, small valid files, files a reader must refuse, each
 * with the reason, and vectors of the reference conversions of format.md
 * §4.2 (computed here from the specification's text), into OUT_DIR. Deterministic: the same bytes
 * on every run and host, so CI checks the checked-in copies against a fresh run.
 *
 * Needs nothing of qiao: only libxxhash, the way another implementation's
 * writer would be built from docs/spec/format.md.
 *
 * usage: make_spec_tests OUT_DIR */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- A growing byte buffer ------------------------------------------------ */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void reserve(buf *b, size_t more) {
  if (b->n + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + more)
    cap *= 2;
  uint8_t *grown = realloc(b->p, cap);
  if (grown == NULL) {
    fprintf(stderr, "make_spec_tests: out of memory\n");
    exit(1);
  }
  b->p = grown;
  b->cap = cap;
}

static void put_bytes(buf *b, const void *data, size_t n) {
  reserve(b, n);
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
}

static void put_le(buf *b, uint64_t v, int n) {
  uint8_t tmp[8];
  for (int i = 0; i < n; i++)
    tmp[i] = (uint8_t)(v >> (8 * i));
  put_bytes(b, tmp, (size_t)n);
}

static void put_zeros(buf *b, size_t n) {
  reserve(b, n);
  memset(b->p + b->n, 0, n);
  b->n += n;
}

static void put_str(buf *b, const char *s) {
  put_le(b, strlen(s), 8);
  put_bytes(b, s, strlen(s));
}

static void set_le(buf *b, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    b->p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const buf *b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | b->p[at + (size_t)i];
  return v;
}

/* ---- Metadata values ------------------------------------------------------ */

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64 };

static void kv_u32(buf *kv, const char *key, uint32_t v) {
  put_str(kv, key);
  put_le(kv, T_U32, 4);
  put_le(kv, v, 4);
}

static void kv_f32(buf *kv, const char *key, float v) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  put_str(kv, key);
  put_le(kv, T_F32, 4);
  put_le(kv, bits, 4);
}

static void kv_str(buf *kv, const char *key, const char *v) {
  put_str(kv, key);
  put_le(kv, T_STRING, 4);
  put_str(kv, v);
}

static void kv_bool(buf *kv, const char *key, bool v) {
  put_str(kv, key);
  put_le(kv, T_BOOL, 4);
  put_le(kv, v, 1);
}

static void kv_tokens(buf *kv, uint32_t n) {
  put_str(kv, "tokenizer.tokens");
  put_le(kv, T_ARRAY, 4);
  put_le(kv, T_STRING, 4);
  put_le(kv, n, 8);
  for (uint32_t i = 0; i < n; i++) {
    char tok[16];
    snprintf(tok, sizeof(tok), "t%u", i);
    put_str(kv, tok);
  }
}

/* ---- Files ---------------------------------------------------------------- */

typedef struct tensor {
  const char *name;
  uint32_t dtype, n_dims;
  uint64_t shape[4];
  /* descriptor; filled from the dtype table when layout is NULL */
  uint32_t block_elems, block_bytes, bits;
  const char *scale, *layout;
  const uint8_t *data;
  uint64_t n_bytes;
  uint64_t extra_len; /* bytes of a later minor version, written as 0xee */
} tensor;

typedef struct file_spec {
  uint16_t major, minor;
  uint32_t flags, header_size, alignment;
  uint64_t n_kv;
  const buf *kv;
  const tensor *tensors;
  uint64_t n_tensors;
} file_spec;

/* Where things landed, for the malformed variants. */
typedef struct layout_info {
  size_t table_offset, table_end, data_offset;
  size_t entry[16];  /* byte offset of each tensor table entry */
  size_t offset[16]; /* field `offset` of each entry */
  size_t data[16];   /* first data byte of each tensor in the file */
} layout_info;

static const struct {
  const char *layout, *scale;
  uint32_t block_elems, block_bytes, bits;
} dtypes[] = {
    {"f32", "none", 1, 4, 32},  {"f16", "none", 1, 2, 16},  {"bf16", "none", 1, 2, 16},
    {"q8_0", "f16", 32, 34, 8}, {"q4_0", "f16", 32, 18, 4}, {"i32", "none", 1, 4, 32},
};

static uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

static uint64_t header_hash(const buf *f, size_t table_end) {
  XXH3_state_t *s = XXH3_createState();
  static const uint8_t zeros[8];
  XXH3_64bits_reset(s);
  XXH3_64bits_update(s, f->p, 80);
  XXH3_64bits_update(s, zeros, 8);
  XXH3_64bits_update(s, f->p + 88, table_end - 88);
  uint64_t h = XXH3_64bits_digest(s);
  XXH3_freeState(s);
  return h;
}

/* Recomputes the header hash after a field was changed on purpose, so that
 * a reader meets the intended problem rather than a hash mismatch. */
static void rehash(buf *f) {
  set_le(f, 80, header_hash(f, (size_t)get_le(f, 56, 8)), 8);
}

static buf build(const file_spec *spec, layout_info *where) {
  buf f = {0};
  layout_info li = {0};
  put_zeros(&f, spec->header_size);
  put_bytes(&f, spec->kv->p, spec->kv->n);
  li.table_offset = f.n;
  uint64_t data_size = 0;
  for (uint64_t i = 0; i < spec->n_tensors; i++) {
    const tensor *t = &spec->tensors[i];
    uint64_t offset = align_up(data_size, spec->alignment);
    data_size = offset + t->n_bytes;
    li.entry[i] = f.n;
    put_str(&f, t->name);
    put_le(&f, t->dtype, 4);
    put_le(&f, t->n_dims, 4);
    for (uint32_t d = 0; d < t->n_dims; d++)
      put_le(&f, t->shape[d], 8);
    bool known = t->layout == NULL;
    put_le(&f, known ? dtypes[t->dtype].block_elems : t->block_elems, 4);
    put_le(&f, known ? dtypes[t->dtype].block_bytes : t->block_bytes, 4);
    put_le(&f, known ? dtypes[t->dtype].bits : t->bits, 4);
    put_str(&f, known ? dtypes[t->dtype].scale : t->scale);
    put_str(&f, known ? dtypes[t->dtype].layout : t->layout);
    li.offset[i] = f.n;
    put_le(&f, offset, 8);
    put_le(&f, t->n_bytes, 8);
    put_le(&f, XXH3_64bits(t->data, (size_t)t->n_bytes), 8);
    put_le(&f, t->extra_len, 8);
    for (uint64_t k = 0; k < t->extra_len; k++)
      put_le(&f, 0xee, 1);
  }
  li.table_end = f.n;
  uint64_t page = spec->alignment > 4096 ? spec->alignment : 4096;
  li.data_offset = (size_t)align_up(li.table_end, page);
  put_zeros(&f, li.data_offset - f.n);
  for (uint64_t i = 0; i < spec->n_tensors; i++) {
    const tensor *t = &spec->tensors[i];
    size_t at = li.data_offset + (size_t)get_le(&f, li.offset[i], 8);
    put_zeros(&f, at - f.n);
    li.data[i] = f.n;
    put_bytes(&f, t->data, (size_t)t->n_bytes);
  }
  memcpy(f.p, "QIAO", 4);
  set_le(&f, 4, spec->major, 2);
  set_le(&f, 6, spec->minor, 2);
  set_le(&f, 8, spec->flags, 4);
  set_le(&f, 12, spec->header_size, 4);
  set_le(&f, 16, spec->alignment, 4);
  set_le(&f, 24, spec->n_kv, 8);
  set_le(&f, 32, spec->n_tensors, 8);
  set_le(&f, 40, spec->header_size, 8);
  set_le(&f, 48, li.table_offset, 8);
  set_le(&f, 56, li.table_end, 8);
  set_le(&f, 64, li.data_offset, 8);
  set_le(&f, 72, data_size, 8);
  rehash(&f);
  if (where) *where = li;
  return f;
}

/* ---- Output --------------------------------------------------------------- */

static const char *out_dir;
static FILE *manifest;

static void save(const char *name, const buf *f) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/files/%s", out_dir, name);
  FILE *o = fopen(path, "wb");
  if (o == NULL || fwrite(f->p, 1, f->n, o) != f->n || fclose(o) != 0) {
    fprintf(stderr, "make_spec_tests: cannot write %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

/* One manifest line: file | open | validate | what qiao's message contains |
 * why. `open` and `validate` are ok, malformed or unsupported. */
static void expect(const char *name, const buf *f, const char *open, const char *validate,
                   const char *fragment, const char *why) {
  save(name, f);
  fprintf(manifest, "%s | %s | %s | %s | %s\n", name, open, validate, fragment, why);
}

/* ---- The files ------------------------------------------------------------ */

static const float minimal_data[2] = {1.0f, -2.0f};

static buf minimal(layout_info *li) {
  static buf kv;
  kv.n = 0;
  kv_str(&kv, "general.name", "tiny");
  static tensor t;
  t = (tensor){.name = "t", .dtype = 0, .n_dims = 1, .shape = {2}};
  t.data = (const uint8_t *)minimal_data;
  t.n_bytes = sizeof(minimal_data);
  file_spec spec = {1, 0, 0, 96, 64, 1, &kv, &t, 1};
  return build(&spec, li);
}

/* A complete llama-architecture model small enough to read by eye: every
 * element type of 1.0 that a weight may have. */
enum { DIM = 32, VOCAB = 8, FFN = 32, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 16 };
static uint8_t weights[16][4096];

static void fill(uint8_t *p, size_t n, uint32_t seed, uint32_t dtype) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (uint8_t)(x >> 16);
  }
  /* Keep the values finite: f32 exponent bytes, f16/bf16 high bytes and
   * q scales small. */
  if (dtype == 0)
    for (size_t i = 3; i < n; i += 4)
      p[i] = (uint8_t)(0x3c + (p[i] & 1));
  if (dtype == 1 || dtype == 2)
    for (size_t i = 1; i < n; i += 2)
      p[i] = dtype == 1 ? (uint8_t)(0x2c | (p[i] & 0x83)) : (uint8_t)(0x3c | (p[i] & 0x80));
  if (dtype == 3 || dtype == 4) {
    size_t block = dtype == 3 ? 34 : 18;
    for (size_t i = 0; i + 1 < n; i += block)
      p[i + 1] = 0x20; /* f16 scale about 0.008 */
  }
}

static tensor tiny_tensors[16];
static uint64_t n_tiny_tensors;

static void tiny_add(const char *name, uint32_t dtype, uint32_t n_dims, uint64_t d0, uint64_t d1) {
  tensor *t = &tiny_tensors[n_tiny_tensors];
  *t = (tensor){.name = name, .dtype = dtype, .n_dims = n_dims, .shape = {d0, d1}};
  uint64_t row = n_dims == 1 ? d0 : d1, rows = n_dims == 1 ? 1 : d0;
  t->n_bytes = row / dtypes[dtype].block_elems * dtypes[dtype].block_bytes * rows;
  fill(weights[n_tiny_tensors], (size_t)t->n_bytes, (uint32_t)n_tiny_tensors, dtype);
  t->data = weights[n_tiny_tensors];
  n_tiny_tensors++;
}

static void tiny_kv(buf *kv, uint64_t *n_kv, uint32_t n_tokens) {
  kv->n = 0;
  kv_str(kv, "general.architecture", "llama");
  kv_str(kv, "general.name", "spec-tests tiny llama");
  kv_u32(kv, "model.vocab_size", VOCAB);
  kv_u32(kv, "model.context_length", 64);
  kv_u32(kv, "model.dim", DIM);
  kv_u32(kv, "model.n_layers", 1);
  kv_u32(kv, "model.n_heads", HEADS);
  kv_u32(kv, "model.n_kv_heads", KV_HEADS);
  kv_u32(kv, "model.ffn_dim", FFN);
  kv_f32(kv, "model.norm_eps", 1e-5f);
  kv_bool(kv, "model.tied_embeddings", false);
  kv_str(kv, "tokenizer.model", "none");
  *n_kv = 12;
  if (n_tokens) {
    kv_tokens(kv, n_tokens);
    (*n_kv)++;
  }
}

static buf tiny_model(uint32_t n_tokens, uint32_t attn_q_dtype, layout_info *li) {
  static buf kv;
  uint64_t n_kv;
  tiny_kv(&kv, &n_kv, n_tokens);
  n_tiny_tensors = 0;
  tiny_add("token_embd.weight", 0, 2, VOCAB, DIM);
  tiny_add("output_norm.weight", 0, 1, DIM, 0);
  tiny_add("output.weight", 1, 2, VOCAB, DIM);
  tiny_add("blk.0.attn_norm.weight", 0, 1, DIM, 0);
  tiny_add("blk.0.attn_q.weight", 3, 2, HEADS * HEAD_DIM, DIM);
  tiny_add("blk.0.attn_k.weight", 3, 2, KV_HEADS * HEAD_DIM, DIM);
  tiny_add("blk.0.attn_v.weight", 4, 2, KV_HEADS * HEAD_DIM, DIM);
  tiny_add("blk.0.attn_output.weight", 2, 2, DIM, HEADS * HEAD_DIM);
  tiny_add("blk.0.ffn_norm.weight", 0, 1, DIM, 0);
  tiny_add("blk.0.ffn_gate.weight", 3, 2, FFN, DIM);
  tiny_add("blk.0.ffn_up.weight", 4, 2, FFN, DIM);
  tiny_add("blk.0.ffn_down.weight", 1, 2, DIM, FFN);
  if (attn_q_dtype != 3) { /* a type of a later minor version: 32 elements in 14 bytes */
    tensor *q = &tiny_tensors[4];
    q->dtype = attn_q_dtype;
    q->layout = "q3_future";
    q->scale = "f16";
    q->block_elems = 32;
    q->block_bytes = 14;
    q->bits = 3;
    q->n_bytes = (uint64_t)HEADS * HEAD_DIM * (DIM / 32) * 14;
  }
  file_spec spec = {
      1, attn_q_dtype != 3 ? 1 : 0, 0, 96, 64, n_kv, &kv, tiny_tensors, n_tiny_tensors};
  return build(&spec, li);
}

/* The tiny model as a 1.1 writer may write it with only 1.0 element types:
 * a longer header, an optional flag, an unknown key and extra bytes in a
 * tensor entry. It validates; `qiao convert` writes it as 1.0 (§6.5). */
static buf tiny_model_newer(void) {
  static buf kv;
  uint64_t n_kv;
  buf plain = tiny_model(VOCAB, 3, NULL); /* fills tiny_tensors */
  free(plain.p);
  tiny_kv(&kv, &n_kv, VOCAB);
  kv_u32(&kv, "future.key", 7);
  n_kv++;
  tiny_tensors[1].extra_len = 8;
  file_spec spec = {1, 1, 0x00010000u, 104, 64, n_kv, &kv, tiny_tensors, n_tiny_tensors};
  buf f = build(&spec, NULL);
  tiny_tensors[1].extra_len = 0;
  set_le(&f, 96, 0x0123456789abcdefull, 8);
  rehash(&f);
  return f;
}

/* A 1.1 file as a later minor version may write it: a longer header, an
 * optional flag, an unknown key, a tensor of an unknown type and a tensor
 * entry with extra bytes. A 1.0 reader opens it. */
static buf newer_minor(void) {
  static buf kv;
  kv.n = 0;
  kv_str(&kv, "general.name", "from the future");
  kv_u32(&kv, "future.key", 7);
  static const uint8_t q[2 * 14] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
                                    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28};
  static tensor t[2];
  t[0] = (tensor){.name = "plain", .dtype = 0, .n_dims = 1, .shape = {2}, .extra_len = 8};
  t[0].data = (const uint8_t *)minimal_data;
  t[0].n_bytes = 8;
  t[1] = (tensor){.name = "future", .dtype = 77, .n_dims = 2, .shape = {2, 32}};
  t[1].block_elems = 32;
  t[1].block_bytes = 14;
  t[1].bits = 3;
  t[1].scale = "f16";
  t[1].layout = "q3_future";
  t[1].data = q;
  t[1].n_bytes = sizeof(q);
  file_spec spec = {1, 1, 0x00010000u, 104, 64, 2, &kv, t, 2};
  buf f = build(&spec, NULL);
  set_le(&f, 96, 0x0123456789abcdefull, 8); /* the header's new field */
  rehash(&f);
  return f;
}

/* Bytes no hash covers and no reader interprets: padding before the data
 * section, the gap between two tensors, bytes after the last tensor inside
 * data_size. Writers write zeros; readers ignore them. */
static buf ignored_bytes(void) {
  static buf kv;
  kv.n = 0;
  kv_str(&kv, "general.name", "ignored bytes");
  static tensor t[2];
  t[0] = (tensor){.name = "a", .dtype = 0, .n_dims = 1, .shape = {2}};
  t[0].data = (const uint8_t *)minimal_data;
  t[0].n_bytes = 8;
  t[1] = t[0];
  t[1].name = "b";
  file_spec spec = {1, 0, 0, 96, 64, 1, &kv, t, 2};
  layout_info li;
  buf f = build(&spec, &li);
  f.p[li.table_end] = 0xaa;                 /* padding before the data section */
  f.p[li.data[0] + 8] = 0xbb;               /* gap between the tensors */
  put_le(&f, 0xcc, 1);                      /* after the last tensor ... */
  set_le(&f, 72, get_le(&f, 72, 8) + 1, 8); /* ... inside data_size */
  rehash(&f);
  return f;
}

static void write_files(void) {
  layout_info li;
  buf f;

  /* Valid files. */
  f = minimal(&li);
  expect("minimal.qiao", &f, "ok", "malformed", "general.architecture",
         "the annotated example of format.md: opens; not a model (no architecture)");
  free(f.p);
  f = tiny_model(VOCAB, 3, NULL);
  expect("tiny-llama.qiao", &f, "ok", "ok", "-",
         "a complete model using f32, f16, bf16, q8_0 and q4_0 tensors");
  free(f.p);
  f = tiny_model_newer();
  expect("tiny-llama-1.1.qiao", &f, "ok", "ok", "-",
         "tiny-llama.qiao as 1.1 with header_size 104, optional flag 16, an unknown key and "
         "extra_len 8, but only 1.0 element types: opens and validates");
  free(f.p);
  f = newer_minor();
  expect("newer-minor.qiao", &f, "ok", "malformed", "general.architecture",
         "1.1: header_size 104, optional flag 16, unknown key, unknown dtype 77, extra_len 8: "
         "a 1.0 reader opens it and lists tensor 'future' as unknown type 77");
  free(f.p);
  f = ignored_bytes();
  expect("ignored-bytes.qiao", &f, "ok", "malformed", "general.architecture",
         "non-zero padding, gap and trailing data bytes: no hash covers them, readers ignore "
         "them");
  free(f.p);

  /* Refused when opened. */
  f = minimal(&li);
  memcpy(f.p, "QIAX", 4);
  expect("bad-magic.qiao", &f, "malformed", "malformed", "not a .qiao file", "magic is not QIAO");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 4, 2, 2);
  rehash(&f);
  expect("major-2.qiao", &f, "unsupported", "unsupported", "version 2.0", "another major version");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 8, 1, 4);
  rehash(&f);
  expect("required-flag.qiao", &f, "unsupported", "unsupported", "required flags 0x1",
         "required flag bit 0 is not defined in 1.0");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 12, 100, 4);
  rehash(&f);
  expect("header-size-100.qiao", &f, "malformed", "malformed", "header_size",
         "header_size is not a multiple of 8");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 16, 48, 4);
  rehash(&f);
  expect("alignment-48.qiao", &f, "malformed", "malformed", "alignment",
         "alignment is not a power of two");
  free(f.p);
  f = minimal(&li);
  f.p[li.table_offset - 1] ^= 0x01; /* the last byte of the metadata: "tinx" */
  expect("header-hash.qiao", &f, "malformed", "malformed", "header hash",
         "a metadata byte changed after the header hash was computed");
  free(f.p);
  f = minimal(&li);
  f.n--;
  expect("truncated.qiao", &f, "malformed", "malformed", "data_size",
         "the file is one byte shorter than data_offset + data_size");
  free(f.p);
  f = minimal(&li);
  put_le(&f, 0, 1);
  expect("extended.qiao", &f, "malformed", "malformed", "data_size",
         "the file is one byte longer than data_offset + data_size");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 64, li.data_offset - 64, 8);
  set_le(&f, 72, get_le(&f, 72, 8) + 64, 8);
  rehash(&f);
  expect("data-offset.qiao", &f, "malformed", "malformed", "data_offset",
         "data_offset is not a multiple of 4096");
  free(f.p);
  f = minimal(&li);
  set_le(&f, 24, 0, 8);
  rehash(&f);
  expect("metadata-left-over.qiao", &f, "malformed", "malformed", "bytes left before the tensor",
         "n_kv is 0 but the metadata region holds an entry");
  free(f.p);
  f = minimal(&li);
  f.p[96 + 8 + 3] = 0xff; /* "gen\xffral.name" */
  rehash(&f);
  expect("key-not-utf8.qiao", &f, "malformed", "malformed", "not UTF-8",
         "a metadata key with the byte 0xff");
  free(f.p);
  {
    buf kv = {0};
    kv_str(&kv, "general.name", "a");
    kv_str(&kv, "general.name", "b");
    file_spec spec = {1, 0, 0, 96, 64, 2, &kv, NULL, 0};
    f = build(&spec, NULL);
    expect("duplicate-key.qiao", &f, "malformed", "malformed", "duplicate", "the same key twice");
    free(f.p);
    kv.n = 0;
    put_str(&kv, "x.value");
    put_le(&kv, 13, 4);
    put_le(&kv, 0, 8);
    spec.n_kv = 1;
    f = build(&spec, NULL);
    expect("value-type-13.qiao", &f, "malformed", "malformed", "unknown value type 13",
           "value type 13 is not defined: its size is unknown, so nothing after it can be read");
    free(f.p);
    kv.n = 0;
    put_str(&kv, "x.flag");
    put_le(&kv, T_BOOL, 4);
    put_le(&kv, 2, 1);
    f = build(&spec, NULL);
    expect("bool-2.qiao", &f, "malformed", "malformed", "bool value 2", "a bool must be 0 or 1");
    free(f.p);
    kv.n = 0;
    put_str(&kv, "x.nested");
    put_le(&kv, T_ARRAY, 4);
    put_le(&kv, T_ARRAY, 4);
    put_le(&kv, 0, 8);
    f = build(&spec, NULL);
    expect("array-of-arrays.qiao", &f, "unsupported", "unsupported", "arrays of arrays",
           "an array whose elements are arrays");
    free(f.p);
    free(kv.p);
  }
  f = minimal(&li);
  set_le(&f, li.entry[0] + 9 + 4, 0, 4); /* n_dims */
  rehash(&f);
  expect("n-dims-0.qiao", &f, "malformed", "malformed", "0 dimensions", "n_dims must be 1 to 4");
  free(f.p);
  f = tiny_model(VOCAB, 3, &li);
  set_le(&f, li.entry[4] + 8 + strlen("blk.0.attn_q.weight") + 8 + 16 + 4, 33, 4); /* block_bytes */
  rehash(&f);
  expect("descriptor-mismatch.qiao", &f, "malformed", "malformed", "quantization descriptor",
         "a q8_0 tensor whose descriptor says 33 bytes per block");
  free(f.p);
  f = minimal(&li);
  set_le(&f, li.offset[0] + 8, 4, 8); /* n_bytes */
  rehash(&f);
  expect("n-bytes.qiao", &f, "malformed", "malformed", "shape and dtype need 8",
         "n_bytes does not match shape (2) of f32");
  free(f.p);
  f = minimal(&li);
  set_le(&f, li.offset[0], 8, 8); /* offset 8 with alignment 64 */
  rehash(&f);
  expect("misaligned.qiao", &f, "malformed", "malformed", "misaligned",
         "a tensor offset that is not a multiple of alignment");
  free(f.p);
  f = tiny_model(VOCAB, 3, &li);
  set_le(&f, li.offset[1], 0, 8); /* output_norm over token_embd */
  rehash(&f);
  expect("overlap.qiao", &f, "malformed", "malformed", "overlaps", "two tensors share data bytes");
  free(f.p);
  f = minimal(&li);
  set_le(&f, li.offset[0], 64, 8);
  rehash(&f);
  expect("outside-data.qiao", &f, "malformed", "malformed", "outside the data section",
         "tensor data past data_size");
  free(f.p);
  f = tiny_model(VOCAB, 200, &li);
  set_le(&f, li.offset[4] + 8, 14, 8); /* n_bytes of the unknown type */
  rehash(&f);
  expect("unknown-type-size.qiao", &f, "malformed", "malformed", "shape and descriptor need",
         "a tensor of unknown dtype 200 whose n_bytes disagrees with its own descriptor");
  free(f.p);

  /* Opened, then refused by validation. */
  f = tiny_model(VOCAB, 3, &li);
  f.p[li.data[4]] ^= 0x01;
  expect("data-hash.qiao", &f, "ok", "malformed", "does not match the stored",
         "a data byte of blk.0.attn_q.weight changed: only the per-tensor hash catches it");
  free(f.p);
  f = tiny_model(VOCAB + 1, 3, NULL);
  expect("tokens-over-vocab.qiao", &f, "ok", "malformed", "more than model.vocab_size",
         "9 tokens with model.vocab_size 8");
  free(f.p);
  {
    buf kv = {0};
    uint64_t n_kv;
    tiny_kv(&kv, &n_kv, 4);
    file_spec spec = {1, 0, 0, 96, 64, n_kv, &kv, NULL, 0};
    f = build(&spec, NULL);
    expect("no-tensors.qiao", &f, "ok", "malformed", "tensors: none",
           "a vocabulary-only file is not a model");
    free(f.p);
    free(kv.p);
  }
  f = tiny_model(VOCAB, 200, NULL);
  expect("unknown-type-needed.qiao", &f, "ok", "unsupported", "element type 200",
         "1.1: blk.0.attn_q.weight has dtype 200, which a 1.0 reader does not know: the file "
         "opens, the model cannot run");
  free(f.p);
}

/* ---- XXH3-64 vectors ------------------------------------------------------ */

static void write_hash_vectors(void) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/xxh3-64.txt", out_dir);
  FILE *o = fopen(path, "w");
  if (o == NULL) {
    fprintf(stderr, "make_spec_tests: cannot write %s\n", path);
    exit(1);
  }
  fprintf(o, "# XXH3-64, seed 0, of the first LEN bytes of the sequence\n"
             "# byte[i] = (i * 7 + 3) mod 256 (i = 0, 1, 2, ...).\n"
             "# The lengths cover every input-size path of XXH3 (0, 1-3, 4-8, 9-16,\n"
             "# 17-128, 129-240, and longer inputs over several stripes and blocks).\n"
             "# LEN HASH (16 hex digits)\n");
  static const size_t lens[] = {0,   1,    2,    3,    4,    5,    8,    9,     16,    17,
                                32,  64,   100,  128,  129,  200,  240,  241,   255,   256,
                                512, 1000, 1024, 1025, 2048, 4095, 4096, 10000, 65536, 100000};
  uint8_t *bytes = malloc(100000);
  for (size_t i = 0; i < 100000; i++)
    bytes[i] = (uint8_t)(i * 7 + 3);
  for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
    fprintf(o, "%zu %016llx\n", lens[k], (unsigned long long)XXH3_64bits(bytes, lens[k]));
  free(bytes);
  fclose(o);
}

/* ---- Reference conversions (format.md §4.2) --------------------------------
 * Written from the specification, not from qiao's code: f16 and bf16 round
 * through double with nearbyint (round to nearest, ties to even). */

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint16_t ref_f16(float f) {
  uint16_t sign = (uint16_t)((bits_of(f) >> 16) & 0x8000u);
  if (isnan(f)) return (uint16_t)(sign | 0x7e00u);
  if (isinf(f)) return (uint16_t)(sign | 0x7c00u);
  double a = fabs((double)f);
  if (a < ldexp(1.0, -14)) /* subnormal results, in units of 2^-24 (may round up to 2^-14) */
    return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 24)));
  int e;
  frexp(a, &e);
  int exponent = e - 1;                               /* a = 1.m * 2^exponent */
  double m = nearbyint(ldexp(a, -exponent) * 1024.0); /* 1024..2048 */
  if (m == 2048.0) m = 1024.0, exponent++;
  if (exponent > 15) return (uint16_t)(sign | 0x7c00u);
  return (uint16_t)(sign | (uint16_t)((exponent + 15) << 10) | (uint16_t)(m - 1024.0));
}

static uint16_t ref_bf16(float f) {
  uint32_t u = bits_of(f);
  if (isnan(f)) return (uint16_t)((u >> 16) | 0x40u);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  if (isinf(f)) return (uint16_t)(sign | 0x7f80u);
  double a = fabs((double)f);
  if (a < ldexp(1.0, -126)) /* f32 subnormals, in units of 2^-133 */
    return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 133)));
  int e;
  frexp(a, &e);
  int exponent = e - 1;
  double m = nearbyint(ldexp(a, -exponent) * 128.0); /* 128..256 */
  if (m == 256.0) m = 128.0, exponent++;
  if (exponent > 127) return (uint16_t)(sign | 0x7f80u);
  return (uint16_t)(sign | (uint16_t)((exponent + 127) << 7) | (uint16_t)(m - 128.0));
}

static void ref_q8_0(const float *x, uint8_t *block) {
  float amax = 0.0f;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) amax = fabsf(x[j]); /* NaNs never compare greater */
  float d = amax / 127.0f;
  float id = d != 0.0f ? 1.0f / d : 0.0f;
  uint16_t h = ref_f16(d);
  block[0] = (uint8_t)h;
  block[1] = (uint8_t)(h >> 8);
  for (int j = 0; j < 32; j++) {
    float v = roundf(x[j] * id); /* halves away from zero */
    int q = isnan(v) ? 0 : v < -127.0f ? -127 : v > 127.0f ? 127 : (int)v;
    block[2 + j] = (uint8_t)(int8_t)q;
  }
}

static void ref_q4_0(const float *x, uint8_t *block) {
  float amax = 0.0f, m = 0.0f;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) amax = fabsf(x[j]), m = x[j]; /* the first of equal magnitudes */
  float d = m / -8.0f;
  float id = d != 0.0f ? 1.0f / d : 0.0f;
  uint16_t h = ref_f16(d);
  block[0] = (uint8_t)h;
  block[1] = (uint8_t)(h >> 8);
  int q[32];
  for (int j = 0; j < 32; j++) {
    float v = x[j] * id;
    v = v + 8.5f;
    q[j] = isnan(v) || v <= 0.0f ? 0 : v >= 15.0f ? 15 : (int)v; /* trunc */
  }
  for (int j = 0; j < 16; j++)
    block[2 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

static float lcg_float(uint32_t *state, float scale) {
  *state = *state * 1664525u + 1013904223u;
  return ((float)(*state >> 8) / (float)(1u << 24) - 0.5f) * scale;
}

static void put_block(FILE *o, const char *kind, const float *x, const uint8_t *block, int bytes) {
  fprintf(o, "%s", kind);
  for (int j = 0; j < 32; j++)
    fprintf(o, " %08x", bits_of(x[j]));
  fprintf(o, " =");
  for (int j = 0; j < bytes; j++)
    fprintf(o, " %02x", block[j]);
  fprintf(o, "\n");
}

/* E4M3 (format.md §4.1, 1.2): the value of a code from its fields, and the
 * code nearest to an f32 by searching all of them (ties: the even code;
 * beyond 448 and infinities: +-448; NaN: 0; the sign of x kept). */
static double ref_e4m3_value(unsigned q) {
  unsigned e = (q >> 3) & 15u, m = q & 7u;
  double v = e == 0 ? (m / 8.0) * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, (int)e - 7);
  return q & 0x80u ? -v : v;
}

static unsigned ref_e4m3(float x) {
  if (isnan(x)) return 0;
  unsigned sign = signbit(x) ? 0x80u : 0u, best = sign;
  if (isinf(x)) return sign | 0x7eu;
  double a = fabs((double)x), best_d = INFINITY;
  for (unsigned c = 0; c <= 0x7e; c++) { /* the non-negative codes, in order */
    double d = fabs(ref_e4m3_value(c) - a);
    if (d < best_d || (d == best_d && c % 2 == 0)) best_d = d, best = sign | c;
  }
  return best;
}

static void write_e4m3_vectors(FILE *o) {
  for (unsigned c = 0; c < 256; c++)
    if ((c & 0x7fu) != 0x7fu) fprintf(o, "e4m3v %02x %08x\n", c, bits_of((float)ref_e4m3_value(c)));
  /* every value, the midpoints between neighbours (ties) and the floats just
   * beside them, of both signs; then beyond the range and the special values */
  for (unsigned c = 0; c <= 0x7e; c++) {
    float v = (float)ref_e4m3_value(c);
    float mid = c < 0x7e ? (float)((ref_e4m3_value(c) + ref_e4m3_value(c + 1)) / 2) : 464.0f;
    const float xs[] = {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
    for (int i = 0; i < 4; i++) {
      fprintf(o, "e4m3 %08x %02x\n", bits_of(xs[i]), ref_e4m3(xs[i]));
      fprintf(o, "e4m3 %08x %02x\n", bits_of(-xs[i]), ref_e4m3(-xs[i]));
    }
  }
  const float specials[] = {448.5f,   480.0f,   1e30f,  INFINITY, -INFINITY, NAN,    -NAN,
                            0x1p-10f, 0x1p-11f, 1e-30f, -1e-30f,  0x1p-149f, 3.4e38f};
  for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
    fprintf(o, "e4m3 %08x %02x\n", bits_of(specials[i]), ref_e4m3(specials[i]));
}

static void write_conversion_vectors(void) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/conversions.txt", out_dir);
  FILE *o = fopen(path, "w");
  if (o == NULL) {
    fprintf(stderr, "make_spec_tests: cannot write %s\n", path);
    exit(1);
  }
  fprintf(o,
          "# The reference conversions of format.md §4.2. Every number is hex: the bits of\n"
          "# an f32 (little-endian when stored), of an f16 or bf16, or the bytes of a\n"
          "# block in file order.\n"
          "#   f16  F32 F16\n"
          "#   bf16 F32 BF16\n"
          "#   q8_0 32 x F32 = 34 bytes\n"
          "#   q4_0 32 x F32 = 18 bytes\n"
          "#   e4m3v CODE F32     (1.2) the value of an E4M3 code (not the NaNs 7f, ff)\n"
          "#   e4m3 F32 CODE      (1.2) the nearest E4M3 code (f8_e4m3_b128's q = e4m3(x / d))\n");
  static const uint32_t f16_cases[] = {0x3f800000,
                                       0xc0000000,
                                       0x00000000,
                                       0x80000000,
                                       0x477fe000 /* 65504 */,
                                       0x477fefff /* just below 65520 */,
                                       0x477ff000 /* 65520: rounds to infinity */,
                                       0x49742400 /* 1e6 */,
                                       0x7f800000,
                                       0xff800000,
                                       0x7fc00000,
                                       0xffc00001,
                                       0x38800000 /* 2^-14 */,
                                       0x33800000 /* 2^-24 */,
                                       0x33000000 /* 2^-25: tie, to 0 */,
                                       0x33400000 /* 1.5 * 2^-25 */,
                                       0x33c00000 /* 3 * 2^-25: tie, to 2 units */,
                                       0x3f801000 /* 1 + 2^-11: tie, to 1 */,
                                       0x3f803000 /* 1 + 3 * 2^-11: tie, up */,
                                       0x3f801001,
                                       0x3dcccccd /* 0.1 */,
                                       0x3eaaaaab /* 1/3 */,
                                       0x387fc000 /* below 2^-14 */,
                                       0x32ffffff /* just below 2^-25 */,
                                       0x0000ffff /* an f32 subnormal */};
  for (size_t i = 0; i < sizeof(f16_cases) / sizeof(f16_cases[0]); i++)
    fprintf(o, "f16 %08x %04x\n", f16_cases[i], ref_f16(float_of(f16_cases[i])));
  uint32_t state = 12345;
  for (int i = 0; i < 24; i++) {
    float f = lcg_float(&state, 200.0f);
    fprintf(o, "f16 %08x %04x\n", bits_of(f), ref_f16(f));
  }
  static const uint32_t bf16_cases[] = {0x3f800000,
                                        0x3f808000 /* tie, to even (1) */,
                                        0x3f818000 /* tie, up */,
                                        0x3f808001,
                                        0x7f7fffff /* rounds to infinity */,
                                        0x7f800000,
                                        0xff800000,
                                        0x7f800001 /* NaN */,
                                        0xffc00000,
                                        0x00008000 /* subnormal tie, to 0 */,
                                        0x00018000 /* subnormal tie, up */,
                                        0x80000000,
                                        0x3dcccccd,
                                        0xc2f6e979};
  for (size_t i = 0; i < sizeof(bf16_cases) / sizeof(bf16_cases[0]); i++)
    fprintf(o, "bf16 %08x %04x\n", bf16_cases[i], ref_bf16(float_of(bf16_cases[i])));
  for (int i = 0; i < 16; i++) {
    float f = lcg_float(&state, 1e4f);
    fprintf(o, "bf16 %08x %04x\n", bits_of(f), ref_bf16(f));
  }

  float x[32];
  uint8_t block[34];
  /* q8_0: zeros; d = 1 with halves (away from zero); a negative maximum;
   * tiny values (a subnormal f16 scale); random blocks. */
  memset(x, 0, sizeof(x));
  ref_q8_0(x, block);
  put_block(o, "q8_0", x, block, 34);
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j - 16) + 0.5f;
  x[0] = 127.0f;
  ref_q8_0(x, block);
  put_block(o, "q8_0", x, block, 34);
  for (int j = 0; j < 32; j++)
    x[j] = (float)j * 0.25f;
  x[7] = -100.0f;
  ref_q8_0(x, block);
  put_block(o, "q8_0", x, block, 34);
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j % 5) * 1e-7f;
  ref_q8_0(x, block);
  put_block(o, "q8_0", x, block, 34);
  for (int b = 0; b < 6; b++) {
    for (int j = 0; j < 32; j++)
      x[j] = lcg_float(&state, b % 2 ? 2.0f : 0.05f);
    ref_q8_0(x, block);
    put_block(o, "q8_0", x, block, 34);
  }
  /* q4_0: zeros; m = -8 (d = 1) at the rounding boundaries; equal magnitudes
   * of both signs (the first wins); a positive maximum; random blocks. */
  memset(x, 0, sizeof(x));
  ref_q4_0(x, block);
  put_block(o, "q4_0", x, block, 18);
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j % 16) - 7.5f;
  x[0] = -8.0f;
  ref_q4_0(x, block);
  put_block(o, "q4_0", x, block, 18);
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j % 7) * 0.5f - 1.0f;
  x[3] = -3.0f;
  x[9] = 3.0f;
  ref_q4_0(x, block);
  put_block(o, "q4_0", x, block, 18);
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j % 7) * 0.5f - 1.0f;
  x[3] = 3.0f;
  x[9] = -3.0f;
  ref_q4_0(x, block);
  put_block(o, "q4_0", x, block, 18);
  for (int b = 0; b < 6; b++) {
    for (int j = 0; j < 32; j++)
      x[j] = lcg_float(&state, b % 2 ? 3.0f : 0.02f);
    ref_q4_0(x, block);
    put_block(o, "q4_0", x, block, 18);
  }
  write_e4m3_vectors(o);
  fclose(o);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_spec_tests OUT_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  char path[4096];
  snprintf(path, sizeof(path), "%s/manifest.txt", out_dir);
  manifest = fopen(path, "w");
  if (manifest == NULL) {
    fprintf(stderr, "make_spec_tests: cannot write %s (does %s/files/ exist?)\n", path, out_dir);
    return 1;
  }
  fprintf(manifest,
          "# file | open | validate | qiao's message contains | why\n"
          "# open: what a reader does when it opens the file (ok, or refuses it as malformed or\n"
          "# unsupported); validate: the full check of format.md §9 (hashes, hyperparameters\n"
          "# against tensors, tokenizer). '-' : no message.\n");
  write_files();
  fclose(manifest);
  write_hash_vectors();
  write_conversion_vectors();
  return 0;
}
