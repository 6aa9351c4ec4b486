/* The rules of X-Qiao-Session and --replica-name (tools/qiao/serve/affinity.c):
 * lengths and characters at their limits, and the default replica name,
 * HOST:PORT, with the machine's name for a wildcard host and the port kept
 * whole when the host is too long. */
#include <string.h>
#include <unistd.h>

#include "affinity.h"
#include "test_util.h"

static void test_session_keys(void) {
  char key[SERVE_SESSION_MAX + 2];
  memset(key, 'k', sizeof(key));
  CHECK(serve_session_key_valid(key, SERVE_SESSION_MAX));
  CHECK(!serve_session_key_valid(key, SERVE_SESSION_MAX + 1));
  CHECK(!serve_session_key_valid(key, 0));
  const char *ok = "AZaz09-._~:+/=@";
  CHECK(serve_session_key_valid(ok, strlen(ok)));
  /* Every byte outside the set is refused: spaces, quotes, separators,
   * controls, DEL, non-ASCII, NUL inside the length. */
  for (int c = 0; c < 256; c++) {
    char one[3] = {'a', (char)c, 'b'};
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c != 0 && strchr("-._~:+/=@", c) != NULL);
    if (serve_session_key_valid(one, 3) != allowed) {
      fprintf(stderr, "session byte 0x%02x: expected %s\n", c, allowed ? "valid" : "invalid");
      test_failures++;
    }
  }
}

static void test_replica_names(void) {
  CHECK(serve_replica_name_valid("a"));
  CHECK(serve_replica_name_valid("127.0.0.1:8080"));
  CHECK(serve_replica_name_valid("[::1]:8080"));
  CHECK(serve_replica_name_valid("rack-2_node.7"));
  CHECK(!serve_replica_name_valid(""));
  CHECK(!serve_replica_name_valid("a b"));
  CHECK(!serve_replica_name_valid("a\r\nX-Evil: 1"));
  CHECK(!serve_replica_name_valid("a/b"));
  char name[SERVE_REPLICA_NAME_MAX + 2];
  memset(name, 'n', sizeof(name));
  name[SERVE_REPLICA_NAME_MAX] = '\0';
  CHECK(serve_replica_name_valid(name));
  name[SERVE_REPLICA_NAME_MAX] = 'n';
  name[SERVE_REPLICA_NAME_MAX + 1] = '\0';
  CHECK(!serve_replica_name_valid(name));
}

static void test_default_names(void) {
  char out[SERVE_REPLICA_NAME_MAX + 1];
  serve_replica_name_default("127.0.0.1", 8080, out, sizeof(out));
  CHECK(strcmp(out, "127.0.0.1:8080") == 0);
  serve_replica_name_default("::1", 9, out, sizeof(out));
  CHECK(strcmp(out, "[::1]:9") == 0);
  serve_replica_name_default("my host", 1, out, sizeof(out)); /* never an invalid name */
  CHECK(strcmp(out, "my-host:1") == 0);
  /* A wildcard address says nothing about the machine: its host name instead. */
  char host[256] = "";
  CHECK(gethostname(host, sizeof(host)) == 0);
  const char *wildcards[] = {"0.0.0.0", "::", ""};
  for (size_t i = 0; i < sizeof(wildcards) / sizeof(wildcards[0]); i++) {
    serve_replica_name_default(wildcards[i], 8080, out, sizeof(out));
    CHECK(serve_replica_name_valid(out));
    CHECK(strstr(out, ":8080") != NULL);
    if (host[0] != '\0' && strlen(host) < 40 && strchr(host, ':') == NULL)
      CHECK(strncmp(out, host, strlen(host)) == 0);
  }
  /* A long host is cut; the port is kept. */
  char longhost[200];
  memset(longhost, 'h', sizeof(longhost) - 1);
  longhost[sizeof(longhost) - 1] = '\0';
  serve_replica_name_default(longhost, 65535, out, sizeof(out));
  CHECK(strlen(out) == SERVE_REPLICA_NAME_MAX);
  CHECK(strcmp(out + strlen(out) - 6, ":65535") == 0);
  CHECK(serve_replica_name_valid(out));
}

int main(void) {
  test_session_keys();
  test_replica_names();
  test_default_names();
  TEST_END();
}
