/* Small text helpers for what goes out of the server: UTF-8 checks (JSON
 * we send must be valid UTF-8 even when it quotes a request) and hex ids. */
#ifndef QIAO_SERVE_TEXT_H
#define QIAO_SERVE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..len) (1-4), or 0 when the
 * bytes there are not one (overlong forms and surrogates are invalid). */
size_t serve_utf8_char_len(const unsigned char *s, size_t len);

bool serve_utf8_valid(const char *s, size_t len);

/* Replaces every byte that is not part of valid UTF-8, and every ASCII
 * control character except tab, with '?', in place (for logs and messages). */
void serve_text_sanitize(char *s);

/* The length of the longest tail of text[0..len) that is the start of
 * `marker` without being all of it: bytes a stream must hold back because
 * the marker may still be arriving (split across tokens). */
size_t serve_text_partial_tail(const char *text, size_t len, const char *marker);

/* Fills out[0..2n] with 2n random hex digits and a NUL. */
void serve_random_hex(char *out, size_t n);

/* A random 64-bit number (for seeds when the request gives none). */
unsigned long long serve_random_u64(void);

#endif
