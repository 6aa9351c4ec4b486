/* The keys file: parsing, checks, and the constant-time key lookup. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status_internal.h"

/* A keys file is small; anything bigger is a mistake (or an attack). */
#define KEYS_FILE_MAX (16u << 20)

typedef struct key_entry {
  unsigned char key[SERVE_KEY_MAX]; /* zero-padded: every check reads all of it */
  size_t len;
  size_t tenant; /* index into tenants */
  uint32_t line;
} key_entry;

typedef struct tenant_entry {
  char name[SERVE_TENANT_MAX + 1];
  qiao_tenant_limits limits;
  uint32_t limits_line; /* the line that gave its limits; 0: none did */
} tenant_entry;

struct serve_keys {
  key_entry *keys;
  size_t n_keys, cap_keys;
  tenant_entry *tenants;
  size_t n_tenants, cap_tenants;
};

void serve_keys_destroy(serve_keys *k) {
  if (k == NULL) return;
  if (k->keys != NULL) memset(k->keys, 0, k->cap_keys * sizeof(*k->keys)); /* no secrets left */
  free(k->keys);
  free(k->tenants);
  free(k);
}

size_t serve_keys_tenant_count(const serve_keys *k) {
  return k->n_tenants;
}

const char *serve_keys_tenant(const serve_keys *k, size_t i, qiao_tenant_limits *out_limits) {
  if (out_limits != NULL) *out_limits = k->tenants[i].limits;
  return k->tenants[i].name;
}

/* Grows an array of `size`-byte items to hold one more. */
static bool grow(void **items, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return true;
  size_t new_cap = *cap ? *cap * 2 : 16;
  void *p = realloc(*items, new_cap * size);
  if (p == NULL) return false;
  *items = p;
  *cap = new_cap;
  return true;
}

static bool is_tenant_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.' || c == ':' || c == '@';
}

/* Splits the next word (spaces or tabs between words) off *p. */
static bool next_word(char **p, char **word, size_t *len) {
  char *s = *p;
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s == '\0') return false;
  char *e = s;
  while (*e != '\0' && *e != ' ' && *e != '\t')
    e++;
  *word = s;
  *len = (size_t)(e - s);
  *p = e;
  return true;
}

