/*
 * vks_audit_chain: the HMAC chain, its sinks and its housekeeping events (vks_audit_chain.h).
 * Design notes: docs/internals/audit.md.
 */
#include "vks_audit_chain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vks_audit_int.h"

#define A audit_A /* the shared state (vks_audit_int.h) */

/* The chain and its sinks: guarded by the audit lock. */
static struct {
    struct audit_sink sinks[AUDIT_MAX_SINKS];
    int nsinks;
    char chain_id[33];
    uint64_t seq;
    unsigned char prev_mac[VKS_HMAC_LEN];
    unsigned char line_mac[VKS_HMAC_LEN];   /* MAC of the line in C.line */
    bool started;
    EVP_MD_CTX *md;
    char actor[600];
    size_t actor_len;
    pid_t pid;
    struct audit_ts_cache ts_cache;
    uint64_t reported_dropped, reported_failures;
    long reopen_ms;
    int64_t deadline_ms;    /* of the writes of the current call (audit_now_ms clock) */
    int syslog_facility;
    char syslog_ident[64];
    char line[AUDIT_LINE_CAP];
} C;

/*
 * Sinks configured off while the chain goes on, remembered so that the same place configured
 * again announces exactly which events it did not get (an audit.open with missed_from..missed_to)
 * instead of showing an unexplained gap. Guarded by the audit lock; forgotten with the chain.
 */
#define DEPARTED_MAX 8
static struct departed {
    struct audit_sink id;     /* kind and path only (path owned here) */
    uint64_t missed_from;
} departed[DEPARTED_MAX];
static int ndeparted;

static void departed_clear(void)
{
    for (int i = 0; i < ndeparted; i++)
        free(departed[i].id.path);
    ndeparted = 0;
}

static void departed_add(const struct audit_sink *s, uint64_t missed_from)
{
    char *path = s->path ? strdup(s->path) : NULL;
    if (s->path != NULL && path == NULL)
        return; /* out of memory: a later gap is then reported, never hidden */
    if (ndeparted == DEPARTED_MAX) {
        free(departed[0].id.path);
        memmove(departed, departed + 1, (DEPARTED_MAX - 1) * sizeof *departed);
        ndeparted--;
    }
    struct departed *d = &departed[ndeparted++];
    memset(d, 0, sizeof *d);
    d->id.kind = s->kind;
    d->id.path = path;
    d->missed_from = missed_from;
}

/* A sink configured again: the events it missed since it was configured off. */
static bool departed_take(const struct audit_sink *s, uint64_t *missed_from)
{
    for (int i = 0; i < ndeparted; i++) {
        if (!audit_sink_same_place(&departed[i].id, s))
            continue;
        *missed_from = departed[i].missed_from;
        free(departed[i].id.path);
        memmove(departed + i, departed + i + 1, (size_t)(ndeparted - i - 1) * sizeof *departed);
        ndeparted--;
        return true;
    }
    return false;
}

/* per-thread capture for the Lua callback sink */
static __thread bool cap_active;
static __thread char *cap_buf;
static __thread size_t cap_len;

int audit_capture_mode(void)
{
    return !cap_active ? AUDIT_CAP_NONE
           : atomic_load(&A.callback) ? AUDIT_CAP_COUNTS : AUDIT_CAP_DELIVER;
}

static void new_chain_id(void)
{
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            /* no entropy source: still unique enough per process for a chain id */
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            uint64_t v[2] = { (uint64_t)t.tv_sec ^ ((uint64_t)getpid() << 32),
                              (uint64_t)t.tv_nsec };
            memcpy(r, v, sizeof r);
            break;
        }
        got += (size_t)n;
    }
    vks_hmac_hex(r, sizeof r, C.chain_id);
}

static void build_actor(void)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "");
    host[sizeof host - 1] = '\0';
    struct audit_jb b = { C.actor, 0, sizeof C.actor, false };
    JB_LIT(&b, ",\"actor\":{\"host\":");
    audit_jb_cstr(&b, host);
    JB_LIT(&b, ",\"pid\":");
    audit_jb_i64(&b, (int64_t)getpid());
    JB_LIT(&b, ",\"uid\":");
    audit_jb_u64(&b, (uint64_t)getuid());
    JB_LIT(&b, ",\"program\":");
    audit_jb_cstr(&b, program_invocation_short_name);
    audit_jb_ch(&b, '}');
    C.actor_len = b.overflow ? 0 : b.len;
    C.pid = getpid();
}

