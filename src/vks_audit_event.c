/*
 * vks_audit_event: the JSON writer, event records and the secret.lookup fields (vks_audit_event.h).
 * Design notes: docs/internals/audit.md.
 */
#include "vks_audit_event.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vks_hmac.h"

static const char *const outcome_names[VKS_AUDIT_OUTCOME_COUNT] = {
    "hit", "miss", "refresh", "stale", "negative_cached", "denied", "error",
};
static const char *const source_names[VKS_AUDIT_SRC_COUNT] = {
    "unknown", "file", "key_data", "vault", "event",
};
static const char *const mode_names[] = { "sync", "fsync", "async" };

const char *vks_audit_outcome_name(enum vks_audit_outcome o)
{
    return (unsigned)o < VKS_AUDIT_OUTCOME_COUNT ? outcome_names[o] : "error";
}

const char *vks_audit_source_name(enum vks_audit_source s)
{
    return (unsigned)s < VKS_AUDIT_SRC_COUNT ? source_names[s] : "unknown";
}

const char *vks_audit_mode_name(enum vks_audit_mode m)
{
    return (unsigned)m <= VKS_AUDIT_ASYNC ? mode_names[m] : "sync";
}

/* ------------------------------------------------------------------------------------------ */
/* JSON output into a fixed buffer                                                             */

void audit_jb_u64(struct audit_jb *b, uint64_t v)
{
    char t[24];
    int i = 24;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    audit_jb_mem(b, t + i, (size_t)(24 - i));
}

void audit_jb_i64(struct audit_jb *b, int64_t v)
{
    if (v < 0) {
        audit_jb_ch(b, '-');
        audit_jb_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        audit_jb_u64(b, (uint64_t)v);
    }
}

/* Length of a valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF)
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0;
        if (c == 0xED && s[1] > 0x9F)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0;
        if (c == 0xF4 && s[1] > 0x8F)
            return 0;
        return 4;
    }
    return 0;
}

void audit_jb_str(struct audit_jb *b, const char *s, size_t n, bool truncated)
{
    static const char hexd[] = "0123456789abcdef";
    if (s == NULL) {
        JB_LIT(b, "null");
        return;
    }
    audit_jb_ch(b, '"');
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            audit_jb_mem(b, u + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            audit_jb_mem(b, e, 2);
            i++;
        } else if (c == '\n') {
            JB_LIT(b, "\\n");
            i++;
        } else if (c == '\t') {
            JB_LIT(b, "\\t");
            i++;
        } else if (c == '\r') {
            JB_LIT(b, "\\r");
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15] };
            audit_jb_mem(b, e, 6);
            i++;
        } else {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                JB_LIT(b, "\\ufffd");
                i++;
            } else {
                audit_jb_mem(b, u + i, l);
                i += l;
            }
        }
    }
    if (truncated)
        JB_LIT(b, "...[truncated]");
    audit_jb_ch(b, '"');
}

void audit_jb_cstr(struct audit_jb *b, const char *s)
{
    audit_jb_str(b, s, s ? strlen(s) : 0, false);
}

void audit_jb_ts(struct audit_jb *b, const struct timespec *ts, struct audit_ts_cache *cache)
{
    if (ts->tv_sec != cache->sec || cache->prefix[0] == '\0') {
        struct tm tm;
        gmtime_r(&ts->tv_sec, &tm);
        strftime(cache->prefix, sizeof cache->prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        cache->sec = ts->tv_sec;
    }
    audit_jb_ch(b, '"');
    audit_jb_mem(b, cache->prefix, strlen(cache->prefix));
    char frac[8];
    long us = ts->tv_nsec / 1000;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[7] = 'Z';
    audit_jb_mem(b, frac, 8);
    audit_jb_ch(b, '"');
}

/* ------------------------------------------------------------------------------------------ */
/* a lookup, snapshotted (strings copied, value replaced by its fingerprint)                   */

static inline const char *rec_str(const struct audit_rec *r, int i)
{
    if (r->off[i] < 0)
        return NULL;
    return (r->heap != NULL ? r->heap : r->buf) + r->off[i];
}

