/* Loading backends: the built-in CPU backend or a plugin found by name or
 * path, with the ABI checks of docs/spec/device-abi.md. */
#include "qiao/backend.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status_internal.h"
#include "cpu_backend.h"

struct qiao_backend {
  qiao_dev_api api; /* the plugin's table, zero-extended to our size */
  qiao_dev_backend *handle;
  void *library; /* dlopen handle; NULL for built-in */
  char origin[PATH_MAX];
};

/* The size of the ABI 1.0 function table: a plugin's table is at least this. */
#define QIAO__DEV_API_V1_0_SIZE (offsetof(qiao_dev_api, moe_combine) + sizeof(void (*)(void)))

/* The table fields every 1.0 backend must provide. */
/* clang-format off */
#define REQUIRED_FUNCTIONS(X) \
  X(error_code) \
  X(error_message) \
  X(error_destroy) \
  X(backend_open) \
  X(backend_close) \
  X(device_count) \
  X(device_get_properties) \
  X(device_open) \
  X(device_close) \
  X(op_supported) \
  X(buffer_create) \
  X(buffer_destroy) \
  X(queue_create) \
  X(queue_destroy) \
  X(queue_synchronize) \
  X(upload) \
  X(download) \
  X(copy) \
  X(embed) \
  X(matmul) \
  X(rmsnorm) \
  X(rope) \
  X(kv_write) \
  X(attention) \
  X(swiglu) \
  X(add) \
  X(argmax) \
  X(moe_gate) \
  X(matmul_experts) \
  X(moe_combine)
/* clang-format on */

/* The three header fields (struct_size, abi_major, abi_minor) sit at the same
 * place in every major version, so a runtime can always read them. */
#define TABLE_HEADER_SIZE (offsetof(qiao_dev_api, abi_minor) + sizeof(uint32_t))

static qiao_status *check_table(const qiao_dev_api *table, const char *origin, qiao_dev_api *out) {
  if (table == NULL)
    return qiao__error(QIAO_MALFORMED, "backend %s: entry point %s returned NULL", origin,
                       QIAO_DEVICE_ENTRY_POINT);
  if (table->struct_size < TABLE_HEADER_SIZE)
    return qiao__error(QIAO_MALFORMED,
                       "backend %s: function table struct_size %zu is too small to hold even "
                       "the version fields (%zu bytes)",
                       origin, table->struct_size, (size_t)TABLE_HEADER_SIZE);
  /* The major version first: a table of another major has another layout. */
  if (table->abi_major != QIAO_DEVICE_ABI_MAJOR)
    return qiao__error(QIAO_UNSUPPORTED,
                       "backend %s: built for device ABI %u.%u, this runtime speaks %u.%u "
                       "(major versions must match)",
                       origin, table->abi_major, table->abi_minor, QIAO_DEVICE_ABI_MAJOR,
                       QIAO_DEVICE_ABI_MINOR);
  if (table->struct_size < QIAO__DEV_API_V1_0_SIZE)
    return qiao__error(QIAO_MALFORMED,
                       "backend %s: function table struct_size %zu is smaller than ABI 1.0's %zu",
                       origin, table->struct_size, (size_t)QIAO__DEV_API_V1_0_SIZE);
  memset(out, 0, sizeof(*out));
  size_t n = table->struct_size < sizeof(*out) ? table->struct_size : sizeof(*out);
  memcpy(out, table, n);
  out->struct_size = sizeof(*out);
  if (out->name == NULL || out->name[0] == '\0')
    return qiao__error(QIAO_MALFORMED, "backend %s: function table field 'name' is %s", origin,
                       out->name == NULL ? "NULL" : "empty");
  if (out->version == NULL)
    return qiao__error(QIAO_MALFORMED, "backend %s: function table field 'version' is NULL",
                       origin);
#define CHECK_FN(f)                                                                                \
  if (out->f == NULL)                                                                              \
    return qiao__error(QIAO_MALFORMED, "backend %s: function table entry '%s' is NULL", origin, #f);
  REQUIRED_FUNCTIONS(CHECK_FN)
#undef CHECK_FN
  return NULL;
}

static bool file_exists(const char *path) {
  return access(path, R_OK) == 0;
}

/* Where `cmake --install` puts plugins, relative to the installed executable
 * and to the installed libqiao.so (set by cmake/QiaoLibrary.cmake from the
 * install directories, so an installed tree can be moved as a whole). */
#ifndef QIAO_PLUGIN_DIR_FROM_BIN
#define QIAO_PLUGIN_DIR_FROM_BIN "../lib/qiao"
#endif
#ifndef QIAO_PLUGIN_DIR_FROM_LIB
#define QIAO_PLUGIN_DIR_FROM_LIB "qiao"
#endif

/* The installed plugin directories: relative to the executable, then to the
 * shared library holding this code when that is not the executable (a
 * program linking libqiao.so, or Python loading it). Returns how many. */
static size_t installed_plugin_dirs(char dirs[2][PATH_MAX]) {
  size_t n = 0;
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) *slash = '\0';
    if (snprintf(dirs[n], PATH_MAX, "%s/%s", exe, QIAO_PLUGIN_DIR_FROM_BIN) < PATH_MAX) n++;
  } else {
    exe[0] = '\0';
  }
  Dl_info info;
  void *self;
  qiao_status *(*fn)(const char *, qiao_backend **) = qiao_backend_load;
  memcpy(&self, &fn, sizeof(self)); /* function -> object pointer, as POSIX allows */
  if (dladdr(self, &info) != 0 && info.dli_fname != NULL && strchr(info.dli_fname, '/')) {
    char lib[PATH_MAX];
    snprintf(lib, sizeof(lib), "%s", info.dli_fname);
    *strrchr(lib, '/') = '\0';
    char real_lib[PATH_MAX], real_exe[PATH_MAX];
    bool same = realpath(lib, real_lib) != NULL && exe[0] != '\0' &&
                realpath(exe, real_exe) != NULL && strcmp(real_lib, real_exe) == 0;
    if (!same && snprintf(dirs[n], PATH_MAX, "%s/%s", lib, QIAO_PLUGIN_DIR_FROM_LIB) < PATH_MAX)
      n++;
  }
  return n;
}

