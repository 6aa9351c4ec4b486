/* Routing affinity behind a load balancer (examples/scale-out/).
 *
 * X-Qiao-Session (request): a session or conversation key the client picks
 * and sends with every request of one conversation. Balancers hash on it
 * (consistent hashing), so a conversation keeps landing on the replica whose
 * prefix cache holds its earlier turns. qiao serve itself only checks it
 * (1 to SERVE_SESSION_MAX bytes of [A-Za-z0-9] and -._~:+/=@; else 400) and
 * logs it; it is a routing key, not a secret.
 *
 * X-Qiao-Replica (response, on every response): the name of the process
 * that answered (--replica-name; default HOST:PORT, the machine's host name
 * when HOST is a wildcard address), so clients and operators can see where a
 * request went. */
#ifndef QIAO_SERVE_AFFINITY_H
#define QIAO_SERVE_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>

#define SERVE_SESSION_HEADER "X-Qiao-Session"
#define SERVE_REPLICA_HEADER "X-Qiao-Replica"
#define SERVE_SESSION_MAX 128
#define SERVE_REPLICA_NAME_MAX 64

/* Whether s[0..len) is a valid X-Qiao-Session value. */
bool serve_session_key_valid(const char *s, size_t len);

/* Whether s (NUL-terminated) is a valid --replica-name: 1 to
 * SERVE_REPLICA_NAME_MAX bytes of [A-Za-z0-9] and -._:[] (host:port, [v6]:port). */
bool serve_replica_name_valid(const char *s);

/* The default replica name, HOST:PORT, into out[0..size) (truncated to
 * SERVE_REPLICA_NAME_MAX). A wildcard HOST (0.0.0.0, ::, empty) becomes the
 * machine's host name; characters a name may not hold become '-'. */
void serve_replica_name_default(const char *host, unsigned port, char *out, size_t size);

#endif
