/* The .qiao reader (docs/spec/format.md §2-6). Opening checks the header
 * hash, which covers the header, the metadata and the tensor table; tensor
 * hashes are kept for qiao_model_validate. Tensor data stays in the caller's
 * bytes (zero-copy). */
#include <stdlib.h>
#include <string.h>

#include "format/byte_reader.h"
#include "format/kv_codec.h"
#include "format/qiao_file.h"

typedef struct header {
  uint32_t major, minor, flags, header_size, alignment;
  uint64_t n_kv, n_tensors, kv_offset, table_offset, table_end, data_offset, data_size, hash;
} header;

static qiao_status *bad_header(const char *name, const char *field, uint64_t offset,
                               const char *problem) {
  return qiao__error(QIAO_MALFORMED, "%s: header %s: %s at byte offset %llu", name, field, problem,
                     (unsigned long long)offset);
}

static qiao_status *read_header(const uint8_t *d, uint64_t size, const char *name, header *h) {
  if (size < 4 || memcmp(d, QIAO__FILE_MAGIC, 4) != 0)
    return bad_header(name, "magic", 0, "not a .qiao file");
  if (size < QIAO__FILE_HEADER_SIZE)
    return qiao__error(QIAO_MALFORMED, "%s: header: file ends early at byte offset %llu", name,
                       (unsigned long long)size);
  h->major = (uint32_t)le(d + QIAO__H_MAJOR, 2);
  h->minor = (uint32_t)le(d + QIAO__H_MINOR, 2);
  if (h->major != QIAO__FILE_MAJOR)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: header version: .qiao version %u.%u is not supported (this reader "
                       "reads %u.x) at byte offset %u",
                       name, h->major, h->minor, QIAO__FILE_MAJOR, QIAO__H_MAJOR);
  h->flags = (uint32_t)le(d + QIAO__H_FLAGS, 4);
  if (h->flags & QIAO__FILE_REQUIRED_FLAGS)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: header flags: unknown required flags 0x%x at byte offset %u", name,
                       h->flags & QIAO__FILE_REQUIRED_FLAGS, QIAO__H_FLAGS);
  h->header_size = (uint32_t)le(d + QIAO__H_HEADER_SIZE, 4);
  h->alignment = (uint32_t)le(d + QIAO__H_ALIGNMENT, 4);
  h->n_kv = le(d + QIAO__H_N_KV, 8);
  h->n_tensors = le(d + QIAO__H_N_TENSORS, 8);
  h->kv_offset = le(d + QIAO__H_KV_OFFSET, 8);
  h->table_offset = le(d + QIAO__H_TABLE_OFFSET, 8);
  h->table_end = le(d + QIAO__H_TABLE_END, 8);
  h->data_offset = le(d + QIAO__H_DATA_OFFSET, 8);
  h->data_size = le(d + QIAO__H_DATA_SIZE, 8);
  h->hash = le(d + QIAO__H_HASH, 8);

  if (h->header_size < QIAO__FILE_HEADER_SIZE || h->header_size % 8 != 0)
    return bad_header(name, "header_size", QIAO__H_HEADER_SIZE, "must be a multiple of 8, >= 96");
  if (!qiao__is_pow2(h->alignment) || h->alignment < QIAO__FILE_MIN_ALIGNMENT ||
      h->alignment > QIAO__FILE_MAX_ALIGNMENT)
    return bad_header(name, "alignment", QIAO__H_ALIGNMENT, "not a power of two in [8, 1 MiB]");
  if (h->kv_offset < h->header_size || h->table_offset < h->kv_offset ||
      h->table_end < h->table_offset)
    return bad_header(name, "kv_offset/table_offset/table_end", QIAO__H_KV_OFFSET,
                      "sections out of order");
  if (h->table_end > size)
    return bad_header(name, "table_end", QIAO__H_TABLE_END, "past the end of the file");
  /* The hash first: everything below is then known to be what was written. */
  uint64_t computed = qiao__qiao_header_hash(d, h->table_end);
  if (computed != h->hash)
    return qiao__error(QIAO_MALFORMED,
                       "%s: header hash: stored %016llx, computed %016llx: the header, metadata "
                       "or tensor table is corrupt at byte offset %u",
                       name, (unsigned long long)h->hash, (unsigned long long)computed,
                       QIAO__H_HASH);
  if (h->data_offset < h->table_end || h->data_offset % QIAO__FILE_DATA_ALIGNMENT != 0 ||
      h->data_offset % h->alignment != 0)
    return bad_header(name, "data_offset", QIAO__H_DATA_OFFSET,
                      "must follow the table and be a multiple of 4096 and of the alignment");
  uint64_t end;
  if (!qiao__add_u64(h->data_offset, h->data_size, &end) || end != size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: header data_size: data_offset + data_size is not the file size %llu "
                       "(truncated or extended file) at byte offset %u",
                       name, (unsigned long long)size, QIAO__H_DATA_SIZE);
  if (h->n_kv > QIAO__MAX_KVS) return bad_header(name, "n_kv", QIAO__H_N_KV, "too many entries");
  if (h->n_tensors > QIAO__MAX_TENSORS)
    return bad_header(name, "n_tensors", QIAO__H_N_TENSORS, "too many tensors");
  return NULL;
}