void audit_chain_new(void)
{
    departed_clear();
    new_chain_id();
    C.seq = 0;
    memset(C.prev_mac, 0, sizeof C.prev_mac);
    C.started = false;
    C.reported_dropped = atomic_load(&A.dropped);
    C.reported_failures = atomic_load(&A.failures);
    build_actor();
}

static void line_head(struct audit_jb *b, const struct timespec *ts, const char *type)
{
    JB_LIT(b, "{\"v\":1,\"chain\":\"");
    audit_jb_mem(b, C.chain_id, 32);
    JB_LIT(b, "\",\"seq\":");
    audit_jb_u64(b, C.seq);
    JB_LIT(b, ",\"ts\":");
    audit_jb_ts(b, ts, &C.ts_cache);
    JB_LIT(b, ",\"type\":\"");
    audit_jb_mem(b, type, strlen(type));
    audit_jb_ch(b, '"');
}

/* Appends actor, key id, prev_mac and the MAC; returns the length (with '\n') or 0. */
static size_t line_finish(struct audit_jb *b)
{
    const struct vks_audit_keys *k = atomic_load(&A.keys);
    char hex[2 * VKS_HMAC_LEN + 1];
    audit_jb_mem(b, C.actor, C.actor_len);
    JB_LIT(b, ",\"key_id\":\"");
    audit_jb_mem(b, k->key_id, strlen(k->key_id));
    JB_LIT(b, "\",\"prev_mac\":\"");
    vks_hmac_hex(C.prev_mac, VKS_HMAC_LEN, hex);
    audit_jb_mem(b, hex, 64);
    audit_jb_ch(b, '"');
    if (b->overflow)
        return 0;
    if (!vks_hmac_ctx(C.md, &k->chain, b->p, b->len, C.line_mac))
        return 0;
    JB_LIT(b, ",\"mac\":\"");
    vks_hmac_hex(C.line_mac, VKS_HMAC_LEN, hex);
    audit_jb_mem(b, hex, 64);
    JB_LIT(b, "\"}\n");
    if (b->overflow)
        return 0;
    return b->len;
}

static void capture_append(const char *line, size_t len_nl)
{
    size_t len = len_nl - 1; /* without '\n' */
    char *nb = realloc(cap_buf, cap_len + len + 2);
    if (nb == NULL)
        return;
    cap_buf = nb;
    if (cap_len > 0)
        cap_buf[cap_len++] = '\n';
    memcpy(cap_buf + cap_len, line, len);
    cap_len += len;
    cap_buf[cap_len] = '\0';
}

static void note_sink_error(struct audit_sink *s, int e)
{
    atomic_fetch_add(&A.sink_errors, 1);
    if (e == ETIMEDOUT) {
        atomic_fetch_add(&A.timeouts, 1);
        snprintf(A.last_error, sizeof A.last_error,
                 "%s sink%s%s: stalled, no room within the write deadline (timeout_ms %ld)",
                 audit_sink_name(s->kind), s->path ? " " : "", s->path ? s->path : "",
                 (long)atomic_load(&A.timeout_ms));
        return;
    }
    snprintf(A.last_error, sizeof A.last_error, "%s sink%s%s: %s", audit_sink_name(s->kind),
             s->path ? " " : "", s->path ? s->path : "", strerror(e));
}

/* One line to one sink; a failure is counted and remembered for the error message. */
static bool sink_write(struct audit_sink *s, const char *line, size_t len)
{
    struct audit_write_opts o = {
        .fsync = (enum vks_audit_mode)atomic_load(&A.mode) == VKS_AUDIT_FSYNC,
        .syslog_facility = C.syslog_facility,
        .syslog_ident = C.syslog_ident,
    };
    int e = 0;
    if (audit_sink_write(s, line, len, &o, C.deadline_ms, &e))
        return true;
    note_sink_error(s, e);
    return false;
}

/*
 * Writes one formatted chain event to the target sinks. `only` restricts the targets to one sink
 * (its audit.open); otherwise every sink that does not wait for its audit.open. Commits the chain
 * when at least one sink (or the capture) recorded it; otherwise rolls back (the seq is reused).
 */
