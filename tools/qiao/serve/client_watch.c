#include "client_watch.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

bool serve_client_gone(int fd) {
  if (fd < 0) return false;
  /* POLLRDHUP: the peer shut down its side. POLLIN alone may be the next
   * pipelined request, so peek: 0 bytes means end of stream. */
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  int r = poll(&p, 1, 0);
  if (r <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  return false;
}

/* At most this long and this much, so a client cannot hold the thread. */
#define LINGER_MS 2000
#define LINGER_BYTES (16u << 20)

void serve_client_linger(int fd) {
  if (fd < 0) return;
  shutdown(fd, SHUT_WR); /* the answer is complete: the client sees the end */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char scratch[16384];
  for (size_t total = 0; total < LINGER_BYTES;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long elapsed = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (elapsed >= LINGER_MS) break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(LINGER_MS - elapsed)) <= 0) break;
    ssize_t n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    if (n > 0) total += (size_t)n;
  }
}
