/* The in-memory model: metadata entries and tensors with hash indexes for
 * fast lookup, the memory and file mappings it owns, and the builder calls
 * every importer uses. Opening (format detection) is in model_open.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "format/model_internal.h"

/* A block of memory owned by the model. Small allocations are carved from
 * shared arena blocks so that 150k token strings do not cost 150k mallocs.
 * Block data is 64-byte aligned: tensors built in memory (imports, random
 * bench weights) then meet the alignment a .qiao file gives mapped tensors,
 * so an engine uses them in place instead of copying. */
enum { BLOCK_ALIGN = 64 };

typedef struct mem_block {
  struct mem_block *next;
  uint64_t size, used;
  unsigned char *data; /* inside storage, aligned to BLOCK_ALIGN */
  unsigned char storage[];
} mem_block;

typedef struct mapping {
  void *addr;
  size_t size;
} mapping;

/* Open-addressing index from a name to position+1 (0 = empty slot). */
typedef struct name_index {
  uint32_t *slots;
  uint64_t capacity; /* a power of two, at least twice the entries */
} name_index;

struct qiao_model {
  char *path;
  char format[16];
  mem_block *arena;  /* current arena block (head of the list) */
  mem_block *blocks; /* large blocks */
  mapping *mappings;
  size_t n_mappings;
  qiao_kv **kvs;
  uint64_t n_kvs, cap_kvs;
  name_index kv_index;
  qiao_tensor **tensors;
  qiao__tensor_origin *origins; /* parallel to tensors */
  uint64_t n_tensors, cap_tensors;
  name_index tensor_index;
};

#define ARENA_BLOCK_SIZE (256u * 1024u)
#define ARENA_SMALL_LIMIT (16u * 1024u)

/* ---- Memory -------------------------------------------------------------- */

static mem_block *new_block(uint64_t size) {
  if (size > SIZE_MAX - sizeof(mem_block) - BLOCK_ALIGN) return NULL;
  mem_block *b = calloc(1, sizeof(mem_block) + (size_t)size + BLOCK_ALIGN - 1);
  if (b == NULL) return NULL;
  b->size = size;
  uintptr_t at = (uintptr_t)b->storage;
  b->data = b->storage + (BLOCK_ALIGN - at % BLOCK_ALIGN) % BLOCK_ALIGN;
  return b;
}

