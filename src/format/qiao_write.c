/* The .qiao writer (layout in docs/spec/format.md §2-6). The header,
 * metadata and tensor table are built in memory; the tensors are streamed
 * after them; then the table is rewritten with each tensor's hash and the
 * header with the hash of it all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "format/model_write.h"
#include "format/qiao_file.h"

static void put_at(uint8_t *buf, uint64_t at, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    buf[at + (uint64_t)i] = (uint8_t)(v >> (8 * i));
}

static uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

static void write_table_entry(qiao__writer *m, const qiao__tensor_plan *p) {
  const qiao_tensor *t = p->src;
  const qiao_dtype_info *info = qiao_dtype_get_info(p->dtype);
  qiao__w_string(m, t->name, strlen(t->name));
  qiao__w_u32(m, (uint32_t)p->dtype);
  qiao__w_u32(m, t->n_dims);
  for (uint32_t d = 0; d < t->n_dims; d++)
    qiao__w_u64(m, t->shape[d]);
  qiao__w_u32(m, info->block_elems);
  qiao__w_u32(m, info->block_bytes);
  qiao__w_u32(m, info->bits);
  qiao__w_string(m, info->scale_type, strlen(info->scale_type));
  qiao__w_string(m, info->name, strlen(info->name));
  qiao__w_u64(m, p->offset);
  qiao__w_u64(m, p->n_bytes);
  qiao__w_u64(m, 0); /* hash, filled in after the data is written */
  qiao__w_u64(m, 0); /* extra bytes: none in 1.0 */
}

static qiao_status *build_meta(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                               qiao__writer *m, uint64_t *hash_pos) {
  bool add_source = qiao_model_kv_find(model, "general.source_format") == NULL;
  uint64_t n_kv = qiao_model_kv_count(model) + (add_source ? 1 : 0);
  qiao__w_zeros(m, QIAO__FILE_HEADER_SIZE);
  for (uint64_t i = 0; i < qiao_model_kv_count(model); i++) {
    const qiao_kv *kv = qiao_model_kv_at(model, i);
    qiao__w_string(m, kv->key, strlen(kv->key));
    qiao__w_kv_value(m, kv);
  }
  if (add_source) {
    const char *fmt = qiao_model_format(model);
    qiao_kv kv = {
        .key = "general.source_format", .type = QIAO_VALUE_STRING, .v.str = {fmt, strlen(fmt)}};
    qiao__w_string(m, kv.key, strlen(kv.key));
    qiao__w_kv_value(m, &kv);
  }
  uint64_t table_offset = m->pos;
  uint64_t data_size = 0;
  for (uint64_t i = 0; i < n; i++) {
    plans[i].offset = align_up(data_size, QIAO__FILE_ALIGNMENT);
    data_size = plans[i].offset + plans[i].n_bytes;
    write_table_entry(m, &plans[i]);
    hash_pos[i] = m->pos - 16;
  }
  uint64_t table_end = m->pos;
  if (m->error) return NULL; /* reported by the caller */
  uint8_t *h = m->buf;
  memcpy(h + QIAO__H_MAGIC, QIAO__FILE_MAGIC, 4);
  put_at(h, QIAO__H_MAJOR, QIAO__FILE_MAJOR, 2);
  /* 1.0 unless a tensor has a dtype of 1.1, 1.2 or 1.3 (format.md §4.1) */
  uint32_t minor = QIAO__FILE_MINOR;
  for (uint64_t i = 0; i < n; i++) {
    if (plans[i].dtype >= QIAO_DTYPE_Q4_K && minor < 1) minor = 1;
    if (plans[i].dtype == QIAO_DTYPE_F8_E4M3_B128 && minor < 2) minor = 2;
    if (plans[i].dtype >= QIAO_DTYPE_IQ4_NL) minor = 3;
  }
  put_at(h, QIAO__H_MINOR, minor, 2);
  put_at(h, QIAO__H_FLAGS, 0, 4);
  put_at(h, QIAO__H_HEADER_SIZE, QIAO__FILE_HEADER_SIZE, 4);
  put_at(h, QIAO__H_ALIGNMENT, QIAO__FILE_ALIGNMENT, 4);
  put_at(h, QIAO__H_N_KV, n_kv, 8);
  put_at(h, QIAO__H_N_TENSORS, n, 8);
  put_at(h, QIAO__H_KV_OFFSET, QIAO__FILE_HEADER_SIZE, 8);
  put_at(h, QIAO__H_TABLE_OFFSET, table_offset, 8);
  put_at(h, QIAO__H_TABLE_END, table_end, 8);
  put_at(h, QIAO__H_DATA_OFFSET, align_up(table_end, QIAO__FILE_DATA_ALIGNMENT), 8);
  put_at(h, QIAO__H_DATA_SIZE, data_size, 8);
  return NULL;
}

qiao_status *qiao__write_qiao(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                              qiao__writer *file, bool progress) {
  qiao__writer meta = {.path = file->path};
  uint64_t *hash_pos = calloc(n ? (size_t)n : 1, sizeof(*hash_pos));
  if (hash_pos == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_status *st = build_meta(model, plans, n, &meta, hash_pos);
  if (st == NULL && meta.error) {
    st = meta.error;
    meta.error = NULL;
  }
  if (st == NULL) {
    uint64_t table_end = meta.pos;
    uint64_t data_offset = (table_end + QIAO__FILE_DATA_ALIGNMENT - 1) / QIAO__FILE_DATA_ALIGNMENT *
                           QIAO__FILE_DATA_ALIGNMENT;
    qiao__w_bytes(file, meta.buf, meta.pos);
    st = qiao__write_tensors(model, file, plans, n, data_offset, progress);
    if (st == NULL && n == 0) qiao__w_zeros(file, data_offset - file->pos);
    if (st == NULL && file->error == NULL) {
      for (uint64_t i = 0; i < n; i++)
        put_at(meta.buf, hash_pos[i], plans[i].hash, 8);
      put_at(meta.buf, QIAO__H_HASH, qiao__qiao_header_hash(meta.buf, table_end), 8);
      if (fflush(file->file) != 0 || fseeko(file->file, 0, SEEK_SET) != 0 ||
          fwrite(meta.buf, 1, (size_t)table_end, file->file) != table_end)
        st = qiao__error(QIAO_IO, "%s: write failed: %s", file->path, strerror(errno));
    }
  }
  qiao__w_release(&meta);
  free(hash_pos);
  return st;
}