/* Appends `dir` to the list of searched directories, ", "-separated. */
static void note_searched(char *searched, size_t size, const char *dir, size_t dir_len) {
  size_t used = strlen(searched);
  if (used + 1 < size)
    snprintf(searched + used, size - used, "%s%.*s", used ? ", " : "", (int)dir_len, dir);
}

/* Finds libqiao-<name>.so: in each directory of $QIAO_BACKEND_PATH, then
 * beside the executable, then in its backends/<name>/ folder. `searched`
 * receives the directories looked in, for the message when none has it. */
static bool find_plugin(const char *name, char *out, size_t size, char *searched,
                        size_t searched_size) {
  searched[0] = '\0';
  const char *env = getenv("QIAO_BACKEND_PATH");
  if (env != NULL) {
    const char *p = env;
    while (*p) {
      const char *end = strchr(p, ':');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      if (len > 0) {
        note_searched(searched, searched_size, p, len);
        if (snprintf(out, size, "%.*s/libqiao-%s.so", (int)len, p, name) < (int)size &&
            file_exists(out))
          return true;
      }
      p += len + (end ? 1 : 0);
    }
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) *slash = '\0';
    note_searched(searched, searched_size, exe, strlen(exe));
    if (snprintf(out, size, "%s/libqiao-%s.so", exe, name) < (int)size && file_exists(out))
      return true;
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof(sub), "%s/backends/%s", exe, name) < (int)sizeof(sub))
      note_searched(searched, searched_size, sub, strlen(sub));
    if (snprintf(out, size, "%s/backends/%s/libqiao-%s.so", exe, name, name) < (int)size &&
        file_exists(out))
      return true;
  }
  char dirs[2][PATH_MAX];
  size_t n_dirs = installed_plugin_dirs(dirs);
  for (size_t i = 0; i < n_dirs; i++) {
    note_searched(searched, searched_size, dirs[i], strlen(dirs[i]));
    if (snprintf(out, size, "%s/libqiao-%s.so", dirs[i], name) < (int)size && file_exists(out))
      return true;
  }
  return false;
}

