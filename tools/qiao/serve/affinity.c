/* X-Qiao-Session and X-Qiao-Replica: the values' rules (see affinity.h).
 * Both travel in HTTP headers and the request log, so each is a short run
 * of characters that need no quoting anywhere. */
#include "affinity.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool is_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool session_char(unsigned char c) {
  return is_alnum(c) || (c != '\0' && strchr("-._~:+/=@", c) != NULL);
}

static bool replica_char(unsigned char c) {
  return is_alnum(c) || (c != '\0' && strchr("-._:[]", c) != NULL);
}

bool serve_session_key_valid(const char *s, size_t len) {
  if (len == 0 || len > SERVE_SESSION_MAX) return false;
  for (size_t i = 0; i < len; i++)
    if (!session_char((unsigned char)s[i])) return false;
  return true;
}

bool serve_replica_name_valid(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > SERVE_REPLICA_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++)
    if (!replica_char((unsigned char)s[i])) return false;
  return true;
}

void serve_replica_name_default(const char *host, unsigned port, char *out, size_t size) {
  char name[256] = "";
  bool wildcard = host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
                  strcmp(host, "[::]") == 0;
  if (!wildcard || gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
    snprintf(name, sizeof(name), "%s", wildcard ? "localhost" : host);
  name[sizeof(name) - 1] = '\0';
  bool v6 = strchr(name, ':') != NULL;
  char suffix[16];
  snprintf(suffix, sizeof(suffix), ":%u", port);
  /* A long host name is cut, never the port. */
  int room = SERVE_REPLICA_NAME_MAX - (int)strlen(suffix) - (v6 ? 2 : 0);
  char full[SERVE_REPLICA_NAME_MAX + 1];
  snprintf(full, sizeof(full), "%s%.*s%s%s", v6 ? "[" : "", room, name, v6 ? "]" : "", suffix);
  for (char *p = full; *p != '\0'; p++)
    if (!replica_char((unsigned char)*p)) *p = '-';
  snprintf(out, size, "%s", full);
}