bool audit_rec_fill(struct audit_rec *r, const struct vks_audit_event *ev,
                    const struct timespec *ts, const unsigned char *fp)
{
    const char *src[AS_COUNT] = {
        [AS_API] = ev->api, [AS_ERROR] = ev->error, [AS_ADDR] = ev->vault_addr,
        [AS_NS] = ev->namespace_, [AS_MOUNT] = ev->mount, [AS_PATH] = ev->path, [AS_KEY] = ev->key,
        [AS_FILE] = ev->file_path, [AS_EVENT] = ev->event_name, [AS_ACCESSOR] = ev->token_accessor,
        [AS_DOMAIN] = ev->ctx.domain, [AS_SITE] = ev->ctx.site_name, [AS_USER] = ev->ctx.username,
        [AS_DEST] = ev->ctx.destination, [AS_TAG] = ev->ctx.tag,
    };
    size_t lens[AS_COUNT], total = 0;
    r->truncated = 0;
    for (int i = 0; i < AS_COUNT; i++) {
        lens[i] = 0;
        if (src[i] != NULL) {
            lens[i] = strnlen(src[i], AUDIT_FIELD_MAX + 1);
            if (lens[i] > AUDIT_FIELD_MAX) {
                lens[i] = AUDIT_FIELD_MAX;
                r->truncated |= 1u << i;
            }
            total += lens[i];
        }
    }
    char *dst = r->buf;
    r->heap = NULL;
    if (total > AUDIT_REC_INLINE) {
        r->heap = malloc(total);
        if (r->heap == NULL)
            return false;
        dst = r->heap;
    }
    size_t at = 0;
    for (int i = 0; i < AS_COUNT; i++) {
        if (src[i] == NULL) {
            r->off[i] = -1;
            r->len[i] = 0;
            continue;
        }
        memcpy(dst + at, src[i], lens[i]);
        r->off[i] = (int16_t)at;
        r->len[i] = (uint16_t)lens[i];
        at += lens[i];
    }
    r->ts = *ts;
    r->outcome = ev->outcome;
    r->status = ev->status;
    r->source = ev->source;
    r->kv_version = ev->kv_version;
    r->http_status = ev->http_status;
    r->secret_version = ev->secret_version;
    r->version_pin = ev->version_pin;
    r->cache_age_ms = ev->cache_age_ms;
    r->latency_ns = ev->latency_ns;
    r->cached = ev->cached;
    r->encrypted = ev->encrypted;
    r->has_fp = fp != NULL;
    if (fp != NULL)
        memcpy(r->fp, fp, VKS_AUDIT_FP_LEN);
    r->val = VKS_SECRET_EMPTY;
    r->in_pool = false;
    r->pool_len = 0;
    return true;
}

void audit_rec_release(struct audit_rec *r)
{
    free(r->heap);
    r->heap = NULL;
}

static void jb_strf(struct audit_jb *b, const struct audit_rec *r, int i)
{
    audit_jb_str(b, rec_str(r, i), r->len[i], (r->truncated >> i) & 1u);
}

static void jb_opt_int(struct audit_jb *b, int64_t v)
{
    if (v == 0)
        JB_LIT(b, "null");
    else
        audit_jb_i64(b, v);
}