static qiao_status *open_plugin(const char *path, qiao_backend *backend) {
  snprintf(backend->origin, sizeof(backend->origin), "%s", path);
  backend->library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (backend->library == NULL) {
    const char *why = dlerror();
    if (why == NULL) why = "?";
    /* dlerror() usually starts with the path again: say it once. */
    size_t len = strlen(path);
    if (strncmp(why, path, len) == 0 && strncmp(why + len, ": ", 2) == 0) why += len + 2;
    return qiao__error(QIAO_NOT_FOUND, "backend %s: cannot load: %s", path, why);
  }
  void *symbol = dlsym(backend->library, QIAO_DEVICE_ENTRY_POINT);
  if (symbol == NULL)
    return qiao__error(QIAO_MALFORMED,
                       "backend %s: missing entry point %s (not a qiao device plugin)", path,
                       QIAO_DEVICE_ENTRY_POINT);
  qiao_device_get_api_fn get_api;
  memcpy(&get_api, &symbol, sizeof(get_api)); /* object -> function pointer, as POSIX allows */
  return check_table(get_api(), path, &backend->api);
}

/* The directory of the running executable, or "" when unknown. */
static void executable_dir(char *out, size_t size) {
  char exe[PATH_MAX];
  out[0] = '\0';
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash != NULL) *slash = '\0';
  snprintf(out, size, "%s", exe);
}

/* Adds every libqiao-<name>.so in `dir` whose name is not listed yet. */
static qiao_status *scan_dir(const char *dir, qiao_backend_entry **entries, size_t *n,
                             size_t *cap) {
  DIR *d = opendir(dir);
  if (d == NULL) return NULL; /* a missing directory on the path is not an error */
  qiao_status *status = NULL;
  struct dirent *e;
  while (status == NULL && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= 11 || strncmp(e->d_name, "libqiao-", 8) != 0 ||
        strcmp(e->d_name + len - 3, ".so") != 0)
      continue;
    size_t name_len = len - 11;
    if (name_len >= sizeof((*entries)->name)) continue;
    bool seen = false;
    for (size_t i = 0; i < *n; i++)
      if (strlen((*entries)[i].name) == name_len &&
          strncmp((*entries)[i].name, e->d_name + 8, name_len) == 0)
        seen = true;
    if (seen) continue;
    if (*n == *cap) {
      size_t new_cap = *cap ? *cap * 2 : 8;
      qiao_backend_entry *grown = realloc(*entries, new_cap * sizeof(**entries));
      if (grown == NULL) {
        status = qiao__error(QIAO_OUT_OF_MEMORY, "backend search: out of memory");
        break;
      }
      *entries = grown;
      *cap = new_cap;
    }
    qiao_backend_entry *entry = &(*entries)[(*n)++];
    snprintf(entry->name, sizeof(entry->name), "%.*s", (int)name_len, e->d_name + 8);
    snprintf(entry->path, sizeof(entry->path), "%s/%s", dir, e->d_name);
  }
  closedir(d);
  return status;
}

qiao_status *qiao_backend_discover(qiao_backend_entry **out_entries, size_t *out_count) {
  qiao_backend_entry *entries = NULL;
  size_t n = 0, cap = 0;
  qiao_status *status = NULL;
  const char *env = getenv("QIAO_BACKEND_PATH");
  char dir[PATH_MAX];
  for (const char *p = env; p != NULL && *p && status == NULL;) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > 0 && len < sizeof(dir)) {
      snprintf(dir, sizeof(dir), "%.*s", (int)len, p);
      status = scan_dir(dir, &entries, &n, &cap);
    }
    p += len + (end ? 1 : 0);
  }
  char exe_dir[PATH_MAX];
  executable_dir(exe_dir, sizeof(exe_dir));
  if (status == NULL && exe_dir[0] != '\0') status = scan_dir(exe_dir, &entries, &n, &cap);
  if (status == NULL && exe_dir[0] != '\0') {
    /* backends/<name>/libqiao-<name>.so, as a build tree lays them out */
    char backends[PATH_MAX + 16];
    snprintf(backends, sizeof(backends), "%s/backends", exe_dir);
    DIR *d = opendir(backends);
    struct dirent *e;
    while (d != NULL && status == NULL && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      if (snprintf(dir, sizeof(dir), "%.*s/%s", (int)(sizeof(dir) / 2), backends, e->d_name) <
          (int)sizeof(dir))
        status = scan_dir(dir, &entries, &n, &cap);
    }
    if (d != NULL) closedir(d);
  }
  char dirs[2][PATH_MAX];
  size_t n_dirs = installed_plugin_dirs(dirs);
  for (size_t i = 0; i < n_dirs && status == NULL; i++)
    status = scan_dir(dirs[i], &entries, &n, &cap);
  if (status != NULL) {
    free(entries);
    return status;
  }
  *out_entries = entries;
  *out_count = n;
  return NULL;
}

