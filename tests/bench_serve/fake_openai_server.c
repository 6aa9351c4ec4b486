/* A tiny OpenAI-compatible streaming server for testing qiao bench-serve:
 * known chunks with known delays, over plain sockets (one thread per
 * connection, HTTP/1.1 keep-alive, chunked responses). What it does depends
 * on the path before /v1/...:
 *   /ok       a good stream of max_tokens content chunks, written in the
 *             awkward ways SSE allows (a comment, an event split across two
 *             writes, CRLF lines, data spread over two lines, extra fields,
 *             a chunk with empty text), then usage and [DONE];
 *   /nousage  the same without the usage chunk (tokens must be counted);
 *   /auth     /ok, but 401 unless "Authorization: Bearer sekrit";
 *   /mix      requests in turn: good, HTTP 500, a malformed event, no [DONE];
 *   /huge     a 2 MiB line (over the client's bound).
 * The first content chunk comes FIRST_TOKEN_MS after the request, the next
 * ones TOKEN_MS apart. Bodies are checked (stream, include_usage,
 * ignore_eos, temperature 0, max_tokens, prompt ids in [1000, 20000)): a bad
 * one gets HTTP 400 naming the field.
 * usage: fake_openai_server PORT_FILE [LIFETIME_S] -- writes its port to
 * PORT_FILE and exits after LIFETIME_S (default 300) at the latest. */
#include <arpa/inet.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FIRST_TOKEN_MS 20
#define TOKEN_MS 5
#define MAX_HEADER 16384
#define MAX_BODY (1 << 20)

static atomic_uint mix_counter;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static bool send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* One HTTP chunk of a chunked body. */
static bool send_chunk(int fd, const char *p, size_t n) {
  char head[32];
  int h = snprintf(head, sizeof(head), "%zx\r\n", n);
  return send_all(fd, head, (size_t)h) && send_all(fd, p, n) && send_all(fd, "\r\n", 2);
}

static bool send_chunkf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool send_chunkf(int fd, const char *fmt, ...) {
  char b[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof(b), fmt, ap);
  va_end(ap);
  return n > 0 && (size_t)n < sizeof(b) && send_chunk(fd, b, (size_t)n);
}

static bool send_simple(int fd, int status, const char *reason, const char *body) {
  char head[256];
  int n =
      snprintf(head, sizeof(head),
               "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
               status, reason, strlen(body));
  return send_all(fd, head, (size_t)n) && send_all(fd, body, strlen(body));
}

static bool bad_request(int fd, const char *what) {
  char body[256];
  snprintf(body, sizeof(body), "{\"error\":{\"message\":\"fake server: bad %s\"}}", what);
  return send_simple(fd, 400, "Bad Request", body);
}

/* The request body's checks; returns the name of the first bad field or NULL,
 * and the prompt length in tokens (ids, or words of a text). */
static const char *check_body(json_object *b, bool chat, int *max_tokens, int *prompt_tokens) {
  json_object *v = NULL, *so = NULL;
  if (!json_object_is_type(b, json_type_object)) return "body";
  if (!json_object_object_get_ex(b, "stream", &v) || !json_object_get_boolean(v)) return "stream";
  if (!json_object_object_get_ex(b, "stream_options", &so) ||
      !json_object_object_get_ex(so, "include_usage", &v) || !json_object_get_boolean(v))
    return "stream_options.include_usage";
  if (!json_object_object_get_ex(b, "ignore_eos", &v) || !json_object_get_boolean(v))
    return "ignore_eos";
  if (!json_object_object_get_ex(b, "temperature", &v) || json_object_get_double(v) != 0)
    return "temperature";
  if (!json_object_object_get_ex(b, "max_tokens", &v) || !json_object_is_type(v, json_type_int))
    return "max_tokens";
  *max_tokens = json_object_get_int(v);
  if (*max_tokens < 1 || *max_tokens > 1000) return "max_tokens";
  const char *text = NULL;
  if (chat) {
    json_object *msgs = NULL, *m = NULL, *c = NULL;
    if (!json_object_object_get_ex(b, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) != 1)
      return "messages";
    m = json_object_array_get_idx(msgs, 0);
    if (!json_object_object_get_ex(m, "content", &c) || !json_object_is_type(c, json_type_string))
      return "messages[0].content";
    text = json_object_get_string(c);
  } else {
    if (!json_object_object_get_ex(b, "prompt", &v)) return "prompt";
    if (json_object_is_type(v, json_type_string)) {
      text = json_object_get_string(v);
    } else if (json_object_is_type(v, json_type_array)) {
      size_t n = json_object_array_length(v);
      for (size_t i = 0; i < n; i++) {
        json_object *id = json_object_array_get_idx(v, i);
        if (!json_object_is_type(id, json_type_int) || json_object_get_int(id) < 1000 ||
            json_object_get_int(id) >= 20000)
          return "prompt id";
      }
      *prompt_tokens = (int)n;
      return n > 0 ? NULL : "prompt";
    } else {
      return "prompt";
    }
  }
  int words = 0;
  for (const char *p = text; *p; p++)
    if (*p != ' ' && (p == text || p[-1] == ' ')) words++;
  *prompt_tokens = words;
  return words > 0 ? NULL : "prompt text";
}