static qiao_status *read_metadata(qiao_model *m, reader *r, const header *h) {
  r->pos = h->kv_offset;
  r->size = h->table_offset; /* the metadata must end where the table starts */
  qiao__raw_kv *kv = malloc(sizeof(*kv));
  if (kv == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_status *st = NULL;
  for (uint64_t i = 0; i < h->n_kv && st == NULL; i++) {
    memset(kv, 0, sizeof(*kv));
    st = qiao__read_raw_kv(r, kv);
    if (st == NULL) st = qiao__raw_kv_store(m, kv->key, kv, r->name);
    if (st && strncmp(qiao_status_message(st), r->name, strlen(r->name)) != 0)
      st = qiao__annotate(st, "%s (metadata entry at byte offset %llu)", r->name,
                          (unsigned long long)kv->offset);
  }
  free(kv);
  if (st == NULL && r->pos != h->table_offset)
    st = qiao__error(
        QIAO_MALFORMED, "%s: metadata: %llu bytes left before the tensor table at byte offset %llu",
        r->name, (unsigned long long)(h->table_offset - r->pos), (unsigned long long)r->pos);
  return st;
}

static bool str_is(qiao_string s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.data, lit, (size_t)s.len) == 0;
}

/* A descriptor string (scale_type, layout): 1..64 bytes of printable ASCII. */
static bool descriptor_string_ok(qiao_string s) {
  if (s.len == 0 || s.len > QIAO__MAX_DESCRIPTOR_LEN) return false;
  for (uint64_t i = 0; i < s.len; i++)
    if ((unsigned char)s.data[i] < 0x21 || (unsigned char)s.data[i] > 0x7e) return false;
  return true;
}

/* The quantization descriptor of the entry must match the dtype's, so that
 * a reader can tell exactly which layout it is looking at. For a dtype this
 * reader does not know (a later minor version's), the descriptor must be
 * well-formed and `*n_bytes` must agree with it; the tensor is then listed
 * but cannot be used. */
static qiao_status *check_descriptor(const reader *r, const char *tname, uint64_t entry,
                                     uint32_t dtype, uint32_t block_elems, uint32_t block_bytes,
                                     uint32_t bits, qiao_string scale, qiao_string layout) {
  const qiao_dtype_info *info = qiao_dtype_get_info((qiao_dtype)dtype);
  if (info == NULL) {
    if (!descriptor_string_ok(scale) || !descriptor_string_ok(layout))
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: dtype %u: scale_type and layout must be 1 to %u bytes "
                         "of printable ASCII at byte offset %llu",
                         r->name, tname, dtype, QIAO__MAX_DESCRIPTOR_LEN,
                         (unsigned long long)entry);
    if (block_elems == 0 || block_bytes == 0)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: dtype %u: block_elems and block_bytes must not be 0 at "
                         "byte offset %llu",
                         r->name, tname, dtype, (unsigned long long)entry);
    return NULL;
  }
  if (block_elems != info->block_elems || block_bytes != info->block_bytes || bits != info->bits ||
      !str_is(scale, info->scale_type) || !str_is(layout, info->name))
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor %s: quantization descriptor does not match dtype %s at byte "
                       "offset %llu",
                       r->name, tname, info->name, (unsigned long long)entry);
  return NULL;
}