/* "name=N": a decimal number in [0, max]. */
static bool parse_number(const char *s, size_t len, uint64_t max, uint64_t *out) {
  if (len == 0 || len > 20) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

static qiao_status *parse_option(const char *path, uint32_t line, const char *w, size_t len,
                                 qiao_tenant_limits *limits, unsigned *seen) {
  static const struct {
    const char *name;
    uint64_t max;
  } options[] = {{"max_running", UINT32_MAX},
                 {"max_queued", UINT32_MAX},
                 {"tpm", UINT64_MAX},
                 {"weight", 1000000}};
  const char *eq = memchr(w, '=', len);
  size_t name_len = eq ? (size_t)(eq - w) : len;
  for (unsigned o = 0; o < sizeof(options) / sizeof(options[0]); o++) {
    if (eq == NULL || strlen(options[o].name) != name_len ||
        memcmp(options[o].name, w, name_len) != 0)
      continue;
    if (*seen & (1u << o))
      return qiao__error(QIAO_MALFORMED, "keys file %s line %u: %s is given twice", path, line,
                         options[o].name);
    *seen |= 1u << o;
    uint64_t v = 0;
    if (!parse_number(eq + 1, len - name_len - 1, options[o].max, &v) || (o == 3 && v == 0))
      return qiao__error(
          QIAO_MALFORMED, "keys file %s line %u: %s must be a whole number in [%u, %llu]", path,
          line, options[o].name, o == 3 ? 1u : 0u, (unsigned long long)options[o].max);
    switch (o) {
    case 0: limits->max_running = (uint32_t)v; break;
    case 1: limits->max_queued = (uint32_t)v; break;
    case 2: limits->tokens_per_minute = v; break;
    default: limits->weight = (uint32_t)v; break;
    }
    return NULL;
  }
  return qiao__error(QIAO_MALFORMED,
                     "keys file %s line %u: unknown option '%.*s' (expected max_running=N, "
                     "max_queued=N, tpm=N or weight=N)",
                     path, line, (int)(len > 64 ? 64 : len), w);
}

/* One non-blank, non-comment line: KEY TENANT [OPTION=N]... */
static qiao_status *parse_line(serve_keys *k, const char *path, uint32_t line, char *text) {
  char *p = text, *key = NULL, *tenant = NULL, *w = NULL;
  size_t key_len = 0, tenant_len = 0, len = 0;
  next_word(&p, &key, &key_len);
  if (!next_word(&p, &tenant, &tenant_len))
    return qiao__error(QIAO_MALFORMED, "keys file %s line %u: expected 'KEY TENANT [OPTION=N]...'",
                       path, line);
  if (key_len > SERVE_KEY_MAX)
    return qiao__error(QIAO_MALFORMED, "keys file %s line %u: the key is longer than %d bytes",
                       path, line, SERVE_KEY_MAX);
  for (size_t i = 0; i < key_len; i++)
    if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
      return qiao__error(QIAO_MALFORMED,
                         "keys file %s line %u: the key must be printable ASCII without spaces",
                         path, line);
  if (tenant_len > SERVE_TENANT_MAX)
    return qiao__error(QIAO_MALFORMED,
                       "keys file %s line %u: the tenant name is longer than %d bytes", path, line,
                       SERVE_TENANT_MAX);
  for (size_t i = 0; i < tenant_len; i++)
    if (!is_tenant_char(tenant[i]))
      return qiao__error(QIAO_MALFORMED,
                         "keys file %s line %u: tenant names use letters, digits and _ - . : @",
                         path, line);

  qiao_tenant_limits limits = qiao_tenant_default_limits();
  unsigned seen = 0;
  while (next_word(&p, &w, &len))
    QIAO__TRY(parse_option(path, line, w, len, &limits, &seen));

  for (size_t i = 0; i < k->n_keys; i++)
    if (k->keys[i].len == key_len && memcmp(k->keys[i].key, key, key_len) == 0)
      return qiao__error(QIAO_MALFORMED, "keys file %s line %u: duplicate key (also on line %u)",
                         path, line, k->keys[i].line);

  size_t t = 0;
  while (t < k->n_tenants && !(strlen(k->tenants[t].name) == tenant_len &&
                               memcmp(k->tenants[t].name, tenant, tenant_len) == 0))
    t++;
  if (t == k->n_tenants) {
    if (!grow((void **)&k->tenants, &k->cap_tenants, k->n_tenants, sizeof(*k->tenants)))
      return qiao__error(QIAO_OUT_OF_MEMORY, "keys file %s: out of memory", path);
    memset(&k->tenants[t], 0, sizeof(k->tenants[t]));
    memcpy(k->tenants[t].name, tenant, tenant_len);
    k->tenants[t].limits = qiao_tenant_default_limits(); /* until a line gives its limits */
    k->n_tenants++;
  }
  if (seen != 0) {
    if (k->tenants[t].limits_line != 0)
      return qiao__error(QIAO_MALFORMED,
                         "keys file %s line %u: tenant %s already has limits (line %u); give them "
                         "on one line",
                         path, line, k->tenants[t].name, k->tenants[t].limits_line);
    k->tenants[t].limits = limits;
    k->tenants[t].limits_line = line;
  }

  if (!grow((void **)&k->keys, &k->cap_keys, k->n_keys, sizeof(*k->keys)))
    return qiao__error(QIAO_OUT_OF_MEMORY, "keys file %s: out of memory", path);
  key_entry *e = &k->keys[k->n_keys++];
  memset(e, 0, sizeof(*e));
  memcpy(e->key, key, key_len);
  e->len = key_len;
  e->tenant = t;
  e->line = line;
  return NULL;
}

static qiao_status *read_file(const char *path, char **out, size_t *out_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return qiao__error(QIAO_IO, "keys file %s: %s", path, strerror(errno));
  struct stat st;
  qiao_status *s = NULL;
  if (fstat(fd, &st) != 0) {
    s = qiao__error(QIAO_IO, "keys file %s: %s", path, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    s = qiao__error(QIAO_INVALID_ARGUMENT, "keys file %s is not a regular file", path);
  } else if ((st.st_mode & 077) != 0) {
    s = qiao__error(QIAO_INVALID_ARGUMENT,
                    "keys file %s is accessible by group or others (chmod 600 %s)", path, path);
  } else if (st.st_size > (off_t)KEYS_FILE_MAX) {
    s = qiao__error(QIAO_LIMIT, "keys file %s is larger than %u MiB", path, KEYS_FILE_MAX >> 20);
  }
  char *buf = NULL;
  size_t n = 0;
  if (s == NULL && (buf = malloc(KEYS_FILE_MAX + 1)) == NULL)
    s = qiao__error(QIAO_OUT_OF_MEMORY, "keys file %s: out of memory", path);
  while (s == NULL) { /* read to the end, never past the limit (the file may grow) */
    ssize_t got = read(fd, buf + n, KEYS_FILE_MAX + 1 - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) s = qiao__error(QIAO_IO, "keys file %s: %s", path, strerror(errno));
    if (got <= 0) break;
    n += (size_t)got;
    if (n > KEYS_FILE_MAX)
      s = qiao__error(QIAO_LIMIT, "keys file %s is larger than %u MiB", path, KEYS_FILE_MAX >> 20);
  }
  close(fd);
  if (s != NULL) {
    free(buf);
    return s;
  }
  buf[n] = '\0';
  *out = buf;
  *out_len = n;
  return NULL;
}

qiao_status *serve_keys_load(const char *path, serve_keys **out) {
  char *text = NULL;
  size_t len = 0;
  QIAO__TRY(read_file(path, &text, &len));
  serve_keys *k = calloc(1, sizeof(*k));
  qiao_status *s = k ? NULL : qiao__error(QIAO_OUT_OF_MEMORY, "keys file %s: out of memory", path);
  uint32_t line = 0;
  for (size_t start = 0; s == NULL && start < len;) {
    line++;
    char *nl = memchr(text + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - text) : len;
    text[end] = '\0';
    if (strlen(text + start) != end - start) {
      s = qiao__error(QIAO_MALFORMED, "keys file %s line %u: contains a NUL byte", path, line);
      break;
    }
    if (end > start && text[end - 1] == '\r') text[end - 1] = '\0'; /* CRLF files */
    char *p = text + start;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p != '\0' && *p != '#') s = parse_line(k, path, line, p);
    start = end + 1;
  }
  if (s == NULL && k->n_keys == 0)
    s = qiao__error(QIAO_MALFORMED, "keys file %s holds no keys", path);
  if (text != NULL) memset(text, 0, len);
  free(text);
  if (s != NULL) {
    serve_keys_destroy(k);
    return s;
  }
  *out = k;
  return NULL;
}

const char *serve_keys_check(const serve_keys *k, const char *key, size_t len) {
  /* Every key is compared over all SERVE_KEY_MAX bytes and nothing exits
   * early, so the time does not depend on which bytes match. */
  unsigned char given[SERVE_KEY_MAX] = {0};
  memcpy(given, key, len < SERVE_KEY_MAX ? len : SERVE_KEY_MAX);
  size_t too_long = len > SERVE_KEY_MAX;
  size_t found = SIZE_MAX;
  for (size_t i = 0; i < k->n_keys; i++) {
    size_t diff = (k->keys[i].len ^ len) | too_long;
    for (size_t j = 0; j < SERVE_KEY_MAX; j++)
      diff |= (size_t)(given[j] ^ k->keys[i].key[j]);
    /* all ones when diff is 0, else all zeros */
    size_t mask = ((diff | (0 - diff)) >> (sizeof(size_t) * 8 - 1)) - 1;
    found = (found & ~mask) | (i & mask);
  }
  memset(given, 0, sizeof(given));
  return found == SIZE_MAX ? NULL : k->tenants[k->keys[found].tenant].name;
}