qiao_status *qiao__model_alloc(qiao_model *model, uint64_t size, void **out) {
  *out = NULL;
  if (size == 0) size = 1;
  uint64_t rounded = (size + 15u) & ~(uint64_t)15u;
  if (rounded < size)
    return qiao__error(QIAO_OUT_OF_MEMORY, "allocation of %llu bytes overflows",
                       (unsigned long long)size);
  if (rounded <= ARENA_SMALL_LIMIT) {
    if (model->arena == NULL || model->arena->size - model->arena->used < rounded) {
      mem_block *b = new_block(ARENA_BLOCK_SIZE);
      if (b == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
      b->next = model->arena;
      model->arena = b;
    }
    void *p = model->arena->data + model->arena->used;
    model->arena->used += rounded;
    *out = p;
    return NULL;
  }
  mem_block *b = new_block(rounded);
  if (b == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory allocating %llu bytes",
                       (unsigned long long)size);
  b->used = rounded;
  b->next = model->blocks;
  model->blocks = b;
  *out = b->data;
  return NULL;
}

static qiao_status *copy_bytes(qiao_model *model, const void *data, uint64_t len, char **out) {
  uint64_t n;
  if (!qiao__add_u64(len, 1, &n)) return qiao__error(QIAO_OUT_OF_MEMORY, "string too long");
  void *p;
  QIAO__TRY(qiao__model_alloc(model, n, &p));
  if (len) memcpy(p, data, (size_t)len);
  ((char *)p)[len] = '\0';
  *out = p;
  return NULL;
}

/* ---- Life cycle ---------------------------------------------------------- */

qiao_status *qiao__model_create(const char *path, const char *format, qiao_model **out) {
  qiao_model *m = calloc(1, sizeof(*m));
  if (m == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  m->path = strdup(path ? path : "");
  if (m->path == NULL) {
    free(m);
    return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  snprintf(m->format, sizeof(m->format), "%s", format ? format : "");
  *out = m;
  return NULL;
}

void qiao_model_close(qiao_model *model) {
  if (model == NULL) return;
  for (size_t i = 0; i < model->n_mappings; i++)
    if (model->mappings[i].size) munmap(model->mappings[i].addr, model->mappings[i].size);
  free(model->mappings);
  for (mem_block *b = model->arena; b;) {
    mem_block *next = b->next;
    free(b);
    b = next;
  }
  for (mem_block *b = model->blocks; b;) {
    mem_block *next = b->next;
    free(b);
    b = next;
  }
  free(model->kvs);
  free(model->kv_index.slots);
  free(model->tensors);
  free(model->origins);
  free(model->tensor_index.slots);
  free(model->path);
  free(model);
}

const char *qiao_model_format(const qiao_model *model) {
  return model->format;
}
const char *qiao_model_path(const qiao_model *model) {
  return model->path;
}

void qiao__model_set_format(qiao_model *model, const char *format) {
  snprintf(model->format, sizeof(model->format), "%s", format);
}

qiao_status *qiao__model_map_file(qiao_model *model, const char *path, const uint8_t **out_data,
                                  uint64_t *out_size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return qiao__error(errno == ENOENT ? QIAO_NOT_FOUND : QIAO_IO, "%s: cannot open: %s", path,
                       strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return qiao__error(QIAO_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: not a regular file", path);
  }
  mapping *grown = realloc(model->mappings, (model->n_mappings + 1) * sizeof(*grown));
  if (grown == NULL) {
    close(fd);
    return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  model->mappings = grown;
  uint64_t size = (uint64_t)st.st_size;
  void *addr = NULL;
  if (size > 0) {
    if (size > SIZE_MAX) {
      close(fd);
      return qiao__error(QIAO_LIMIT, "%s: too large to map", path);
    }
    addr = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      int e = errno;
      close(fd);
      return qiao__error(QIAO_IO, "%s: cannot map: %s", path, strerror(e));
    }
  }
  close(fd);
  model->mappings[model->n_mappings++] = (mapping){addr, (size_t)size};
  *out_data = addr;
  *out_size = size;
  return NULL;
}

void qiao__model_release_pages(const qiao_model *model, const void *data, uint64_t size) {
  static long page = 0;
  if (page == 0) page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  uintptr_t start = (uintptr_t)data, end = start + (uintptr_t)size;
  for (size_t i = 0; i < model->n_mappings; i++) {
    uintptr_t m0 = (uintptr_t)model->mappings[i].addr, m1 = m0 + model->mappings[i].size;
    if (start < m0 || end > m1) continue;
    /* only whole pages inside the range: neighbours may still be in use */
    uintptr_t a = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = end & ~((uintptr_t)page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
    return;
  }
}

/* ---- Name indexes ---------------------------------------------------------- */

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Finds the slot holding `name`, or the empty slot where it would go. */
static uint64_t index_probe(const name_index *ix, const char *name,
                            const char *(*name_at)(const void *, uint32_t), const void *owner) {
  uint64_t mask = ix->capacity - 1;
  for (uint64_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
    uint32_t s = ix->slots[i];
    if (s == 0 || strcmp(name_at(owner, s - 1), name) == 0) return i;
  }
}

/* Makes room for one more entry beside the `n_entries` already indexed. */
static qiao_status *index_grow(name_index *ix, uint64_t n_entries,
                               const char *(*name_at)(const void *, uint32_t), const void *owner) {
  if (ix->capacity >= 2 * (n_entries + 1)) return NULL;
  uint64_t cap = ix->capacity ? ix->capacity * 2 : 64;
  while (cap < 2 * (n_entries + 1))
    cap *= 2;
  name_index next = {calloc((size_t)cap, sizeof(uint32_t)), cap};
  if (next.slots == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  for (uint64_t i = 0; i < n_entries; i++) {
    uint64_t slot = index_probe(&next, name_at(owner, (uint32_t)i), name_at, owner);
    next.slots[slot] = (uint32_t)(i + 1);
  }
  free(ix->slots);
  *ix = next;
  return NULL;
}

static const char *kv_name_at(const void *owner, uint32_t i) {
  return ((const qiao_model *)owner)->kvs[i]->key;
}
static const char *tensor_name_at(const void *owner, uint32_t i) {
  return ((const qiao_model *)owner)->tensors[i]->name;
}

/* ---- Metadata ---------------------------------------------------------------- */

uint64_t qiao_model_kv_count(const qiao_model *model) {
  return model->n_kvs;
}

const qiao_kv *qiao_model_kv_at(const qiao_model *model, uint64_t index) {
  return index < model->n_kvs ? model->kvs[index] : NULL;
}

const qiao_kv *qiao_model_kv_find(const qiao_model *model, const char *key) {
  if (model->n_kvs == 0 || key == NULL) return NULL;
  uint32_t s = model->kv_index.slots[index_probe(&model->kv_index, key, kv_name_at, model)];
  return s ? model->kvs[s - 1] : NULL;
}

static size_t value_size(qiao_value_type t) {
  switch (t) {
  case QIAO_VALUE_U8:
  case QIAO_VALUE_I8:
  case QIAO_VALUE_BOOL: return 1;
  case QIAO_VALUE_U16:
  case QIAO_VALUE_I16: return 2;
  case QIAO_VALUE_U32:
  case QIAO_VALUE_I32:
  case QIAO_VALUE_F32: return 4;
  case QIAO_VALUE_U64:
  case QIAO_VALUE_I64:
  case QIAO_VALUE_F64: return 8;
  case QIAO_VALUE_STRING: return sizeof(qiao_string);
  case QIAO_VALUE_ARRAY: return 0;
  }
  return 0;
}

size_t qiao__value_size(qiao_value_type type) {
  return value_size(type);
}

const char *qiao__value_type_name(qiao_value_type type) {
  static const char *names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return (unsigned)type <= QIAO_VALUE_F64 ? names[type] : "invalid";
}

/* Appends a new entry with a copied key; the caller fills in the value. */
static qiao_status *new_kv(qiao_model *model, const char *key, qiao_kv **out) {
  *out = NULL;
  size_t len = key ? strlen(key) : 0;
  if (len == 0) return qiao__error(QIAO_MALFORMED, "metadata key is empty");
  if (len > QIAO__MAX_KEY_LEN)
    return qiao__error(QIAO_MALFORMED, "metadata key '%.40s...' is longer than %u bytes", key,
                       QIAO__MAX_KEY_LEN);
  if (qiao_model_kv_find(model, key) != NULL)
    return qiao__error(QIAO_MALFORMED, "metadata key %s: duplicate", key);
  if (model->n_kvs >= QIAO__MAX_KVS)
    return qiao__error(QIAO_LIMIT, "more than %u metadata entries", QIAO__MAX_KVS);
  if (model->n_kvs == model->cap_kvs) {
    uint64_t cap = model->cap_kvs ? model->cap_kvs * 2 : 64;
    qiao_kv **grown = realloc(model->kvs, (size_t)cap * sizeof(*grown));
    if (grown == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    model->kvs = grown;
    model->cap_kvs = cap;
  }
  QIAO__TRY(index_grow(&model->kv_index, model->n_kvs, kv_name_at, model));
  qiao_kv *kv;
  char *key_copy;
  QIAO__TRY(qiao__model_alloc(model, sizeof(*kv), (void **)&kv));
  QIAO__TRY(copy_bytes(model, key, len, &key_copy));
  kv->key = key_copy;
  model->kvs[model->n_kvs] = kv;
  uint64_t slot = index_probe(&model->kv_index, key, kv_name_at, model);
  model->kv_index.slots[slot] = (uint32_t)(model->n_kvs + 1);
  model->n_kvs++;
  *out = kv;
  return NULL;
}

static qiao_status *set_scalar(qiao_model *model, const char *key, qiao_value_type type,
                               qiao_kv value) {
  qiao_kv *kv;
  QIAO__TRY(new_kv(model, key, &kv));
  kv->type = type;
  kv->v = value.v;
  return NULL;
}

qiao_status *qiao__model_set_u32(qiao_model *model, const char *key, uint32_t value) {
  return set_scalar(model, key, QIAO_VALUE_U32, (qiao_kv){.v.u = value});
}
qiao_status *qiao__model_set_i32(qiao_model *model, const char *key, int32_t value) {
  return set_scalar(model, key, QIAO_VALUE_I32, (qiao_kv){.v.i = value});
}
qiao_status *qiao__model_set_u64(qiao_model *model, const char *key, uint64_t value) {
  return set_scalar(model, key, QIAO_VALUE_U64, (qiao_kv){.v.u = value});
}
qiao_status *qiao__model_set_f32(qiao_model *model, const char *key, float value) {
  return set_scalar(model, key, QIAO_VALUE_F32, (qiao_kv){.v.f = value});
}
qiao_status *qiao__model_set_bool(qiao_model *model, const char *key, bool value) {
  return set_scalar(model, key, QIAO_VALUE_BOOL, (qiao_kv){.v.b = value});
}

qiao_status *qiao__model_set_string(qiao_model *model, const char *key, const char *data,
                                    uint64_t len) {
  if (len > QIAO__MAX_STRING_LEN)
    return qiao__error(QIAO_LIMIT, "metadata key %s: string of %llu bytes is too long", key,
                       (unsigned long long)len);
  qiao_kv *kv;
  QIAO__TRY(new_kv(model, key, &kv));
  char *copy;
  QIAO__TRY(copy_bytes(model, data, len, &copy));
  kv->type = QIAO_VALUE_STRING;
  kv->v.str = (qiao_string){copy, len};
  return NULL;
}

qiao_status *qiao__model_set_array(qiao_model *model, const char *key, qiao_value_type elem_type,
                                   uint64_t n, const void *elems) {
  size_t esize = value_size(elem_type);
  if (esize == 0)
    return qiao__error(QIAO_MALFORMED, "metadata key %s: arrays of %s are not supported", key,
                       qiao__value_type_name(elem_type));
  if (n > QIAO__MAX_ARRAY_LEN)
    return qiao__error(QIAO_LIMIT, "metadata key %s: array of %llu elements is too long", key,
                       (unsigned long long)n);
  if (n > 0 && elems == NULL)
    return qiao__error(QIAO_INTERNAL, "metadata key %s: array without elements", key);
  uint64_t bytes = n * esize; /* n and esize are bounded: no overflow */
  void *copy;
  QIAO__TRY(qiao__model_alloc(model, bytes, &copy));
  if (elem_type == QIAO_VALUE_STRING) {
    /* All string bytes in one block, each NUL-terminated. */
    const qiao_string *src = elems;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
      if (src[i].len > QIAO__MAX_STRING_LEN || (src[i].len > 0 && src[i].data == NULL))
        return qiao__error(QIAO_LIMIT, "metadata key %s: element %llu: string too long", key,
                           (unsigned long long)i);
      if (!qiao__add_u64(total, src[i].len + 1, &total))
        return qiao__error(QIAO_LIMIT, "metadata key %s: strings too long", key);
    }
    char *pool;
    QIAO__TRY(qiao__model_alloc(model, total, (void **)&pool));
    qiao_string *dst = copy;
    for (uint64_t i = 0; i < n; i++) {
      if (src[i].len) memcpy(pool, src[i].data, (size_t)src[i].len);
      pool[src[i].len] = '\0';
      dst[i] = (qiao_string){pool, src[i].len};
      pool += src[i].len + 1;
    }
  } else if (n > 0) {
    memcpy(copy, elems, (size_t)bytes);
  }
  qiao_kv *kv;
  QIAO__TRY(new_kv(model, key, &kv));
  kv->type = QIAO_VALUE_ARRAY;
  kv->elem_type = elem_type;
  kv->array_len = n;
  kv->v.array = copy;
  return NULL;
}

qiao_status *qiao__model_set_kv(qiao_model *model, const qiao_kv *kv) {
  switch (kv->type) {
  case QIAO_VALUE_STRING:
    return qiao__model_set_string(model, kv->key, kv->v.str.data, kv->v.str.len);
  case QIAO_VALUE_ARRAY:
    return qiao__model_set_array(model, kv->key, kv->elem_type, kv->array_len, kv->v.array);
  default:
    if (value_size(kv->type) == 0)
      return qiao__error(QIAO_MALFORMED, "metadata key %s: invalid type %d", kv->key,
                         (int)kv->type);
    return set_scalar(model, kv->key, kv->type, *kv);
  }
}

/* ---- Typed getters -------------------------------------------------------- */

static qiao_status *find_kv(const qiao_model *model, const char *key, const qiao_kv **out) {
  const qiao_kv *kv = qiao_model_kv_find(model, key);
  *out = kv;
  if (kv == NULL) return qiao__error(QIAO_NOT_FOUND, "metadata key %s: missing", key);
  *out = kv;
  return NULL;
}

bool qiao__kv_is_unsigned(qiao_value_type t) {
  return t == QIAO_VALUE_U8 || t == QIAO_VALUE_U16 || t == QIAO_VALUE_U32 || t == QIAO_VALUE_U64;
}
bool qiao__kv_is_signed(qiao_value_type t) {
  return t == QIAO_VALUE_I8 || t == QIAO_VALUE_I16 || t == QIAO_VALUE_I32 || t == QIAO_VALUE_I64;
}

qiao_status *qiao_model_get_u32(const qiao_model *model, const char *key, uint32_t *out) {
  const qiao_kv *kv;
  QIAO__TRY(find_kv(model, key, &kv));
  if (qiao__kv_is_unsigned(kv->type) && kv->v.u <= UINT32_MAX) {
    *out = (uint32_t)kv->v.u;
    return NULL;
  }
  if (qiao__kv_is_signed(kv->type) && kv->v.i >= 0 && kv->v.i <= (int64_t)UINT32_MAX) {
    *out = (uint32_t)kv->v.i;
    return NULL;
  }
  if (qiao__kv_is_unsigned(kv->type) || qiao__kv_is_signed(kv->type))
    return qiao__error(QIAO_MALFORMED, "metadata key %s: value out of range for u32", key);
  return qiao__error(QIAO_MALFORMED, "metadata key %s: expected an integer, found %s", key,
                     qiao__value_type_name(kv->type));
}

qiao_status *qiao_model_get_f32(const qiao_model *model, const char *key, float *out) {
  const qiao_kv *kv;
  QIAO__TRY(find_kv(model, key, &kv));
  if (kv->type == QIAO_VALUE_F32 || kv->type == QIAO_VALUE_F64)
    *out = (float)kv->v.f;
  else if (qiao__kv_is_unsigned(kv->type))
    *out = (float)kv->v.u;
  else if (qiao__kv_is_signed(kv->type))
    *out = (float)kv->v.i;
  else
    return qiao__error(QIAO_MALFORMED, "metadata key %s: expected a number, found %s", key,
                       qiao__value_type_name(kv->type));
  return NULL;
}

qiao_status *qiao_model_get_bool(const qiao_model *model, const char *key, bool *out) {
  const qiao_kv *kv;
  QIAO__TRY(find_kv(model, key, &kv));
  if (kv->type != QIAO_VALUE_BOOL)
    return qiao__error(QIAO_MALFORMED, "metadata key %s: expected a bool, found %s", key,
                       qiao__value_type_name(kv->type));
  *out = kv->v.b;
  return NULL;
}

qiao_status *qiao_model_get_string(const qiao_model *model, const char *key, qiao_string *out) {
  const qiao_kv *kv;
  QIAO__TRY(find_kv(model, key, &kv));
  if (kv->type != QIAO_VALUE_STRING)
    return qiao__error(QIAO_MALFORMED, "metadata key %s: expected a string, found %s", key,
                       qiao__value_type_name(kv->type));
  *out = kv->v.str;
  return NULL;
}

/* ---- Tensors -------------------------------------------------------------- */

uint64_t qiao_model_tensor_count(const qiao_model *model) {
  return model->n_tensors;
}

const qiao_tensor *qiao_model_tensor_at(const qiao_model *model, uint64_t index) {
  return index < model->n_tensors ? model->tensors[index] : NULL;
}

static uint64_t tensor_lookup(const qiao_model *model, const char *name) {
  if (model->n_tensors == 0 || name == NULL) return UINT64_MAX;
  uint32_t s =
      model->tensor_index.slots[index_probe(&model->tensor_index, name, tensor_name_at, model)];
  return s ? s - 1 : UINT64_MAX;
}

uint64_t qiao__model_tensor_index(const qiao_model *model, const char *name) {
  return tensor_lookup(model, name);
}

const qiao_tensor *qiao_model_tensor_find(const qiao_model *model, const char *name) {
  uint64_t i = tensor_lookup(model, name);
  return i == UINT64_MAX ? NULL : model->tensors[i];
}

qiao_status *qiao__tensor_bytes(qiao_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                                uint64_t *out_bytes) {
  if (n_dims < 1 || n_dims > QIAO_MAX_DIMS)
    return qiao__error(QIAO_MALFORMED, "%u dimensions (expected 1 to %d)", n_dims, QIAO_MAX_DIMS);
  const qiao_dtype_info *info = qiao_dtype_get_info(dtype);
  if (info == NULL) return qiao__error(QIAO_MALFORMED, "invalid dtype %d", (int)dtype);
  for (uint32_t d = 0; d < n_dims; d++)
    if (shape[d] == 0) return qiao__error(QIAO_MALFORMED, "dimension %u is zero", d);
  uint64_t bytes;
  QIAO__TRY(qiao_dtype_row_bytes(dtype, shape[n_dims - 1], &bytes));
  for (uint32_t d = 0; d + 1 < n_dims; d++)
    if (!qiao__mul_u64(bytes, shape[d], &bytes))
      return qiao__error(QIAO_MALFORMED, "size of the shape overflows");
  *out_bytes = bytes;
  return NULL;
}

/* Keys and tensor names are UTF-8: no overlong forms, no surrogates, nothing
 * above U+10FFFF, no NUL. */
bool qiao__utf8_ok(const char *s, uint64_t len) {
  const uint8_t *p = (const uint8_t *)s;
  for (uint64_t i = 0; i < len;) {
    uint8_t c = p[i];
    if (c == 0) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    uint32_t n, cp, min;
    if ((c & 0xe0) == 0xc0)
      n = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
      n = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
      n = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (len - i <= n) return false;
    for (uint32_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

static qiao_status *check_tensor_name(const qiao_model *model, const char *name, size_t *out_len) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0) return qiao__error(QIAO_MALFORMED, "tensor name is empty");
  if (len > QIAO__MAX_TENSOR_NAME_LEN)
    return qiao__error(QIAO_MALFORMED, "tensor name '%.40s...' is longer than %u bytes", name,
                       QIAO__MAX_TENSOR_NAME_LEN);
  if (!qiao__utf8_ok(name, len))
    return qiao__error(QIAO_MALFORMED, "tensor name '%.40s': not UTF-8", name);
  if (tensor_lookup(model, name) != UINT64_MAX)
    return qiao__error(QIAO_MALFORMED, "tensor %s: duplicate name", name);
  if (model->n_tensors >= QIAO__MAX_TENSORS)
    return qiao__error(QIAO_LIMIT, "more than %u tensors", QIAO__MAX_TENSORS);
  *out_len = len;
  return NULL;
}

/* Appends a tensor whose fields were checked; `layout` is copied. */
static qiao_status *insert_tensor(qiao_model *model, const char *name, size_t name_len,
                                  const qiao_tensor *fields, const char *layout,
                                  size_t layout_len) {
  if (model->n_tensors == model->cap_tensors) {
    uint64_t cap = model->cap_tensors ? model->cap_tensors * 2 : 64;
    qiao_tensor **grown = realloc(model->tensors, (size_t)cap * sizeof(*grown));
    if (grown == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    model->tensors = grown;
    qiao__tensor_origin *grown_o = realloc(model->origins, (size_t)cap * sizeof(*grown_o));
    if (grown_o == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    model->origins = grown_o;
    model->cap_tensors = cap;
  }
  QIAO__TRY(index_grow(&model->tensor_index, model->n_tensors, tensor_name_at, model));
  qiao_tensor *t;
  char *name_copy = NULL, *layout_copy = NULL;
  QIAO__TRY(qiao__model_alloc(model, sizeof(*t), (void **)&t));
  QIAO__TRY(copy_bytes(model, name, name_len, &name_copy));
  QIAO__TRY(copy_bytes(model, layout, layout_len, &layout_copy));
  *t = *fields;
  t->name = name_copy;
  t->layout = layout_copy;
  model->tensors[model->n_tensors] = t;
  model->origins[model->n_tensors] = (qiao__tensor_origin){0};
  uint64_t slot = index_probe(&model->tensor_index, name, tensor_name_at, model);
  model->tensor_index.slots[slot] = (uint32_t)(model->n_tensors + 1);
  model->n_tensors++;
  return NULL;
}

static qiao_tensor tensor_fields(qiao_dtype dtype, uint32_t stored, uint32_t n_dims,
                                 const uint64_t *shape, const void *data, uint64_t n_bytes) {
  qiao_tensor t = {
      .dtype = dtype, .stored_dtype = stored, .n_dims = n_dims, .n_bytes = n_bytes, .data = data};
  for (uint32_t d = 0; d < n_dims; d++)
    t.shape[d] = shape[d];
  return t;
}

qiao_status *qiao__model_add_tensor(qiao_model *model, const char *name, qiao_dtype dtype,
                                    uint32_t n_dims, const uint64_t *shape, const void *data,
                                    uint64_t n_bytes) {
  size_t len = 0;
  QIAO__TRY(check_tensor_name(model, name, &len));
  uint64_t expected = 0;
  qiao_status *st = qiao__tensor_bytes(dtype, n_dims, shape, &expected);
  if (st) return qiao__annotate(st, "tensor %s", name);
  if (expected != n_bytes)
    return qiao__error(QIAO_MALFORMED, "tensor %s: %llu bytes, but its shape and dtype need %llu",
                       name, (unsigned long long)n_bytes, (unsigned long long)expected);
  if (data == NULL) return qiao__error(QIAO_INTERNAL, "tensor %s: no data", name);
  const char *layout = qiao_dtype_get_info(dtype)->name;
  qiao_tensor fields = tensor_fields(dtype, (uint32_t)dtype, n_dims, shape, data, n_bytes);
  return insert_tensor(model, name, len, &fields, layout, strlen(layout));
}

qiao_status *qiao__model_add_unknown_tensor(qiao_model *model, const char *name,
                                            uint32_t stored_dtype, const char *layout,
                                            size_t layout_len, uint32_t n_dims,
                                            const uint64_t *shape, const void *data,
                                            uint64_t n_bytes) {
  size_t len = 0;
  QIAO__TRY(check_tensor_name(model, name, &len));
  if (n_dims < 1 || n_dims > QIAO_MAX_DIMS)
    return qiao__error(QIAO_MALFORMED, "tensor %s: %u dimensions (expected 1 to %d)", name, n_dims,
                       QIAO_MAX_DIMS);
  if (data == NULL) return qiao__error(QIAO_INTERNAL, "tensor %s: no data", name);
  qiao_tensor fields =
      tensor_fields(QIAO_DTYPE_UNKNOWN, stored_dtype, n_dims, shape, data, n_bytes);
  return insert_tensor(model, name, len, &fields, layout, layout_len);
}

qiao_status *qiao_model_tensor_check(const qiao_model *model, const qiao_tensor *t) {
  if (qiao_dtype_get_info(t->dtype) != NULL) return NULL;
  return qiao__error(QIAO_UNSUPPORTED,
                     "%s: tensor %s: element type %u (layout '%s') is not supported by this "
                     "version of qiao (it knows the element types of .qiao 1.3)",
                     qiao_model_path(model), t->name, t->stored_dtype, t->layout ? t->layout : "");
}

qiao__tensor_origin *qiao__model_tensor_origin(const qiao_model *model, uint64_t index) {
  return index < model->n_tensors ? &model->origins[index] : NULL;
}
