/* UTF-8 checks and random ids. */
#include "text.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

size_t serve_utf8_char_len(const unsigned char *s, size_t len) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xe0) == 0xc0) {
    n = 2, cp = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3, cp = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (len < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

bool serve_utf8_valid(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = serve_utf8_char_len(u + i, len - i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void serve_text_sanitize(char *s) {
  unsigned char *u = (unsigned char *)s;
  size_t len = strlen(s);
  for (size_t i = 0; i < len;) {
    size_t n = serve_utf8_char_len(u + i, len - i);
    if (n == 0 || (n == 1 && ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7f))) {
      u[i++] = '?';
    } else {
      i += n;
    }
  }
}

size_t serve_text_partial_tail(const char *text, size_t len, const char *marker) {
  size_t n = strlen(marker), h = n > 0 ? n - 1 : 0;
  for (h = h < len ? h : len; h > 0; h--)
    if (memcmp(text + len - h, marker, h) == 0) return h;
  return 0;
}

/* getrandom never fails for small sizes once the pool is ready; the clock
 * is a last resort that still gives distinct ids. */
static void random_bytes(void *buf, size_t n) {
  if (getrandom(buf, n, 0) == (ssize_t)n) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)buf;
  unsigned char *b = buf;
  for (size_t i = 0; i < n; i++) {
    x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    b[i] = (unsigned char)(z ^ (z >> 31));
  }
}

void serve_random_hex(char *out, size_t n) {
  static const char digits[] = "0123456789abcdef";
  unsigned char b[64];
  if (n > sizeof(b)) n = sizeof(b);
  random_bytes(b, n);
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

unsigned long long serve_random_u64(void) {
  unsigned long long v = 0;
  random_bytes(&v, sizeof(v));
  return v;
}
