/* Tenants: their limits, the fair-share counter and the tokens-per-minute
 * window. All under sched->mu.
 *
 * Fair share follows the virtual token counter idea (Sheng et al., OSDI'24):
 * each tenant's counter grows by the tokens it is served divided by its
 * weight, admission picks the active tenant with the smallest counter, and
 * a tenant becoming active is lifted to the smallest counter among the
 * active ones, so a tenant cannot bank credit while idle. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler_internal.h"

qiao__tenant *qiao__tenant_find(qiao_scheduler *s, const char *name) {
  for (qiao__tenant *t = s->tenants; t != NULL; t = t->next)
    if (strcmp(t->name, name) == 0) return t;
  return NULL;
}

qiao_status *qiao__tenant_add(qiao_scheduler *s, const char *name, const qiao_tenant_limits *limits,
                              qiao__tenant **out) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "tenant: empty name");
  if (len >= TENANT_NAME_MAX)
    return qiao__error(QIAO_INVALID_ARGUMENT, "tenant '%.20s...': name longer than %d bytes", name,
                       TENANT_NAME_MAX - 1);
  if (qiao__tenant_find(s, name) != NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "tenant '%s': declared twice", name);
  qiao__tenant *t = calloc(1, sizeof(*t));
  if (t == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tenant: out of memory");
  memcpy(t->name, name, len + 1);
  if (limits != NULL) t->limits = *limits;
  if (t->limits.weight == 0) t->limits.weight = 1;
  t->next = s->tenants;
  s->tenants = t;
  *out = t;
  return NULL;
}

void qiao__tenants_free(qiao_scheduler *s) {
  while (s->tenants != NULL) {
    qiao__tenant *t = s->tenants;
    s->tenants = t->next;
    free(t);
  }
}

uint64_t qiao__tenant_window_tokens(qiao__tenant *t, double now, uint32_t *retry_after_s) {
  int64_t second = (int64_t)floor(now);
  uint64_t total = 0;
  int64_t oldest = second;
  for (int i = 0; i < RATE_WINDOW_S; i++) {
    if (t->window[i] != 0 && second - t->window_second[i] < RATE_WINDOW_S) {
      total += t->window[i];
      if (t->window_second[i] < oldest) oldest = t->window_second[i];
    }
  }
  if (retry_after_s) *retry_after_s = (uint32_t)(oldest + RATE_WINDOW_S - second);
  return total;
}

void qiao__tenant_charge(qiao_scheduler *s, qiao__tenant *t, uint64_t tokens, double now) {
  (void)s;
  if (tokens == 0) return;
  t->served += (double)tokens / t->limits.weight;
  int64_t second = (int64_t)floor(now);
  int slot = (int)(second % RATE_WINDOW_S);
  if (t->window_second[slot] != second) {
    t->window_second[slot] = second;
    t->window[slot] = 0;
  }
  t->window[slot] += tokens;
}

void qiao__tenant_activate(qiao_scheduler *s, qiao__tenant *t) {
  if (t->running > 0 || t->queued > 0) return; /* already active */
  bool any = false;
  double least = 0;
  for (qiao__tenant *o = s->tenants; o != NULL; o = o->next) {
    if (o == t || (o->running == 0 && o->queued == 0)) continue;
    if (!any || o->served < least) least = o->served;
    any = true;
  }
  if (any && t->served < least) t->served = least;
}