/* A content chunk as an SSE event with text `t`. */
static bool token_event(int fd, bool chat, const char *t) {
  if (chat)
    return send_chunkf(fd, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"}}]}\n\n",
                       t);
  return send_chunkf(fd, "data: {\"choices\":[{\"index\":0,\"text\":\"%s\"}]}\n\n", t);
}

typedef enum { GOOD, NO_USAGE, MALFORMED, NO_DONE } stream_kind;

/* Streams one response; false when the connection broke. */
static bool stream(int fd, bool chat, stream_kind kind, int max_tokens, int prompt_tokens) {
  const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
  if (!send_all(fd, head, strlen(head))) return false;
  /* a comment, and a first chunk with no text (neither is a token) */
  if (!send_chunkf(fd, ": keep-alive\n\n")) return false;
  bool ok = chat ? send_chunkf(fd, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                                   "\"assistant\",\"content\":null}}]}\n\n")
                 : token_event(fd, false, "");
  if (!ok) return false;
  sleep_ms(FIRST_TOKEN_MS);
  for (int k = 0; k < max_tokens; k++) {
    if (k > 0) sleep_ms(TOKEN_MS);
    if (kind == MALFORMED && k == 2)
      return send_chunkf(fd, "data: {not json\n\n") && send_all(fd, "0\r\n\r\n", 5);
    const char *field = chat ? "\"delta\":{\"content\":" : "\"text\":";
    switch (k) {
    case 1: /* one event split across two writes */
      ok = send_chunkf(fd, "data: {\"choices\":[{\"index\":0,%.4s", field);
      sleep_ms(2);
      ok = ok && send_chunkf(fd, "%s\"b\"%s}]}\n\n", field + 4, chat ? "}" : "");
      break;
    case 2: /* CRLF line ends */
      ok = send_chunkf(fd, "data: {\"choices\":[{\"index\":0,%s\"c\"%s}]}\r\n\r\n", field,
                       chat ? "}" : "");
      break;
    case 3: /* data over two lines (joined with a newline: still JSON) */
      ok = send_chunkf(fd, "data: {\"choices\":\ndata: [{\"index\":0,%s\"d\"%s}]}\n\n", field,
                       chat ? "}" : "");
      break;
    case 4: /* other fields, and a line end split from its line */
      ok = send_chunkf(fd,
                       "event: message\nid: 4\nretry: 100\ndata: {\"choices\":[{\"index\":0,"
                       "%s\"e\"%s}]}",
                       field, chat ? "}" : "") &&
           send_chunkf(fd, "\n\n");
      break;
    default: ok = token_event(fd, chat, "x"); break;
    }
    if (!ok) return false;
  }
  if (!send_chunkf(fd, "data: {\"choices\":[{\"index\":0,%s,\"finish_reason\":\"length\"}]}\n\n",
                   chat ? "\"delta\":{}" : "\"text\":\"\""))
    return false;
  if (kind != NO_USAGE &&
      !send_chunkf(fd,
                   "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":"
                   "%d,\"total_tokens\":%d}}\n\n",
                   prompt_tokens, max_tokens, prompt_tokens + max_tokens))
    return false;
  if (kind != NO_DONE && !send_chunkf(fd, "data: [DONE]\n\n")) return false;
  return send_all(fd, "0\r\n\r\n", 5);
}

static bool header_value(const char *head, const char *name, char *out, size_t size) {
  size_t n = strlen(name);
  for (const char *p = head; (p = strchr(p, '\n')) != NULL;) {
    p++;
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      p += n + 1;
      while (*p == ' ')
        p++;
      size_t len = strcspn(p, "\r\n");
      if (len >= size) len = size - 1;
      memcpy(out, p, len);
      out[len] = '\0';
      return true;
    }
  }
  return false;
}