static bool chain_commit(const char *line, size_t len, int only, bool start, int capture)
{
    int recorded = 0;
    for (int i = 0; i < C.nsinks; i++) {
        struct audit_sink *s = &C.sinks[i];
        s->ok_now = false;
        bool target = start || only == i || !s->need_open;
        if (!target)
            continue;
        s->ok_now = sink_write(s, line, len);
        if (s->ok_now)
            recorded++;
    }
    if (capture == AUDIT_CAP_COUNTS)
        recorded++;
    if (recorded == 0)
        return false;
    if (capture != AUDIT_CAP_NONE)
        capture_append(line, len);
    /* committed: the MAC of this line (always the one in C.line) becomes prev_mac */
    memcpy(C.prev_mac, C.line_mac, VKS_HMAC_LEN);
    for (int i = 0; i < C.nsinks; i++) {
        struct audit_sink *s = &C.sinks[i];
        bool target = start || only == i || !s->need_open;
        if (target && s->ok_now) {
            if (start || only == i) {
                s->need_open = false;
                s->missing = false;
            }
        } else {
            /* this sink misses this event: it gets an audit.open naming the gap first */
            if (!s->missing) {
                s->missing = true;
                s->missed_from = C.seq;
                s->open_reason = "resume";
            }
            s->need_open = true;
        }
    }
    C.seq++;
    atomic_fetch_add(&A.written, 1);
    return true;
}

static void jb_mode_fields(struct audit_jb *b)
{
    JB_LIT(b, ",\"mode\":\"");
    const char *m = vks_audit_mode_name((enum vks_audit_mode)atomic_load(&A.mode));
    audit_jb_mem(b, m, strlen(m));
    JB_LIT(b, "\",\"on_failure\":\"");
    if (atomic_load(&A.on_failure) == VKS_AUDIT_ALLOW)
        JB_LIT(b, "allow");
    else
        JB_LIT(b, "deny");
    JB_LIT(b, "\",\"schema\":1");
}

static bool emit_start(int capture)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct audit_jb b = { C.line, 0, sizeof C.line, false };
    line_head(&b, &ts, "audit.open");
    JB_LIT(&b, ",\"reason\":\"start\",\"sink\":null,\"sinks\":[");
    for (int i = 0; i < C.nsinks; i++) {
        if (i > 0)
            audit_jb_ch(&b, ',');
        const char *name = audit_sink_name(C.sinks[i].kind);
        audit_jb_ch(&b, '"');
        audit_jb_mem(&b, name, strlen(name));
        audit_jb_ch(&b, '"');
    }
    JB_LIT(&b, "],\"path\":");
    const char *path = NULL;
    for (int i = 0; i < C.nsinks; i++)
        if (C.sinks[i].kind == AUDIT_SINK_FILE)
            path = C.sinks[i].path;
    audit_jb_cstr(&b, path);
    JB_LIT(&b, ",\"missed_from\":null,\"missed_to\":null");
    jb_mode_fields(&b);
    size_t len = line_finish(&b);
    if (len == 0)
        return false;
    if (!chain_commit(C.line, len, -1, true, capture))
        return false;
    C.started = true;
    return true;
}

static bool emit_open(int i, int capture)
{
    struct audit_sink *s = &C.sinks[i];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct audit_jb b = { C.line, 0, sizeof C.line, false };
    line_head(&b, &ts, "audit.open");
    JB_LIT(&b, ",\"reason\":\"");
    const char *reason = s->open_reason ? s->open_reason : "configure";
    audit_jb_mem(&b, reason, strlen(reason));
    JB_LIT(&b, "\",\"sink\":\"");
    audit_jb_mem(&b, audit_sink_name(s->kind), strlen(audit_sink_name(s->kind)));
    JB_LIT(&b, "\",\"sinks\":null,\"path\":");
    audit_jb_cstr(&b, s->kind == AUDIT_SINK_FILE ? s->path : NULL);
    JB_LIT(&b, ",\"missed_from\":");
    if (s->missing && s->missed_from < C.seq) {
        audit_jb_u64(&b, s->missed_from);
        JB_LIT(&b, ",\"missed_to\":");
        audit_jb_u64(&b, C.seq - 1);
    } else {
        JB_LIT(&b, "null,\"missed_to\":null");
    }
    jb_mode_fields(&b);
    size_t len = line_finish(&b);
    if (len == 0)
        return false;
    return chain_commit(C.line, len, i, false, capture);
}