/* n_bytes of a tensor of an unknown dtype, from its own descriptor. */
static qiao_status *descriptor_bytes(const char *tname, uint32_t n_dims, const uint64_t *shape,
                                     uint32_t block_elems, uint32_t block_bytes, uint64_t *out) {
  for (uint32_t d = 0; d < n_dims; d++)
    if (shape[d] == 0)
      return qiao__error(QIAO_MALFORMED, "tensor %s: dimension %u is zero", tname, d);
  uint64_t row = shape[n_dims - 1], bytes;
  if (row % block_elems != 0)
    return qiao__error(QIAO_MALFORMED,
                       "tensor %s: row of %llu elements is not a multiple of the block (%u)", tname,
                       (unsigned long long)row, block_elems);
  bool ok = qiao__mul_u64(row / block_elems, block_bytes, &bytes);
  for (uint32_t d = 0; ok && d + 1 < n_dims; d++)
    ok = qiao__mul_u64(bytes, shape[d], &bytes);
  if (!ok) return qiao__error(QIAO_MALFORMED, "tensor %s: size overflows", tname);
  *out = bytes;
  return NULL;
}

typedef struct placed {
  uint64_t offset, n_bytes, index;
} placed;

static int by_offset(const void *a, const void *b) {
  const placed *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static qiao_status *read_tensor(qiao_model *m, reader *r, const header *h, placed *out) {
  uint64_t entry = r->pos;
  qiao_string name;
  QIAO__TRY(read_string(r, "tensor name", &name));
  if (name.len == 0 || name.len > QIAO__MAX_TENSOR_NAME_LEN || !qiao__utf8_ok(name.data, name.len))
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor name: empty, longer than %u bytes, not UTF-8 or with a NUL byte "
                       "at byte offset %llu",
                       r->name, QIAO__MAX_TENSOR_NAME_LEN, (unsigned long long)entry);
  char tname[QIAO__MAX_TENSOR_NAME_LEN + 1];
  memcpy(tname, name.data, (size_t)name.len);
  tname[name.len] = '\0';
  uint32_t dtype, n_dims, block_elems, block_bytes, bits;
  uint64_t shape[QIAO_MAX_DIMS], offset, n_bytes, hash, extra;
  QIAO__TRY(read_u32(r, tname, &dtype));
  QIAO__TRY(read_u32(r, tname, &n_dims));
  if (n_dims < 1 || n_dims > QIAO_MAX_DIMS)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor %s: %u dimensions (expected 1 to 4) at byte offset %llu",
                       r->name, tname, n_dims, (unsigned long long)(r->pos - 4));
  for (uint32_t d = 0; d < n_dims; d++)
    QIAO__TRY(read_u64(r, tname, &shape[d]));
  QIAO__TRY(read_u32(r, tname, &block_elems));
  QIAO__TRY(read_u32(r, tname, &block_bytes));
  QIAO__TRY(read_u32(r, tname, &bits));
  qiao_string scale, layout;
  QIAO__TRY(read_string(r, tname, &scale));
  QIAO__TRY(read_string(r, tname, &layout));
  QIAO__TRY(read_u64(r, tname, &offset));
  QIAO__TRY(read_u64(r, tname, &n_bytes));
  QIAO__TRY(read_u64(r, tname, &hash));
  QIAO__TRY(read_u64(r, tname, &extra));
  const uint8_t *skip;
  QIAO__TRY(take(r, extra, tname, &skip)); /* fields of a newer minor version */
  QIAO__TRY(
      check_descriptor(r, tname, entry, dtype, block_elems, block_bytes, bits, scale, layout));
  qiao_status *st = NULL;
  if (offset % h->alignment != 0 || !qiao__range_ok(offset, n_bytes, h->data_size))
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor %s: data (%llu bytes at offset %llu) is misaligned or outside "
                       "the data section at byte offset %llu",
                       r->name, tname, (unsigned long long)n_bytes, (unsigned long long)offset,
                       (unsigned long long)entry);
  const uint8_t *data = r->data + h->data_offset + offset;
  if (qiao_dtype_get_info((qiao_dtype)dtype) == NULL) {
    uint64_t expected = 0;
    st = descriptor_bytes(tname, n_dims, shape, block_elems, block_bytes, &expected);
    if (st == NULL && expected != n_bytes)
      st = qiao__error(QIAO_MALFORMED,
                       "tensor %s: %llu bytes, but its shape and descriptor need %llu", tname,
                       (unsigned long long)n_bytes, (unsigned long long)expected);
    if (st == NULL)
      st = qiao__model_add_unknown_tensor(m, tname, dtype, layout.data, (size_t)layout.len, n_dims,
                                          shape, data, n_bytes);
  } else {
    st = qiao__model_add_tensor(m, tname, (qiao_dtype)dtype, n_dims, shape, data, n_bytes);
  }
  if (st)
    return qiao__annotate(st, "%s (table entry at byte offset %llu)", r->name,
                          (unsigned long long)entry);
  uint64_t index = qiao_model_tensor_count(m) - 1;
  qiao__tensor_origin *origin = qiao__model_tensor_origin(m, index);
  origin->offset = h->data_offset + offset;
  origin->hash = hash;
  origin->has_hash = true;
  *out = (placed){offset, n_bytes, index};
  return NULL;
}