/* Serves one request of the connection; false to close it. */
static bool serve_one(int fd, char *buf, size_t *have) {
  char *end = NULL;
  for (;;) {
    buf[*have] = '\0';
    if ((end = strstr(buf, "\r\n\r\n")) != NULL) break;
    if (*have >= MAX_HEADER) return false;
    ssize_t r = recv(fd, buf + *have, MAX_HEADER - *have, 0);
    if (r <= 0) return false;
    *have += (size_t)r;
  }
  size_t head_len = (size_t)(end - buf) + 4;
  end[2] = '\0'; /* header lookups stop before the body */
  char method[16], path[256], value[256], authz[256] = "";
  if (sscanf(buf, "%15s %255s", method, path) != 2) return false;
  long content_length = 0;
  if (header_value(buf, "Content-Length", value, sizeof(value))) content_length = atol(value);
  if (content_length < 0 || content_length > MAX_BODY) return false;
  header_value(buf, "Authorization", authz, sizeof(authz));
  char *body = malloc((size_t)content_length + 1);
  if (body == NULL) return false;
  size_t got =
      *have - head_len < (size_t)content_length ? *have - head_len : (size_t)content_length;
  memcpy(body, buf + head_len, got);
  *have -= head_len + got; /* bytes of a next request stay at the front */
  memmove(buf, buf + head_len + got, *have);
  while (got < (size_t)content_length) {
    ssize_t r = recv(fd, body + got, (size_t)content_length - got, 0);
    if (r <= 0) {
      free(body);
      return false;
    }
    got += (size_t)r;
  }
  body[got] = '\0';

  bool keep = true;
  const char *chat_suffix = "/v1/chat/completions", *cmpl_suffix = "/v1/completions";
  size_t pl = strlen(path);
  bool chat =
      pl >= strlen(chat_suffix) && strcmp(path + pl - strlen(chat_suffix), chat_suffix) == 0;
  bool cmpl =
      pl >= strlen(cmpl_suffix) && strcmp(path + pl - strlen(cmpl_suffix), cmpl_suffix) == 0;
  size_t prefix = pl - (chat ? strlen(chat_suffix) : cmpl ? strlen(cmpl_suffix) : 0);
  if (strcmp(method, "POST") != 0 || (!chat && !cmpl)) {
    keep = send_simple(fd, 404, "Not Found", "{\"error\":{\"message\":\"no such endpoint\"}}");
  } else {
    json_object *b = json_tokener_parse(body);
    int max_tokens = 0, prompt_tokens = 0;
    const char *bad = check_body(b, chat, &max_tokens, &prompt_tokens);
    json_object_put(b);
    if (bad != NULL) {
      keep = bad_request(fd, bad);
    } else if (prefix == 5 && strncmp(path, "/auth", 5) == 0 &&
               strcmp(authz, "Bearer sekrit") != 0) {
      keep = send_simple(fd, 401, "Unauthorized", "{\"error\":{\"message\":\"bad key\"}}");
    } else if ((prefix == 3 && strncmp(path, "/ok", 3) == 0) ||
               (prefix == 5 && strncmp(path, "/auth", 5) == 0)) {
      keep = stream(fd, chat, GOOD, max_tokens, prompt_tokens);
    } else if (prefix == 8 && strncmp(path, "/nousage", 8) == 0) {
      keep = stream(fd, chat, NO_USAGE, max_tokens, prompt_tokens);
    } else if (prefix == 5 && strncmp(path, "/huge", 5) == 0) {
      const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n";
      char line[65536];
      memset(line, 'a', sizeof(line));
      memcpy(line, "data: ", 6);
      keep = send_all(fd, head, strlen(head));
      for (int k = 0; keep && k < 32; k++)
        keep = send_chunk(fd, line, sizeof(line));
      keep = keep && send_all(fd, "0\r\n\r\n", 5);
    } else if (prefix == 4 && strncmp(path, "/mix", 4) == 0) {
      unsigned turn = atomic_fetch_add(&mix_counter, 1) % 4;
      if (turn == 1)
        keep = send_simple(fd, 500, "Internal Server Error",
                           "{\"error\":{\"message\":\"fake overload\"}}");
      else
        keep = stream(fd, chat,
                      turn == 0   ? GOOD
                      : turn == 2 ? MALFORMED
                                  : NO_DONE,
                      max_tokens, prompt_tokens);
    } else {
      keep = send_simple(fd, 404, "Not Found", "{\"error\":{\"message\":\"no such scenario\"}}");
    }
  }
  free(body);
  return keep;
}

static void *connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char *buf = malloc(MAX_HEADER + 1);
  size_t have = 0;
  while (buf != NULL && serve_one(fd, buf, &have)) {
  }
  free(buf);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: fake_openai_server PORT_FILE [LIFETIME_S]\n");
    return 2;
  }
  alarm(argc == 3 ? (unsigned)atoi(argv[2]) : 300); /* never outlives a stuck test */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 64) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    perror("fake_openai_server: listen");
    return 1;
  }
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f) != 0 ||
      rename(tmp, argv[1]) != 0) {
    perror("fake_openai_server: port file");
    return 1;
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_t t;
    if (pthread_create(&t, NULL, connection, (void *)(intptr_t)c) != 0)
      close(c);
    else
      pthread_detach(t);
  }
}