void audit_ev_lookup_fields(struct audit_jb *b, const struct audit_rec *r)
{
    JB_LIT(b, ",\"api\":");
    if (r->off[AS_API] < 0)
        JB_LIT(b, "\"resolve\"");
    else
        jb_strf(b, r, AS_API);
    JB_LIT(b, ",\"outcome\":\"");
    audit_jb_mem(b, vks_audit_outcome_name(r->outcome), strlen(vks_audit_outcome_name(r->outcome)));
    JB_LIT(b, "\",\"result\":\"");
    if (r->status == VKS_OK)
        JB_LIT(b, "success");
    else
        JB_LIT(b, "failure");
    JB_LIT(b, "\",\"code\":\"");
    audit_jb_mem(b, vks_status_code(r->status), strlen(vks_status_code(r->status)));
    JB_LIT(b, "\",\"error\":");
    jb_strf(b, r, AS_ERROR);
    JB_LIT(b, ",\"source\":\"");
    audit_jb_mem(b, vks_audit_source_name(r->source), strlen(vks_audit_source_name(r->source)));
    JB_LIT(b, "\",\"vault_addr\":");
    jb_strf(b, r, AS_ADDR);
    JB_LIT(b, ",\"namespace\":");
    jb_strf(b, r, AS_NS);
    JB_LIT(b, ",\"mount\":");
    jb_strf(b, r, AS_MOUNT);
    JB_LIT(b, ",\"path\":");
    jb_strf(b, r, AS_PATH);
    JB_LIT(b, ",\"key\":");
    jb_strf(b, r, AS_KEY);
    JB_LIT(b, ",\"file\":");
    jb_strf(b, r, AS_FILE);
    JB_LIT(b, ",\"event_name\":");
    jb_strf(b, r, AS_EVENT);
    JB_LIT(b, ",\"kv_version\":");
    jb_opt_int(b, r->kv_version);
    JB_LIT(b, ",\"secret_version\":");
    jb_opt_int(b, r->secret_version);
    JB_LIT(b, ",\"version_pin\":");
    jb_opt_int(b, r->version_pin);
    JB_LIT(b, ",\"cached\":");
    if (r->cached) {
        JB_LIT(b, "true,\"cache_age_ms\":");
        audit_jb_i64(b, r->cache_age_ms);
    } else {
        JB_LIT(b, "false,\"cache_age_ms\":null");
    }
    JB_LIT(b, ",\"latency_us\":");
    /* microseconds with three decimals: sub-microsecond cache hits stay visible */
    audit_jb_u64(b, r->latency_ns / 1000);
    char frac[4] = { '.', (char)('0' + (r->latency_ns / 100) % 10),
                     (char)('0' + (r->latency_ns / 10) % 10), (char)('0' + r->latency_ns % 10) };
    audit_jb_mem(b, frac, 4);
    JB_LIT(b, ",\"http_status\":");
    jb_opt_int(b, r->http_status);
    JB_LIT(b, ",\"token_accessor\":");
    jb_strf(b, r, AS_ACCESSOR);
    JB_LIT(b, ",\"ctx\":{\"domain\":");
    jb_strf(b, r, AS_DOMAIN);
    JB_LIT(b, ",\"site_name\":");
    jb_strf(b, r, AS_SITE);
    JB_LIT(b, ",\"username\":");
    jb_strf(b, r, AS_USER);
    JB_LIT(b, ",\"destination\":");
    jb_strf(b, r, AS_DEST);
    JB_LIT(b, ",\"tag\":");
    jb_strf(b, r, AS_TAG);
    JB_LIT(b, "},\"encrypted\":");
    if (r->encrypted)
        JB_LIT(b, "true");
    else
        JB_LIT(b, "false");
    JB_LIT(b, ",\"fp\":");
    if (r->has_fp) {
        char hex[2 * VKS_AUDIT_FP_LEN + 1];
        vks_hmac_hex(r->fp, VKS_AUDIT_FP_LEN, hex);
        audit_jb_ch(b, '"');
        audit_jb_mem(b, hex, 2 * VKS_AUDIT_FP_LEN);
        audit_jb_ch(b, '"');
    } else {
        JB_LIT(b, "null");
    }
}

static void jb_capped(struct audit_jb *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    audit_jb_str(b, s, n > AUDIT_FIELD_MAX ? AUDIT_FIELD_MAX : n, n > AUDIT_FIELD_MAX);
}

void audit_ev_admin_fields(struct audit_jb *b, const struct vks_audit_admin_event *ev)
{
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        { ",\"error\":", offsetof(struct vks_audit_admin_event, error) },
        { ",\"operator\":", offsetof(struct vks_audit_admin_event, operator_name) },
        { ",\"operator_accessor\":", offsetof(struct vks_audit_admin_event, operator_accessor) },
        { ",\"source\":", offsetof(struct vks_audit_admin_event, source) },
        { ",\"vault_addr\":", offsetof(struct vks_audit_admin_event, vault_addr) },
        { ",\"namespace\":", offsetof(struct vks_audit_admin_event, namespace_) },
        { ",\"mount\":", offsetof(struct vks_audit_admin_event, mount) },
        { ",\"path\":", offsetof(struct vks_audit_admin_event, path) },
        { ",\"username\":", offsetof(struct vks_audit_admin_event, username) },
        { ",\"reason\":", offsetof(struct vks_audit_admin_event, reason) },
        { ",\"detail\":", offsetof(struct vks_audit_admin_event, detail) },
    };
    JB_LIT(b, ",\"action\":");
    audit_jb_cstr(b, ev->action);
    JB_LIT(b, ",\"result\":\"");
    if (ev->status == VKS_OK)
        JB_LIT(b, "success");
    else
        JB_LIT(b, "failure");
    JB_LIT(b, "\",\"code\":\"");
    audit_jb_mem(b, vks_status_code(ev->status), strlen(vks_status_code(ev->status)));
    audit_jb_ch(b, '"');
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        audit_jb_mem(b, strs[i].name, strlen(strs[i].name));
        jb_capped(b, *(const char *const *)((const char *)ev + strs[i].off));
    }
    JB_LIT(b, ",\"secret_version\":");
    jb_opt_int(b, ev->secret_version);
    if (ev->client_addr != NULL) { /* vks serve only: events of other programs keep their shape */
        JB_LIT(b, ",\"client_addr\":");
        jb_capped(b, ev->client_addr);
    }
    if (ev->user_agent != NULL) {
        JB_LIT(b, ",\"user_agent\":");
        jb_capped(b, ev->user_agent);
    }
}