static qiao_status *read_table(qiao_model *m, reader *r, const header *h) {
  r->pos = h->table_offset;
  r->size = h->table_end;
  /* Grows with the entries actually read: a lying count cannot allocate. */
  placed *ps = NULL;
  uint64_t cap = 0;
  qiao_status *st = NULL;
  for (uint64_t i = 0; i < h->n_tensors && st == NULL; i++) {
    if (i == cap) {
      cap = cap ? 2 * cap : 64;
      placed *grown = realloc(ps, (size_t)cap * sizeof(*ps));
      if (grown == NULL) {
        st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
        break;
      }
      ps = grown;
    }
    st = read_tensor(m, r, h, &ps[i]);
  }
  if (st == NULL && r->pos != h->table_end)
    st = qiao__error(QIAO_MALFORMED,
                     "%s: tensor table: %llu bytes left after the last entry at byte offset %llu",
                     r->name, (unsigned long long)(h->table_end - r->pos),
                     (unsigned long long)r->pos);
  if (st == NULL && h->n_tensors > 1) {
    qsort(ps, (size_t)h->n_tensors, sizeof(*ps), by_offset);
    for (uint64_t i = 1; i < h->n_tensors && st == NULL; i++)
      if (ps[i - 1].offset + ps[i - 1].n_bytes > ps[i].offset)
        st = qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: data overlaps tensor %s at byte offset %llu", r->name,
                         qiao_model_tensor_at(m, ps[i].index)->name,
                         qiao_model_tensor_at(m, ps[i - 1].index)->name,
                         (unsigned long long)(h->data_offset + ps[i].offset));
  }
  free(ps);
  return st;
}

qiao_status *qiao__import_qiao(qiao_model *model, const uint8_t *data, uint64_t size,
                               const char *name) {
  header h = {0};
  QIAO__TRY(read_header(data, size, name, &h));
  reader r = {data, size, 0, name};
  QIAO__TRY(read_metadata(model, &r, &h));
  QIAO__TRY(read_table(model, &r, &h));
  if (qiao_model_kv_find(model, "general.source_format") == NULL)
    QIAO__TRY(qiao__model_set_string(model, "general.source_format", "qiao", 4));
  return NULL;
}
