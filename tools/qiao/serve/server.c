/* libmicrohttpd setup, and the life of a request: checks on its headers
 * (key, route, method, size), reading its body within --max-body, handing
 * it to its route, and the log line when it is over.
 *
 * MHD calls on_request several times per request: first with the headers
 * (*con_cls is NULL), then once per piece of body, then once with no data
 * when the whole request is in. A response queued on the first call is
 * sent without reading the body ("early" responses: 401, 404, 405, 413,
 * 503). */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "client_watch.h"
#include "core/status_internal.h"
#include "deadlines.h"
#include "errors.h"
#include "reply.h"
#include "routes.h"
#include "serve_log.h"
#include "text.h"

/* Connections at once; more wait in the kernel's backlog. */
#define MAX_CONNECTIONS 512
/* Body bytes read and dropped past --max-body before the connection is
 * closed instead of answered with 413. */
#define MAX_DISCARD (8u << 20)

struct serve_server {
  serve_app *app;
  struct MHD_Daemon *daemon;
  serve_deadlines *deadlines;
  uint16_t port;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static serve_exchange *exchange_new(serve_app *app, struct MHD_Connection *c, const char *method,
                                    const char *url) {
  serve_exchange *x = calloc(1, sizeof(*x));
  if (x == NULL) return NULL;
  x->app = app;
  x->connection = c;
  x->t_start = now_s();
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  x->client_fd = ci != NULL ? ci->connect_fd : -1;
  serve_random_hex(x->id, 12);
  snprintf(x->method, sizeof(x->method), "%s", method);
  snprintf(x->route, sizeof(x->route), "%s", url);
  serve_text_sanitize(x->method);
  serve_text_sanitize(x->route);
  /* With keys, the tenant is known once the key is checked. */
  snprintf(x->tenant, sizeof(x->tenant), "%s", app->keys != NULL ? "" : "default");
  atomic_fetch_add(&app->in_flight, 1);
  return x;
}

/* The tenant of the request's key (Authorization: Bearer KEY, or
 * X-Api-Key: KEY), or NULL. */
static const char *authenticate(serve_exchange *x) {
  const char *auth =
      MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  const char *key = NULL;
  if (auth != NULL) {
    while (*auth == ' ' || *auth == '\t')
      auth++;
    if (strncasecmp(auth, "Bearer", 6) == 0 && (auth[6] == ' ' || auth[6] == '\t')) {
      key = auth + 7;
      while (*key == ' ' || *key == '\t')
        key++;
    }
  }
  if (key == NULL) key = MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, "X-Api-Key");
  if (key == NULL) return NULL;
  size_t len = strlen(key);
  while (len > 0 && (key[len - 1] == ' ' || key[len - 1] == '\t'))
    len--;
  return serve_keys_check(x->app->keys, key, len);
}

