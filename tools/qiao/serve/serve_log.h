/* The request log: one JSON line per HTTP request on stderr, e.g.
 *   {"time":"2026-11-23T14:15:00.123Z","id":"3f2a...","method":"POST",
 *    "route":"/v1/chat/completions","tenant":"default","status":200,
 *    "prompt_tokens":12,"cached_tokens":0,"completion_tokens":40,
 *    "queue_s":0.001,"ttft_s":0.05,"total_s":0.9,"finish":"stop",
 *    "replica":"cpu","error":null}
 * ("session" too when the request sent X-Qiao-Session; "replica" is the
 * device that ran it, not the process's X-Qiao-Replica.)
 * Prompt text only with --log-prompts; keys never. */
#ifndef QIAO_SERVE_LOG_H
#define QIAO_SERVE_LOG_H

#include "generation.h"

typedef struct serve_log_entry {
  const char *id, *method, *route, *tenant;
  const char *session; /* X-Qiao-Session, "" for none */
  const char *user;    /* the request's `user` field, "" for none */
  unsigned status;
  const serve_gen_summary *gen; /* NULL for routes that do not generate */
  double total_s;
  const char *error;  /* NULL: none */
  const char *prompt; /* NULL unless --log-prompts */
} serve_log_entry;

void serve_log_request(const serve_log_entry *entry);

#endif
