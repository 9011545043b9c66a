/*
 * vks_redact: the one place that makes a URL (or a text holding URLs) safe to print. Every tool
 * and message that shows an address goes through it (docs/internals/redact.md).
 *
 * Redacted: the user information (`https://user:password@host` -> `https://<redacted>@host`), the
 * query (`?token=...` -> `?<redacted>`) and the fragment (`#...` -> `#<redacted>`), which can all
 * carry credentials; control bytes become '?' so a printed line stays one line. Scheme, host, port
 * and path are kept: they say where a request went, which is what an operator needs to read.
 *
 * Both functions work like snprintf: they write at most cap - 1 bytes and a NUL into `out` (when
 * cap > 0) and return the length the whole result needs, so a caller can size a buffer with
 * cap = 0 first. Input is taken with its length (it may hold NUL bytes, printed as '?').
 *
 * No allocation, no global state, no dependency: safe from any thread, usable by every program
 * (the module, vks, vks-policy).
 */
#ifndef VKS_REDACT_H
#define VKS_REDACT_H

#include <stddef.h>

/* One URL (or address). Without "scheme://" the whole string is taken as starting at the
 * authority (`user:pw@host:8200/x`), so a scheme-less address is redacted too. */
size_t vks_redact_url(const char *url, size_t len, char *out, size_t cap);

/* Free text: every URL in it (a scheme followed by "://", up to white space, a quote, '<' or '>')
 * is redacted as vks_redact_url does; the rest is copied (control bytes other than newline and
 * tab become '?'). */
size_t vks_redact_text(const char *text, size_t len, char *out, size_t cap);

#endif
