/*
 * vks_audit_event: the audit event as data (part of vks_audit; see vks_audit.h for the module
 * contract and docs/internals/audit.md for the design).
 *
 *  - struct audit_jb: a JSON writer into a fixed, caller-owned buffer (no allocation; an
 *    overflow is remembered and the line is then discarded by the caller).
 *  - struct audit_rec: one lookup snapshotted from a struct vks_audit_event: scalars, the
 *    fingerprint and copies of the strings (each capped at AUDIT_FIELD_MAX bytes). The sync
 *    path and the async queue both format from a record, so both produce identical lines.
 *  - audit_ev_lookup_fields: the secret.lookup members of a line (the chain adds the head
 *    and the MAC, vks_audit_chain.h).
 *
 * Ownership: every buffer and record belongs to the caller. A record may own one malloc'd string
 * block (rec->heap) that audit_rec_release frees. audit_rec_fill never copies the plaintext;
 * only the async queue attaches a locked copy (val / a pool slot) that its writer fingerprints
 * and wipes (vks_audit_async.h).
 * Thread-safety: no shared state; every function works only on the objects it is given, which
 * the caller must not share with another thread during the call.
 */
#ifndef VKS_AUDIT_EVENT_H
#define VKS_AUDIT_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "vks_audit.h"
#include "vks_secmem.h"

#define AUDIT_FIELD_MAX 1024 /* input bytes kept per string field (longer: marked truncated) */
#define AUDIT_LINE_CAP 32768 /* one formatted line, worst case well below                    */
#define AUDIT_REC_INLINE 640 /* inline string storage of a record                            */

/* ---- JSON writer ---------------------------------------------------------------------------- */

struct audit_jb {
    char *p;
    size_t len, cap;
    bool overflow;
};

static inline void audit_jb_mem(struct audit_jb *b, const void *s, size_t n)
{
    if (b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define JB_LIT(b, s) audit_jb_mem((b), (s), sizeof(s) - 1)

static inline void audit_jb_ch(struct audit_jb *b, char c)
{
    if (b->len + 1 >= b->cap) {
        b->overflow = true;
        return;
    }
    b->p[b->len++] = c;
}

void audit_jb_u64(struct audit_jb *b, uint64_t v);
void audit_jb_i64(struct audit_jb *b, int64_t v);
/* A JSON string of n bytes (or null when s is NULL). Invalid UTF-8 becomes U+FFFD; `truncated`
   appends a marker. */
void audit_jb_str(struct audit_jb *b, const char *s, size_t n, bool truncated);
void audit_jb_cstr(struct audit_jb *b, const char *s);

/*
 * "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (quoted). `cache` keeps the formatted seconds between calls; it
 * belongs to the caller (one per thread or under the caller's lock).
 */
struct audit_ts_cache {
    char prefix[32];
    time_t sec;
};
void audit_jb_ts(struct audit_jb *b, const struct timespec *ts,
                     struct audit_ts_cache *cache);

/* ---- a lookup, snapshotted ------------------------------------------------------------------ */

enum {
    AS_API, AS_ERROR, AS_ADDR, AS_NS, AS_MOUNT,
    AS_PATH, AS_KEY, AS_FILE, AS_EVENT, AS_ACCESSOR,
    AS_DOMAIN, AS_SITE, AS_USER, AS_DEST, AS_TAG,
    AS_COUNT
};

struct audit_rec {
    struct timespec ts;
    enum vks_audit_outcome outcome;
    vks_status status;
    enum vks_audit_source source;
    int kv_version;
    int http_status;
    int64_t secret_version, version_pin, cache_age_ms;
    uint64_t latency_ns;
    bool cached, encrypted, has_fp;
    unsigned char fp[VKS_AUDIT_FP_LEN];
    vks_secret val;         /* async only: a locked copy of the value, fingerprinted and wiped
                               by the writer (keeps the HMAC off the caller's path)          */
    bool in_pool;           /* async only: the value sits in the pool slot at the pool head
                               (pool slots are used and released in queue order)             */
    uint32_t pool_len;
    int16_t off[AS_COUNT];  /* -1 = NULL; at most NSTR * FIELD_MAX */
    uint16_t len[AS_COUNT]; /* at most FIELD_MAX */
    uint32_t truncated;     /* bit per field */
    char *heap;             /* string storage when it does not fit inline (malloc) */
    char buf[AUDIT_REC_INLINE];
};

_Static_assert(AS_COUNT * AUDIT_FIELD_MAX <= INT16_MAX, "rec offsets must fit int16_t");

/*
 * Fills r from ev: strings copied (at most AUDIT_FIELD_MAX bytes each), fp (may be NULL)
 * copied, value NOT looked at. False on allocation failure (r then owns nothing).
 */
bool audit_rec_fill(struct audit_rec *r, const struct vks_audit_event *ev,
                        const struct timespec *ts, const unsigned char *fp);
/* Frees the string block a record may own (the record stays usable for nothing else). */
void audit_rec_release(struct audit_rec *r);

/*
 * Appends the secret.lookup members, from ,"api" to ,"fp" (the chain writes the head before and
 * the actor, key id and MACs after).
 */
void audit_ev_lookup_fields(struct audit_jb *b, const struct audit_rec *r);

/* Appends the members of a cred.<action> line (the chain writes the head before and the actor,
 * key id and MACs after). Strings are read from ev directly (sync path only), each capped at
 * AUDIT_FIELD_MAX bytes. */
void audit_ev_admin_fields(struct audit_jb *b, const struct vks_audit_admin_event *ev);

#endif