static bool request_has_body(struct MHD_Connection *c) {
  const char *length =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  return (length != NULL && strcmp(length, "0") != 0) ||
         MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

static bool is_get(const char *method) {
  return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static enum MHD_Result reply_too_large(serve_exchange *x) {
  serve_error e;
  serve_fail(&e, 413, NULL, "the request body is larger than %llu bytes (--max-body)",
             (unsigned long long)x->app->config->max_body);
  e.code = "request_too_large";
  return serve_reply_error(x, &e);
}

/* Checks made on the headers alone. Returns MHD_YES to read the body (no
 * response queued), or the result of queuing an early error. */
static enum MHD_Result begin(serve_exchange *x, const char *url, const char *method) {
  serve_app *app = x->app;
  serve_error e;
  bool public_route = strcmp(url, "/health") == 0 && is_get(method);
  if (app->keys != NULL && !public_route) {
    const char *tenant = authenticate(x);
    if (tenant == NULL) {
      serve_fail(
          &e, 401, NULL,
          "invalid or missing API key (send 'Authorization: Bearer KEY' or 'X-Api-Key: KEY')");
      e.code = "invalid_api_key";
      return serve_reply_error(x, &e);
    }
    snprintf(x->tenant, sizeof(x->tenant), "%s", tenant);
  }
  const serve_route *route = serve_route_find(url);
  if (route == NULL) {
    serve_fail(&e, 404, NULL,
               "no route %s (routes: /v1/completions, /v1/chat/completions, "
               "/v1/models, /health, /metrics, /tokenize, /detokenize)",
               x->route);
    e.code = "not_found";
    return serve_reply_error(x, &e);
  }
  const char *session =
      MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, SERVE_SESSION_HEADER);
  if (session != NULL && session[0] != '\0') { /* empty: no session, as balancers see it */
    if (!serve_session_key_valid(session, strlen(session))) {
      serve_fail(&e, 400, NULL,
                 SERVE_SESSION_HEADER
                 " must be 1 to %d characters of A-Z a-z 0-9 - . _ ~ : + / = @",
                 SERVE_SESSION_MAX);
      e.code = "invalid_session_header";
      return serve_reply_error(x, &e);
    }
    snprintf(x->session, sizeof(x->session), "%s", session);
  }
  bool get_route = strcmp(route->method, "GET") == 0;
  if (get_route ? !is_get(method) : strcmp(method, route->method) != 0) {
    serve_fail(&e, 405, NULL, "%s takes %s, not %s", route->path, route->method, x->method);
    e.code = "method_not_allowed";
    e.allow = get_route ? "GET, HEAD" : route->method;
    return serve_reply_error(x, &e);
  }
  const char *length =
      MHD_lookup_connection_value(x->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != NULL) {
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(length, &end, 10);
    if (errno != 0 || end == length || n > app->config->max_body) return reply_too_large(x);
  }
  serve_phase phase = serve_app_phase(app);
  if (route->needs_model && phase != SERVE_READY) {
    bool loading = phase == SERVE_LOADING;
    serve_fail(&e, 503, NULL, loading ? "the model is loading" : "the server is shutting down");
    e.code = loading ? "loading" : "shutting_down";
    e.retry_after_s = loading ? 5 : 1;
    return serve_reply_error(x, &e);
  }
  return MHD_YES;
}

/* A piece of the body: kept while within --max-body, dropped after. */
static enum MHD_Result receive(serve_exchange *x, const char *data, size_t size) {
  uint64_t max = x->app->config->max_body;
  if (!x->body_too_large && (x->body.len + size > max || !serve_buf_append(&x->body, data, size)))
    x->body_too_large = true; /* chunked bodies have no Content-Length to refuse early */
  if (x->body_too_large) {
    x->discarded += size;
    if (x->discarded > MAX_DISCARD) {
      x->status = 413;
      snprintf(x->error, sizeof(x->error), "the request body went on far past --max-body");
      return MHD_NO; /* stop reading a body that does not end */
    }
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  serve_app *app = cls;
  serve_exchange *x = *con_cls;
  (void)version;
  if (x == NULL) {
    if ((x = exchange_new(app, connection, method, url)) == NULL) return MHD_NO;
    *con_cls = x;
    enum MHD_Result r = begin(x, url, method);
    /* Answered before its body: the client may still be sending it. */
    x->body_unread = x->responded && request_has_body(connection);
    if (x->responded) serve_deadlines_received(connection);
    return r;
  }
  if (*upload_data_size > 0) {
    size_t size = *upload_data_size;
    *upload_data_size = 0; /* consumed */
    if (x->responded) return MHD_YES;
    return receive(x, upload_data, size);
  }
  if (x->responded) return MHD_YES;
  serve_deadlines_received(connection); /* the whole request is in */
  if (x->body_too_large) return reply_too_large(x);
  return serve_route_find(url)->run(x);
}

static const char *termination_reason(enum MHD_RequestTerminationCode toe) {
  switch (toe) {
  case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "connection timed out (--timeout)";
  case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "the server shut down";
  case MHD_REQUEST_TERMINATED_READ_ERROR: return "the client went away";
  case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "the client went away";
  default: return "connection error";
  }
}

/* Every request ends here, however it ended: log it, release it. */
static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  serve_app *app = cls;
  serve_exchange *x = *con_cls;
  if (x == NULL) return;
  *con_cls = NULL;
  if (serve_deadlines_expired(connection))
    snprintf(x->error, sizeof(x->error), "the request did not arrive within --timeout");
  if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && x->error[0] == '\0')
    snprintf(x->error, sizeof(x->error), "%s", termination_reason(toe));
  if (x->status == 0) x->status = 499; /* ended with no response sent */
  serve_gen_summary summary;
  if (x->has_generation) serve_generation_summary(&x->generation, &summary);
  serve_log_entry entry = {
      .id = x->id,
      .method = x->method,
      .route = x->route,
      .tenant = x->tenant,
      .session = x->session,
      .user = x->has_generation ? x->generation.req.user : NULL,
      .status = x->status,
      .gen = x->has_generation ? &summary : NULL,
      .total_s = now_s() - x->t_start,
      .error = x->error[0] ? x->error : NULL,
      .prompt = x->has_generation ? x->generation.req.prompt_log : NULL,
  };
  serve_log_request(&entry);
  serve_deadlines_rearm(connection); /* for the next request of a kept-alive connection */
  if (x->body_unread && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
    serve_client_linger(x->client_fd);
  if (x->has_generation) serve_generation_free(&x->generation);
  serve_buf_free(&x->body);
  free(x);
  atomic_fetch_sub(&app->in_flight, 1);
}

qiao_status *serve_server_start(serve_app *app, serve_server **out) {
  const serve_config *c = app->config;
  char port[16];
  snprintf(port, sizeof(port), "%u", c->port);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(c->host, port, &hints, &ai);
  if (gai != 0)
    return qiao__error(QIAO_INVALID_ARGUMENT, "--host %s: %s", c->host, gai_strerror(gai));
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                   MHD_USE_ITC; /* ITC: needed to quiesce on SIGTERM */
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  serve_deadlines *deadlines = NULL;
  qiao_status *st = serve_deadlines_start(c->timeout_s, &deadlines);
  if (st != NULL) {
    freeaddrinfo(ai);
    return st;
  }
  errno = 0;
  struct MHD_Daemon *d =
      MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, on_request, app, MHD_OPTION_SOCK_ADDR,
                       ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, app,
                       MHD_OPTION_NOTIFY_CONNECTION, serve_deadlines_on_connection, deadlines,
                       MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout_s, MHD_OPTION_END);
  int err = errno;
  freeaddrinfo(ai);
  if (d == NULL) {
    serve_deadlines_stop(deadlines);
    return qiao__error(QIAO_IO, "cannot listen on %s:%u%s%s", c->host, c->port, err ? ": " : "",
                       err ? strerror(err) : "");
  }
  serve_server *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    MHD_stop_daemon(d);
    serve_deadlines_stop(deadlines);
    return qiao__error(QIAO_OUT_OF_MEMORY, "serve: out of memory");
  }
  s->app = app;
  s->daemon = d;
  s->deadlines = deadlines;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info != NULL ? info->port : (uint16_t)c->port;
  *out = s;
  return NULL;
}

uint16_t serve_server_port(const serve_server *s) {
  return s->port;
}

void serve_server_quiesce(serve_server *s) {
  MHD_socket fd = MHD_quiesce_daemon(s->daemon);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

void serve_server_wait_idle(serve_server *s, uint32_t timeout_ms) {
  struct timespec step = {0, 20 * 1000 * 1000};
  for (uint32_t waited = 0; atomic_load(&s->app->in_flight) > 0 && waited < timeout_ms;
       waited += 20)
    nanosleep(&step, NULL);
}

void serve_server_stop(serve_server *s) {
  if (s == NULL) return;
  MHD_stop_daemon(s->daemon);
  serve_deadlines_stop(s->deadlines); /* after: no connection is left to watch */
  free(s);
}
