/*
 * vks_json: a small, allocation-free JSON scanner for secret-bearing bodies (docs/internals/json.md).
 *
 * Vault answers carry secrets (data.data.<key>, auth.client_token). They must never go through a
 * parser that copies them into realloc-grown heap buffers (json-c does), so this scanner works on
 * the body where it lies (a vks_scratch) and reports *spans* (offset, length, type) into it. A
 * string span is decoded (escapes, \uXXXX, surrogate pairs) straight into a caller-supplied buffer,
 * usually a vks_secret slot.
 *
 * One pass validates the whole document (RFC 8259 grammar, UTF-8, nesting depth at most
 * VKS_JSON_MAX_DEPTH, nothing but whitespace after the value) and records where each query path
 * ends up. A truncated or malformed body is therefore always an error, even when the wanted value
 * came before the damage. A key repeated in one object (compared after unescaping) makes the
 * whole document malformed (VKS_E_BAD_RESPONSE): see docs/internals/json.md, "Repeated keys".
 *
 * Error messages name the byte offset and what was expected, never any byte of the document.
 *
 * Ownership: spans point into the caller's buffer and live as long as it. The only allocation is
 * the index of object keys for repeated-key detection once a document has more than 64 keys
 * (offsets and hashes, never a byte of the document), freed before vks_json_scan returns.
 * Thread-safety: every function is reentrant (no global state).
 */
#ifndef VKS_JSON_H
#define VKS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"

#define VKS_JSON_MAX_DEPTH 64   /* nesting limit (objects + arrays)                  */
#define VKS_JSON_MAX_PATH  8    /* components of one query path                      */
#define VKS_JSON_MAX_QUERY 16   /* queries answered by one scan                      */

enum vks_json_type {
    VKS_JSON_NONE = 0,  /* not present */
    VKS_JSON_OBJECT,
    VKS_JSON_ARRAY,
    VKS_JSON_STRING,
    VKS_JSON_NUMBER,
    VKS_JSON_TRUE,
    VKS_JSON_FALSE,
    VKS_JSON_NULL,
};

/* A value inside the scanned buffer: buf[off .. off+len). For strings the span includes the
 * quotes; for objects and arrays the braces/brackets. */
struct vks_json_span {
    enum vks_json_type type;
    size_t off;
    size_t len;
};

/* One lookup: the object keys leading to the value (compared after unescaping), and the result.
 * A path with npath == 0 designates the whole document. */
struct vks_json_query {
    const char *path[VKS_JSON_MAX_PATH];
    size_t npath;
    struct vks_json_span found;  /* type VKS_JSON_NONE when absent */
};

/*
 * Validates buf[0..len) and fills every query's `found`. Returns VKS_OK (absent paths are not an
 * error: check found.type), or VKS_E_BAD_RESPONSE for malformed/truncated input or a repeated key
 * (message "... a key is repeated in one object ..."), VKS_E_NOMEM (key index), VKS_E_INVALID_ARG
 * for bad arguments (nq > VKS_JSON_MAX_QUERY, npath > VKS_JSON_MAX_PATH). `what` names the body in
 * the error message (e.g. "response of GET secret/data/x"); may be NULL.
 */
vks_status vks_json_scan(const char *buf, size_t len, struct vks_json_query *q, size_t nq,
                         const char *what, struct vks_err *err);

/* Convenience: one dotted path ("auth.client_token"; keys containing '.' need vks_json_scan). */
vks_status vks_json_find(const char *buf, size_t len, const char *dotted_path,
                         struct vks_json_span *out, struct vks_err *err);

/* Number of bytes the decoded string of span s needs (exact). s must be a VKS_JSON_STRING span from
 * a successful scan of buf. */
size_t vks_json_string_decoded_len(const char *buf, const struct vks_json_span *s);

/* Decodes the string span s into out[0..cap). Fails with VKS_E_BAD_RESPONSE when cap is too small
 * (out is then wiped) or s is not a string. *out_len gets the decoded length. Lone surrogates
 * decode to U+FFFD like Go. The output is not NUL-terminated. */
vks_status vks_json_string_decode(const char *buf, const struct vks_json_span *s,
                                  unsigned char *out, size_t cap, size_t *out_len,
                                  struct vks_err *err);

/* True when the string span s decodes to exactly the NUL-terminated lit. */
bool vks_json_string_equals(const char *buf, const struct vks_json_span *s, const char *lit);

/* Integer value of a number span (no fraction/exponent, fits in int64). */
bool vks_json_int64(const char *buf, const struct vks_json_span *s, int64_t *out);

/* Iterates the elements of an array span: start with *cursor = 0; returns false after the last.
 * Only for spans from a successful scan (the array is known to be well-formed). */
bool vks_json_array_next(const char *buf, const struct vks_json_span *arr, size_t *cursor,
                         struct vks_json_span *elem);

/*
 * Writes a JSON string literal (with quotes) for in[0..n) into out[0..cap), escaping '"', '\\' and
 * control characters. Returns the number of bytes written, or 0 when cap is too small (out is then
 * wiped). Used to build request bodies that carry secrets (AppRole secret_id) in scratch memory.
 */
size_t vks_json_write_string(const unsigned char *in, size_t n, char *out, size_t cap);

#endif
