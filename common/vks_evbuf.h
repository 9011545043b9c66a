/*
 * vks_evbuf: taking a request body out of libevent without leaving a copy behind, shared by
 * vks-agent (agent/inbound_http.c: inbound passwords) and vks serve (web/: logins, one-time codes,
 * any JSON body). evbuffer_pullup would first copy a body that arrived in several chains into one
 * new chain and free the old ones unwiped, and evbuffer_remove frees its chains unwiped; this walks
 * the chains in place instead: copy (optional), wipe, drain, one chain at a time.
 *
 * Header-only (two programs, one small function). Ownership: dst is the caller's (locked memory
 * for a secret); the buffer is the request's. Thread-safety: as the evbuffer (the loop thread).
 */
#ifndef VKS_EVBUF_H
#define VKS_EVBUF_H

#include <event2/buffer.h>
#include <string.h>

#include "vks_secmem.h"

/* Copies up to cap bytes from the front of in into dst (dst may be NULL with cap 0), wipes every
 * byte of in where libevent holds it and drains it all. Returns the bytes copied. */
static inline size_t vks_evbuffer_take_wiped(struct evbuffer *in, unsigned char *dst, size_t cap)
{
    size_t copied = 0;
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t take = v.iov_len < cap - copied ? v.iov_len : cap - copied;
        if (dst != NULL && take > 0) {
            memcpy(dst + copied, v.iov_base, take);
            copied += take;
        }
        vks_wipe(v.iov_base, v.iov_len);
        evbuffer_drain(in, v.iov_len);
    }
    size_t rest = evbuffer_get_length(in); /* only if peek failed: drop it unread */
    if (rest > 0)
        evbuffer_drain(in, rest);
    return copied;
}

#endif