bool audit_chain_dropped_notice(int capture)
{
    uint64_t d = atomic_load(&A.dropped), f = atomic_load(&A.failures);
    if (d == C.reported_dropped && f == C.reported_failures)
        return true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct audit_jb b = { C.line, 0, sizeof C.line, false };
    line_head(&b, &ts, "audit.dropped");
    JB_LIT(&b, ",\"queue_full\":");
    audit_jb_u64(&b, d - C.reported_dropped);
    JB_LIT(&b, ",\"unrecorded\":");
    audit_jb_u64(&b, f - C.reported_failures);
    JB_LIT(&b, ",\"total_queue_full\":");
    audit_jb_u64(&b, d);
    JB_LIT(&b, ",\"total_unrecorded\":");
    audit_jb_u64(&b, f);
    size_t len = line_finish(&b);
    if (len == 0 || !chain_commit(C.line, len, -1, false, capture))
        return false;
    C.reported_dropped = d;
    C.reported_failures = f;
    return true;
}

void audit_chain_close(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct audit_jb b = { C.line, 0, sizeof C.line, false };
    line_head(&b, &ts, "audit.close");
    JB_LIT(&b, ",\"written\":");
    audit_jb_u64(&b, atomic_load(&A.written));
    JB_LIT(&b, ",\"total_queue_full\":");
    audit_jb_u64(&b, atomic_load(&A.dropped));
    JB_LIT(&b, ",\"total_unrecorded\":");
    audit_jb_u64(&b, atomic_load(&A.failures));
    size_t len = line_finish(&b);
    if (len != 0)
        (void)chain_commit(C.line, len, -1, false, AUDIT_CAP_NONE);
}

/* File sinks: a rename (new inode at the path) reopens; a shrunk file (copytruncate) is noted.
   stderr: fd 2 redirected elsewhere is attached again. */
static void check_files(void)
{
    int64_t now = -1;
    for (int i = 0; i < C.nsinks; i++) {
        struct audit_sink *s = &C.sinks[i];
        if (s->kind == AUDIT_SINK_SYSLOG || (s->kind == AUDIT_SINK_FILE && s->fd < 0))
            continue;
        if (now < 0)
            now = audit_mono_ms();
        switch (audit_sink_check_rotation(s, now, C.reopen_ms)) {
        case AUDIT_ROT_NOT_DUE:
            break;
        case AUDIT_ROT_INTACT:
            s->checked_seq = C.seq;
            break;
        case AUDIT_ROT_TRUNCATED:
            /* copytruncate: the events since the last intact check may be in the copy, lost
               between logrotate's copy and its truncate, or at the head of the truncated file
               before this marker; its missed range says which (docs/audit.md "logrotate") */
            if (!s->missing && s->checked_seq < C.seq) {
                s->missing = true;
                s->missed_from = s->checked_seq;
            }
            s->checked_seq = C.seq;
            break;
        case AUDIT_ROT_REOPENED:
            atomic_fetch_add(&A.reopens, 1);
            s->checked_seq = C.seq;
            break;
        }
    }
}

/* The housekeeping events that must precede the next event. False when nothing recorded them. */
bool audit_chain_pending(int capture)
{
    check_files();
    if (!C.started) {
        if (!emit_start(capture))
            return false;
    }
    for (int i = 0; i < C.nsinks; i++)
        if (C.sinks[i].need_open)
            (void)emit_open(i, capture);
    return audit_chain_dropped_notice(capture);
}

/* One event line: head of `type`, the members `fields` appends, actor, MACs; committed. */
static bool chain_event(const struct timespec *ts, const char *type,
                        void (*fields)(struct audit_jb *, const void *), const void *arg, int capture,
                        char **line_out)
{
    (void)audit_chain_pending(capture);
    if (!C.started)
        return false;
    struct audit_jb b = { C.line, 0, sizeof C.line, false };
    line_head(&b, ts, type);
    fields(&b, arg);
    size_t len = line_finish(&b);
    if (len == 0) {
        snprintf(A.last_error, sizeof A.last_error, "event could not be formatted");
        return false;
    }
    if (!chain_commit(C.line, len, -1, false, capture))
        return false;
    if (line_out != NULL) {
        *line_out = malloc(len);
        if (*line_out != NULL) {
            memcpy(*line_out, C.line, len - 1);
            (*line_out)[len - 1] = '\0';
        }
    }
    return true;
}

static void lookup_fields(struct audit_jb *b, const void *r)
{
    audit_ev_lookup_fields(b, r);
}

bool audit_chain_lookup(const struct audit_rec *r, int capture, char **line_out)
{
    return chain_event(&r->ts, "secret.lookup", lookup_fields, r, capture, line_out);
}

static void admin_fields(struct audit_jb *b, const void *ev)
{
    audit_ev_admin_fields(b, ev);
}

