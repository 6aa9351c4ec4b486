/* The watchdog of request deadlines. */
#include "deadlines.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "core/status_internal.h"

/* How often the watchdog looks. */
#define CHECK_MS 200

typedef struct watched {
  struct watched *prev, *next; /* in the list, under the lock */
  serve_deadlines *owner;
  int fd;
  _Atomic int64_t deadline_ms; /* 0: no deadline now */
  atomic_bool expired;
} watched;

struct serve_deadlines {
  int64_t timeout_ms;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  watched *head;
  bool stopping;
  pthread_t thread;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watchdog(void *arg) {
  serve_deadlines *d = arg;
  pthread_mutex_lock(&d->lock);
  while (!d->stopping) {
    int64_t now = now_ms();
    /* The list holds only open connections (CLOSED unlinks under the lock
     * before the socket is closed), so each fd is still theirs. */
    for (watched *w = d->head; w != NULL; w = w->next) {
      int64_t deadline = atomic_load(&w->deadline_ms);
      if (deadline != 0 && now > deadline) {
        atomic_store(&w->deadline_ms, 0);
        atomic_store(&w->expired, true);
        shutdown(w->fd, SHUT_RDWR); /* the server sees the client leave */
      }
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += CHECK_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&d->wake, &d->lock, &until);
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

qiao_status *serve_deadlines_start(uint32_t timeout_s, serve_deadlines **out) {
  serve_deadlines *d = calloc(1, sizeof(*d));
  if (d == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "serve: out of memory");
  d->timeout_ms = (int64_t)timeout_s * 1000;
  pthread_mutex_init(&d->lock, NULL);
  pthread_cond_init(&d->wake, NULL);
  if (pthread_create(&d->thread, NULL, watchdog, d) != 0) {
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d);
    return qiao__error(QIAO_INTERNAL, "serve: cannot start the deadline thread");
  }
  *out = d;
  return NULL;
}

void serve_deadlines_stop(serve_deadlines *d) {
  if (d == NULL) return;
  pthread_mutex_lock(&d->lock);
  d->stopping = true;
  pthread_cond_signal(&d->wake);
  pthread_mutex_unlock(&d->lock);
  pthread_join(d->thread, NULL);
  pthread_cond_destroy(&d->wake);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

void serve_deadlines_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                                   enum MHD_ConnectionNotificationCode toe) {
  serve_deadlines *d = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    watched *w = calloc(1, sizeof(*w));
    if (w == NULL || ci == NULL) { /* not watched: the idle timeout still applies */
      free(w);
      *socket_context = NULL;
      return;
    }
    w->owner = d;
    w->fd = ci->connect_fd;
    atomic_store(&w->deadline_ms, now_ms() + d->timeout_ms);
    pthread_mutex_lock(&d->lock);
    w->next = d->head;
    if (d->head != NULL) d->head->prev = w;
    d->head = w;
    pthread_mutex_unlock(&d->lock);
    *socket_context = w;
    return;
  }
  watched *w = *socket_context; /* MHD_CONNECTION_NOTIFY_CLOSED */
  if (w == NULL) return;
  pthread_mutex_lock(&d->lock);
  if (w->prev != NULL) w->prev->next = w->next;
  if (w->next != NULL) w->next->prev = w->prev;
  if (d->head == w) d->head = w->next;
  pthread_mutex_unlock(&d->lock);
  free(w);
  *socket_context = NULL;
}

static watched *of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci != NULL ? ci->socket_context : NULL;
}

void serve_deadlines_received(struct MHD_Connection *c) {
  watched *w = of(c);
  if (w != NULL) atomic_store(&w->deadline_ms, 0);
}

void serve_deadlines_rearm(struct MHD_Connection *c) {
  watched *w = of(c);
  if (w != NULL) atomic_store(&w->deadline_ms, now_ms() + w->owner->timeout_ms);
}

bool serve_deadlines_expired(struct MHD_Connection *c) {
  watched *w = of(c);
  return w != NULL && atomic_load(&w->expired);
}
