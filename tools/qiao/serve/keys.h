/* API keys (--api-keys FILE) and who a request belongs to.
 *
 * The file holds one key per line:
 *   KEY TENANT [max_running=N] [max_queued=N] [tpm=N] [weight=N]
 * with blank lines and `#` comments allowed. A limit not given is no limit;
 * max_queued=0 means what cannot run at once is refused (qiao_tenant_limits
 * in qiao/scheduler.h). A tenant may have several keys;
 * its limits are given on one of its lines at most. The file must not be
 * readable or writable by group or others (it holds secrets).
 *
 * Keys are compared in constant time against every key, so the time a
 * check takes says nothing about which key (or which prefix) is right.
 * Keys never appear in messages or logs. */
#ifndef QIAO_SERVE_KEYS_H
#define QIAO_SERVE_KEYS_H

#include <stddef.h>

#include "qiao/scheduler.h"
#include "qiao/status.h"

/* Longest key accepted (the comparison always covers this many bytes). */
#define SERVE_KEY_MAX 256
/* Longest tenant name (the scheduler's limit). */
#define SERVE_TENANT_MAX 63

typedef struct serve_keys serve_keys;

/* Reads and checks the file; fails naming the file and the line. */
qiao_status *serve_keys_load(const char *path, serve_keys **out);
void serve_keys_destroy(serve_keys *keys); /* accepts NULL */

/* The tenants, each once, with their limits (for qiao_scheduler_add_tenant). */
size_t serve_keys_tenant_count(const serve_keys *keys);
const char *serve_keys_tenant(const serve_keys *keys, size_t i, qiao_tenant_limits *out_limits);

/* The tenant of a presented key (`len` bytes, not NUL-terminated), or NULL
 * when it matches no key. */
const char *serve_keys_check(const serve_keys *keys, const char *key, size_t len);

#endif