qiao_status *qiao_backend_load(const char *name_or_path, qiao_backend **out_backend) {
  if (name_or_path == NULL || *name_or_path == '\0')
    return qiao__error(QIAO_INVALID_ARGUMENT, "--backend: empty backend name");
  qiao_backend *backend = calloc(1, sizeof(*backend));
  if (backend == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "backend: out of memory");
  qiao_status *status = NULL;
  bool is_path = strchr(name_or_path, '/') != NULL || strstr(name_or_path, ".so") != NULL;
  if (!is_path && strcmp(name_or_path, "cpu") == 0) {
    snprintf(backend->origin, sizeof(backend->origin), "built-in");
    status = check_table(qiao_cpu_get_api(), "cpu", &backend->api);
  } else if (is_path) {
    status = open_plugin(name_or_path, backend);
  } else {
    char path[PATH_MAX], searched[4 * PATH_MAX];
    for (const char *c = name_or_path; *c && status == NULL; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
        status = qiao__error(QIAO_INVALID_ARGUMENT, "--backend: '%s' is not a backend name",
                             name_or_path);
    if (status == NULL &&
        !find_plugin(name_or_path, path, sizeof(path), searched, sizeof(searched)))
      status = qiao__error(QIAO_NOT_FOUND, "backend %s: libqiao-%s.so not found (searched: %s%s)",
                           name_or_path, name_or_path, searched[0] ? searched : "nothing",
                           getenv("QIAO_BACKEND_PATH") ? "" : "; $QIAO_BACKEND_PATH is not set");
    if (status == NULL) status = open_plugin(path, backend);
  }
  if (status == NULL) {
    qiao_dev_backend_options options = {sizeof(options), QIAO_DEVICE_ABI_MAJOR,
                                        QIAO_DEVICE_ABI_MINOR};
    status = qiao_backend_status(backend, backend->api.backend_open(&options, &backend->handle),
                                 "backend_open");
  }
  if (status != NULL) {
    qiao_backend_unload(backend);
    return status;
  }
  *out_backend = backend;
  return NULL;
}

void qiao_backend_unload(qiao_backend *backend) {
  if (backend == NULL) return;
  if (backend->handle != NULL && backend->api.backend_close != NULL)
    backend->api.backend_close(backend->handle);
  if (backend->library != NULL) dlclose(backend->library);
  free(backend);
}

const qiao_dev_api *qiao_backend_api(const qiao_backend *backend) {
  return &backend->api;
}
qiao_dev_backend *qiao_backend_handle(const qiao_backend *backend) {
  return backend->handle;
}
const char *qiao_backend_name(const qiao_backend *backend) {
  return backend->api.name ? backend->api.name : "?";
}
const char *qiao_backend_origin(const qiao_backend *backend) {
  return backend->origin;
}

qiao_status *qiao_backend_status(const qiao_backend *backend, qiao_dev_error *error,
                                 const char *what) {
  if (error == NULL) return NULL;
  const qiao_dev_api *api = &backend->api;
  const char *message = api->error_message ? api->error_message(error) : NULL;
  qiao_dev_code code = api->error_code ? api->error_code(error) : QIAO_DEV_INTERNAL;
  qiao_code mapped = code == QIAO_DEV_OUT_OF_MEMORY      ? QIAO_OUT_OF_MEMORY
                     : code == QIAO_DEV_UNSUPPORTED      ? QIAO_UNSUPPORTED
                     : code == QIAO_DEV_INVALID_ARGUMENT ? QIAO_INVALID_ARGUMENT
                                                         : QIAO_DEVICE;
  if (message == NULL || message[0] == '\0') message = "(no message)";
  /* Say each name once. Plugins may start their messages with their own
   * name ("opencl: matmul: ..."), which the prefix below already says; and
   * they name their function ("matmul: x: ..."), which `what` names too,
   * maybe with more words ("matmul attn_output"). */
  const char *name = qiao_backend_name(backend);
  size_t name_len = strlen(name);
  if (strncmp(message, name, name_len) == 0 && strncmp(message + name_len, ": ", 2) == 0 &&
      message[name_len + 2] != '\0')
    message += name_len + 2;
  size_t fn_len = strcspn(what, " :");
  if (fn_len > 0 && strncmp(message, what, fn_len) == 0 &&
      strncmp(message + fn_len, ": ", 2) == 0 && message[fn_len + 2] != '\0')
    message += fn_len + 2;
  qiao_status *status = qiao__error(mapped, "backend %s: %s: %s", name, what, message);
  if (api->error_destroy) api->error_destroy(error);
  return status;
}

qiao_status *qiao_backend_batch_invariant(const qiao_backend *backend, uint32_t index,
                                          bool *out_supported) {
  /* Flags of 1.0 plugins mean nothing beyond HOST_MEMORY: don't read them. */
  if (backend->api.abi_minor < 1) {
    *out_supported = false;
    return NULL;
  }
  qiao_dev_properties props;
  memset(&props, 0, sizeof(props));
  props.struct_size = sizeof(props);
  QIAO__TRY(qiao_backend_status(backend,
                                backend->api.device_get_properties(backend->handle, index, &props),
                                "device_get_properties"));
  *out_supported = (props.flags & QIAO_DEV_FLAG_BATCH_INVARIANT) != 0;
  return NULL;
}

const char *qiao_dev_op_name(qiao_dev_op op) {
  static const char *const names[QIAO_DEV_OP_COUNT] = {
      "embed",        "matmul",           "rmsnorm",        "rope",
      "kv_write",     "attention",        "swiglu",         "add",
      "argmax",       "moe_gate",         "matmul_experts", "moe_combine",
      "latent_write", "attention_latent", "moe_route"};
  return (unsigned)op < QIAO_DEV_OP_COUNT ? names[op] : "unknown-op";
}

const char *qiao_dev_dtype_name(qiao_dev_dtype dtype) {
  static const char *const names[QIAO_DEV_DTYPE_COUNT] = {
      "f32",  "f16",  "bf16", "q8_0", "q4_0", "i32",          "q4_k",   "q5_k",  "q6_k",
      "q2_k", "q3_k", "q4_1", "q5_0", "q5_1", "f8_e4m3_b128", "iq4_nl", "iq4_xs"};
  return (unsigned)dtype < QIAO_DEV_DTYPE_COUNT ? names[dtype] : "unknown-dtype";
}

uint32_t qiao_dev_dtype_abi_minor(qiao_dev_dtype dtype) {
  if ((unsigned)dtype <= QIAO_DEV_I32) return 0;
  if (dtype == QIAO_DEV_IQ4_NL || dtype == QIAO_DEV_IQ4_XS) return 5;
  return dtype == QIAO_DEV_F8_E4M3_B128 ? 4 : 3;
}

uint32_t qiao_dev_op_abi_minor(qiao_dev_op op) {
  return (unsigned)op <= QIAO_DEV_OP_MOE_COMBINE ? 0 : 4;
}

/* The function of an op appended after 1.0 (NULL for the ops of 1.0, whose
 * functions every table has): the table was zero-filled past the plugin's
 * struct_size, so a function the plugin's table does not reach is NULL. */
static bool appended_op_missing(const qiao_dev_api *api, qiao_dev_op op) {
  switch (op) {
  case QIAO_DEV_OP_LATENT_WRITE: return api->latent_write == NULL;
  case QIAO_DEV_OP_ATTENTION_LATENT: return api->attention_latent == NULL;
  case QIAO_DEV_OP_MOE_ROUTE: return api->moe_route == NULL;
  default: return false;
  }
}

bool qiao_backend_may_ask(const qiao_backend *backend, qiao_dev_op op, qiao_dev_dtype dtype) {
  /* A plugin is asked only about the ops and dtypes of its own ABI minor
   * version, and never about an op whose function it does not provide. */
  return (unsigned)dtype < QIAO_DEV_DTYPE_COUNT && (unsigned)op < QIAO_DEV_OP_COUNT &&
         backend->api.abi_minor >= qiao_dev_dtype_abi_minor(dtype) &&
         backend->api.abi_minor >= qiao_dev_op_abi_minor(op) &&
         !appended_op_missing(&backend->api, op);
}

qiao_status *qiao_backend_op_supported(const qiao_backend *backend, qiao_dev_device *device,
                                       qiao_dev_op op, qiao_dev_dtype dtype, bool *out_supported) {
  if (!qiao_backend_may_ask(backend, op, dtype)) {
    *out_supported = false;
    return NULL;
  }
  uint32_t supported = 0;
  QIAO__TRY(qiao_backend_status(backend, backend->api.op_supported(device, op, dtype, &supported),
                                "op_supported"));
  *out_supported = supported != 0;
  return NULL;
}