bool audit_chain_admin(const struct vks_audit_admin_event *ev, const struct timespec *ts, char **line_out)
{
    char type[48];
    snprintf(type, sizeof type, "%s.%s", ev->group ? ev->group : "cred", ev->action);
    return chain_event(ts, type, admin_fields, ev, AUDIT_CAP_NONE, line_out);
}

void vks_audit_capture_begin(void)
{
    cap_active = true;
    free(cap_buf);
    cap_buf = NULL;
    cap_len = 0;
}

char *vks_audit_capture_end(void)
{
    cap_active = false;
    char *b = cap_buf;
    cap_buf = NULL;
    cap_len = 0;
    return b;
}

bool audit_chain_started(void)
{
    return C.started;
}

bool audit_chain_ready(void)
{
    if (C.md == NULL)
        C.md = EVP_MD_CTX_new();
    return C.md != NULL;
}

/*
 * A sink kept across a reconfiguration carries what it missed (and a torn line, if it is still
 * the same file); a sink configured off is remembered; a sink configured on again takes back what
 * it missed since. So every gap in a sink's copy of the chain is announced by its audit.open.
 */
static void carry_over(struct audit_sink *news, int n, const struct audit_sink *old, int nold)
{
    bool kept[AUDIT_MAX_SINKS] = { false };
    if (!C.started)
        return; /* a new chain: its start line goes to every sink, nothing was missed */
    for (int j = 0; j < n; j++) {
        struct audit_sink *s = &news[j];
        s->checked_seq = C.seq;
        for (int i = 0; i < nold; i++) {
            const struct audit_sink *o = &old[i];
            if (kept[i] || !audit_sink_same_place(o, s))
                continue;
            kept[i] = true;
            s->missing = o->missing;
            s->missed_from = o->missed_from;
            s->checked_seq = o->checked_seq;
            if (o->kind == AUDIT_SINK_FILE && o->dev == s->dev && o->ino == s->ino)
                s->torn = o->torn;
            break;
        }
        uint64_t from;
        if (!s->missing && departed_take(s, &from)) {
            s->missing = true;
            s->missed_from = from;
        }
    }
    for (int i = 0; i < nold; i++)
        if (!kept[i])
            departed_add(&old[i], old[i].missing ? old[i].missed_from : C.seq);
}

int audit_chain_swap_sinks(const struct audit_sink *news, int n,
                           struct audit_sink old[AUDIT_MAX_SINKS])
{
    int nold = C.nsinks;
    memcpy(old, C.sinks, sizeof C.sinks);
    memcpy(C.sinks, news, (size_t)n * sizeof *news);
    C.nsinks = n;
    carry_over(C.sinks, n, old, nold);
    atomic_store(&A.nsinks_pub, n);
    return nold;
}

int audit_chain_nsinks(void)
{
    return C.nsinks;
}

void audit_chain_set_options(long reopen_ms, int syslog_facility, const char *syslog_ident)
{
    C.reopen_ms = reopen_ms;
    C.syslog_facility = syslog_facility & LOG_FACMASK;
    snprintf(C.syslog_ident, sizeof C.syslog_ident, "%s",
             syslog_ident ? syslog_ident : "vks-audit");
}

bool audit_chain_probe(void)
{
    return C.nsinks > 0 && audit_chain_pending(AUDIT_CAP_NONE) && C.started;
}

void audit_chain_reopen_now(void)
{
    for (int i = 0; i < C.nsinks; i++)
        C.sinks[i].next_check_ms = 0;
    long saved = C.reopen_ms;
    C.reopen_ms = 0;
    check_files();
    C.reopen_ms = saved;
}

void audit_chain_close_sinks(void)
{
    departed_clear();
    for (int i = 0; i < C.nsinks; i++)
        audit_sink_close(&C.sinks[i]);
    C.nsinks = 0;
    atomic_store(&A.nsinks_pub, 0);
    C.started = false;
    if (C.md != NULL) {
        EVP_MD_CTX_free(C.md);
        C.md = NULL;
    }
}

void audit_chain_fork_child(void)
{
    audit_chain_new();
    for (int i = 0; i < C.nsinks; i++) {
        C.sinks[i].need_open = false;
        C.sinks[i].missing = false;
    }
}

void audit_chain_stats(uint64_t *seq, char chain[33])
{
    *seq = C.seq;
    snprintf(chain, 33, "%s", C.chain_id);
}

void audit_chain_set_deadline(int64_t deadline_ms)
{
    C.deadline_ms = deadline_ms;
}
