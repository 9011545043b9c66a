/*
 * vks_audit: events, the HMAC chain, sinks, modes and the failure policy.
 * Design notes: docs/internals/audit.md. Operator guide and schema: docs/audit.md.
 */
#include "vks_audit.h"
#include "vks_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vks_hmac.h"
#include "vks_secmem.h"

/* ------------------------------------------------------------------------------------------ */
/* limits and names                                                                            */

#define FIELD_IN_MAX 1024     /* input bytes kept per string field (longer: marked truncated) */
#define LINE_CAP 32768        /* one formatted line, worst case well below                    */
#define REC_INLINE 640        /* inline string storage of a queued record                      */
#define MAX_SINKS 3
#define DEFAULT_QUEUE 1024
#define DEFAULT_REOPEN_MS 1000
#define POOL_SLOT 64          /* bytes per value slot in the async value pool                 */
#define POOL_MAX 4096         /* value slots at most (256 KiB of locked scratch)              */
#define PROBE_MS 200          /* async writer retry period while every sink fails             */

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
/* keys                                                                                        */

struct vks_audit_keys {
    struct vks_hmac_key chain;   /* MAC of each line                         */
    struct vks_hmac_key fp;      /* fingerprint of values                    */
    char key_id[17];             /* hex, or "ephemeral"                      */
    bool ephemeral;
    struct vks_audit_keys *retired_next;
};

static const char hkdf_salt[] = "vault-keysource audit v1";

static vks_status keys_from_master(const unsigned char master[32], bool ephemeral,
                                   struct vks_audit_keys **out, struct vks_err *err)
{
    struct vks_audit_keys *k = calloc(1, sizeof *k);
    if (k == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "audit: out of memory");
    unsigned char sub[32];
    vks_status st = VKS_OK;
    if (!vks_hkdf_sha256(master, 32, hkdf_salt, sizeof hkdf_salt - 1, "chain-mac", 9, sub, 32)) {
        st = vks_err_set(err, VKS_E_INTERNAL, "audit: HKDF-SHA256 failed");
        goto out;
    }
    if ((st = vks_hmac_key_set(&k->chain, sub, 32, err)) != VKS_OK)
        goto out;
    if (!vks_hkdf_sha256(master, 32, hkdf_salt, sizeof hkdf_salt - 1, "value-fingerprint", 17,
                         sub, 32)) {
        st = vks_err_set(err, VKS_E_INTERNAL, "audit: HKDF-SHA256 failed");
        goto out;
    }
    if ((st = vks_hmac_key_set(&k->fp, sub, 32, err)) != VKS_OK)
        goto out;
    if (ephemeral) {
        strcpy(k->key_id, "ephemeral");
    } else {
        if (!vks_hkdf_sha256(master, 32, hkdf_salt, sizeof hkdf_salt - 1, "key-id", 6, sub, 8)) {
            st = vks_err_set(err, VKS_E_INTERNAL, "audit: HKDF-SHA256 failed");
            goto out;
        }
        vks_hmac_hex(sub, 8, k->key_id);
    }
    k->ephemeral = ephemeral;
out:
    vks_wipe(sub, sizeof sub);
    if (st != VKS_OK) {
        vks_audit_keys_free(k);
        return st;
    }
    *out = k;
    return VKS_OK;
}

void vks_audit_keys_free(struct vks_audit_keys *k)
{
    if (k == NULL)
        return;
    vks_hmac_key_clear(&k->chain);
    vks_hmac_key_clear(&k->fp);
    free(k);
}

const char *vks_audit_keys_id(const struct vks_audit_keys *k)
{
    return k != NULL ? k->key_id : "";
}

static vks_status read_key_file(const char *path, unsigned char key[32], struct vks_err *err)
{
    /* vks_file: never blocks (FIFO), regular file only, owner-only mode */
    const struct vks_file_opts fo = { .what = "audit key file", .code = VKS_E_CONFIG, .max_bytes = 4096,
                                      .private_mode = true };
    int fd = -1;
    size_t size = 0, got = 0;
    bool more = false;
    vks_status rc = vks_file_open(path, &fo, &fd, &size, err);
    if (rc != VKS_OK)
        return rc;
    if (size != 32)
        rc = vks_err_set(err, VKS_E_CONFIG, "audit key file %s: must hold exactly 32 raw bytes", path);
    else if ((rc = vks_file_read_fd(fd, key, 32, &got, &more, path, &fo, err)) == VKS_OK && (got != 32 || more))
        rc = vks_err_set(err, VKS_E_CONFIG, "audit key file %s: short read", path);
    if (rc != VKS_OK)
        vks_wipe(key, 32);
    close(fd);
    return rc;
}

static vks_status decode_key_b64(const char *text, unsigned char key[32], struct vks_err *err)
{
    /* exactly 32 bytes: 43 characters, optionally one '=' */
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\r'))
        n--;
    if (!(n == 44 && text[43] == '=' && text[42] != '=') && n != 43)
        return vks_err_set(err, VKS_E_CONFIG, "VKS_AUDIT_KEY must be the base64 of 32 bytes");
    unsigned char in[44], out[36];
    memcpy(in, text, 43);
    in[43] = '=';
    int got = EVP_DecodeBlock(out, in, 44);
    vks_status rc = VKS_OK;
    if (got != 33)
        rc = vks_err_set(err, VKS_E_CONFIG, "VKS_AUDIT_KEY must be the base64 of 32 bytes");
    else
        memcpy(key, out, 32);
    vks_wipe(in, sizeof in);
    vks_wipe(out, sizeof out);
    return rc;
}

vks_status vks_audit_keys_load(const char *key_file, struct vks_audit_keys **out, bool *found,
                               struct vks_err *err)
{
    unsigned char master[32];
    vks_status st;
    *found = false;
    *out = NULL;
    const char *env_key = getenv("VKS_AUDIT_KEY");
    const char *env_file = getenv("VKS_AUDIT_KEY_FILE");
    if (key_file != NULL && *key_file != '\0')
        st = read_key_file(key_file, master, err);
    else if (env_key != NULL && *env_key != '\0')
        st = decode_key_b64(env_key, master, err);
    else if (env_file != NULL && *env_file != '\0')
        st = read_key_file(env_file, master, err);
    else
        return VKS_OK;
    if (st == VKS_OK) {
        st = keys_from_master(master, false, out, err);
        if (st == VKS_OK)
            *found = true;
    }
    vks_wipe(master, sizeof master);
    return st;
}

static vks_status keys_ephemeral(struct vks_audit_keys **out, struct vks_err *err)
{
    unsigned char master[32];
    size_t got = 0;
    while (got < sizeof master) {
        ssize_t n = getrandom(master + got, sizeof master - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vks_err_set(err, VKS_E_INTERNAL, "audit: getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    vks_status st = keys_from_master(master, true, out, err);
    vks_wipe(master, sizeof master);
    return st;
}

bool vks_audit_line_mac_ok(const struct vks_audit_keys *k, const char *line, size_t len)
{
    static const char tag[] = ",\"mac\":\"";
    const size_t tail = sizeof tag - 1 + 64 + 2;
    if (k == NULL || line == NULL || len < tail + 1)
        return false;
    size_t pre = len - tail;
    if (memcmp(line + pre, tag, sizeof tag - 1) != 0 || line[len - 2] != '"' ||
        line[len - 1] != '}')
        return false;
    unsigned char mac[VKS_HMAC_LEN];
    char hex[2 * VKS_HMAC_LEN + 1];
    if (!vks_hmac(&k->chain, line, pre, mac))
        return false;
    vks_hmac_hex(mac, sizeof mac, hex);
    return vks_ct_equal(hex, line + pre + sizeof tag - 1, 64);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON output into a fixed buffer                                                             */

struct jb {
    char *p;
    size_t len, cap;
    bool overflow;
};

static inline void jb_mem(struct jb *b, const void *s, size_t n)
{
    if (b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define JB_LIT(b, s) jb_mem((b), (s), sizeof(s) - 1)

static inline void jb_ch(struct jb *b, char c)
{
    if (b->len + 1 >= b->cap) {
        b->overflow = true;
        return;
    }
    b->p[b->len++] = c;
}

static void jb_u64(struct jb *b, uint64_t v)
{
    char t[24];
    int i = 24;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    jb_mem(b, t + i, (size_t)(24 - i));
}

static void jb_i64(struct jb *b, int64_t v)
{
    if (v < 0) {
        jb_ch(b, '-');
        jb_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        jb_u64(b, (uint64_t)v);
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

/* A JSON string (or null). Invalid UTF-8 becomes U+FFFD; `truncated` appends a marker. */
static void jb_str(struct jb *b, const char *s, size_t n, bool truncated)
{
    static const char hexd[] = "0123456789abcdef";
    if (s == NULL) {
        JB_LIT(b, "null");
        return;
    }
    jb_ch(b, '"');
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            jb_mem(b, u + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            jb_mem(b, e, 2);
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
            jb_mem(b, e, 6);
            i++;
        } else {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                JB_LIT(b, "\\ufffd");
                i++;
            } else {
                jb_mem(b, u + i, l);
                i += l;
            }
        }
    }
    if (truncated)
        JB_LIT(b, "...[truncated]");
    jb_ch(b, '"');
}

static void jb_cstr(struct jb *b, const char *s)
{
    jb_str(b, s, s ? strlen(s) : 0, false);
}

/* ------------------------------------------------------------------------------------------ */
/* a lookup, snapshotted (strings copied, value replaced by its fingerprint)                   */

enum {
    S_API, S_ERROR, S_ADDR, S_NS, S_MOUNT, S_PATH, S_KEY, S_FILE, S_EVENT, S_ACCESSOR,
    S_DOMAIN, S_SITE, S_USER, S_DEST, S_TAG, NSTR
};

struct rec {
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
    bool in_pool;           /* async only: the value sits in the pool slot at q.pool_head
                               (pool slots are used and released in queue order)             */
    uint32_t pool_len;
    int16_t off[NSTR];      /* -1 = NULL; at most NSTR * FIELD_IN_MAX */
    uint16_t len[NSTR];     /* at most FIELD_IN_MAX */
    uint32_t truncated;     /* bit per field */
    char *heap;             /* string storage when it does not fit inline (malloc) */
    char buf[REC_INLINE];
};

_Static_assert(NSTR * FIELD_IN_MAX <= INT16_MAX, "rec offsets must fit int16_t");

static inline const char *rec_str(const struct rec *r, int i)
{
    if (r->off[i] < 0)
        return NULL;
    return (r->heap != NULL ? r->heap : r->buf) + r->off[i];
}

/* Fills r from ev (strings copied, at most FIELD_IN_MAX bytes each). False on allocation failure. */
static bool rec_fill(struct rec *r, const struct vks_audit_event *ev, const struct timespec *ts,
                     const unsigned char *fp)
{
    const char *src[NSTR] = {
        [S_API] = ev->api, [S_ERROR] = ev->error, [S_ADDR] = ev->vault_addr,
        [S_NS] = ev->namespace_, [S_MOUNT] = ev->mount, [S_PATH] = ev->path, [S_KEY] = ev->key,
        [S_FILE] = ev->file_path, [S_EVENT] = ev->event_name, [S_ACCESSOR] = ev->token_accessor,
        [S_DOMAIN] = ev->ctx.domain, [S_SITE] = ev->ctx.site_name, [S_USER] = ev->ctx.username,
        [S_DEST] = ev->ctx.destination, [S_TAG] = ev->ctx.tag,
    };
    size_t lens[NSTR], total = 0;
    r->truncated = 0;
    for (int i = 0; i < NSTR; i++) {
        lens[i] = 0;
        if (src[i] != NULL) {
            lens[i] = strnlen(src[i], FIELD_IN_MAX + 1);
            if (lens[i] > FIELD_IN_MAX) {
                lens[i] = FIELD_IN_MAX;
                r->truncated |= 1u << i;
            }
            total += lens[i];
        }
    }
    char *dst = r->buf;
    r->heap = NULL;
    if (total > REC_INLINE) {
        r->heap = malloc(total);
        if (r->heap == NULL)
            return false;
        dst = r->heap;
    }
    size_t at = 0;
    for (int i = 0; i < NSTR; i++) {
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

/* ------------------------------------------------------------------------------------------ */
/* sinks                                                                                       */

enum sink_kind { SINK_FILE, SINK_SYSLOG, SINK_STDERR };
static const char *const sink_names[] = { "file", "syslog", "stderr" };

struct sink {
    enum sink_kind kind;
    int fd;
    char *path;              /* file path / syslog socket path */
    dev_t dev;
    ino_t ino;
    off_t last_end;          /* file size known to include our last line */
    int64_t next_check_ms;
    bool torn;               /* a short write left a partial line: start the next with '\n' */
    bool need_open;          /* an audit.open event for this sink must precede its next event */
    const char *open_reason;
    bool missing;            /* this sink missed chain events from missed_from on */
    uint64_t missed_from;
    bool ok_now;             /* result of the last write in this emit */
};

struct cfg_copy {
    char *file, *syslog_socket, *syslog_ident, *key_file;
    bool syslog, stderr_sink, callback, require_key, required;
    int syslog_facility;
    enum vks_audit_mode mode;
    enum vks_audit_on_failure on_failure;
    size_t queue_size;
    long reopen_check_ms;
    char *key_env, *key_file_env;    /* key sources seen at configure, to notice a change */
};

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int file_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

static int syslog_connect(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static vks_status sink_open(struct sink *s, enum sink_kind kind, const char *path,
                            struct vks_err *err)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->fd = -1;
    s->need_open = true;
    s->open_reason = "configure";
    if (path != NULL) {
        s->path = strdup(path);
        if (s->path == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "audit: out of memory");
    }
    if (kind == SINK_FILE) {
        s->fd = file_open(path);
        struct stat st;
        if (s->fd < 0 || fstat(s->fd, &st) != 0) {
            vks_err_set(err, VKS_E_CONFIG, "audit file %s: %s", path, strerror(errno));
            if (s->fd >= 0)
                close(s->fd);
            free(s->path);
            s->path = NULL;
            return err ? err->status : VKS_E_CONFIG;
        }
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->last_end = st.st_size;
    } else if (kind == SINK_SYSLOG) {
        s->fd = syslog_connect(path);
        if (s->fd < 0) {
            vks_err_set(err, VKS_E_CONFIG, "audit syslog socket %s: %s", path, strerror(errno));
            free(s->path);
            s->path = NULL;
            return err ? err->status : VKS_E_CONFIG;
        }
    } else {
        s->fd = STDERR_FILENO;
    }
    return VKS_OK;
}

static void sink_close(struct sink *s)
{
    if (s->fd >= 0 && s->kind != SINK_STDERR)
        close(s->fd);
    s->fd = -1;
    free(s->path);
    s->path = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* process-wide state                                                                          */

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty, drained;
    struct rec *ring;
    size_t cap, head, count;
    /* A FIFO of POOL_SLOT-byte value slots in one locked, non-dumpable, wiped-on-fork scratch
       mapping: a caller copies a short value here instead of taking a slot from the secret arena
       (whose mutex the writer's frees contend for). Empty pool.data: always use the arena. */
    vks_scratch pool;
    size_t pool_n, pool_head, pool_count;
    bool busy, idle, stop, running, failing;
    pthread_t thread;
};

static struct {
    pthread_mutex_t cfg_lock;       /* serialises configure / shutdown                     */
    /* Cache-line layout: the writer takes A.lock for every event, so the flags every emit reads,
       the counter every emit bumps and the queue each get their own line (false sharing with
       A.lock cost the async caller a cache miss per event). */
    _Alignas(64) pthread_mutex_t lock; /* the chain, the sinks, the line buffer             */
    _Alignas(64) atomic_bool configured, auto_tried, enabled;
    atomic_int mode, on_failure;
    atomic_bool callback, required;
    atomic_int nsinks_pub;          /* A.nsinks, readable without the lock                  */
    atomic_bool reload_keys;        /* forked: the arena (MADV_WIPEONFORK) lost the keys     */
    _Alignas(64) struct cfg_copy cfg;
    bool have_cfg;
    struct sink sinks[MAX_SINKS];
    int nsinks;
    _Atomic(struct vks_audit_keys *) keys;
    struct vks_audit_keys *retired;
    char config_error[VKS_ERR_MSG_MAX];
    atomic_bool has_config_error; /* written under lock; read without it by unaudited lookups */
    /* chain */
    char chain_id[33];
    uint64_t seq;
    unsigned char prev_mac[VKS_HMAC_LEN];
    unsigned char line_mac[VKS_HMAC_LEN];   /* MAC of the line in A.line */
    bool started;
    EVP_MD_CTX *md;
    char actor[600];
    size_t actor_len;
    pid_t pid;
    char line[LINE_CAP];
    char ts_cache_prefix[32];
    time_t ts_cache_sec;
    uint64_t reported_dropped, reported_failures;
    char last_error[256];
    bool warned;
    long reopen_ms;
    int syslog_facility;
    char syslog_ident[64];
    /* counters */
    _Alignas(64) atomic_uint_fast64_t emitted;
    _Alignas(64) atomic_uint_fast64_t written, dropped, failures, sink_errors, unaudited, reopens;
    _Alignas(64) struct queue q;
} A = {
    .cfg_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .q = { .lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP, .nonempty = PTHREAD_COND_INITIALIZER,
           .drained = PTHREAD_COND_INITIALIZER },
};

/* per-thread capture for the Lua callback sink: lines are delivered; they count as recorded
 * only when the configuration has the callback sink */
enum { CAP_NONE = 0, CAP_DELIVER = 1, CAP_COUNTS = 2 };
static __thread bool cap_active;
static __thread char *cap_buf;
static __thread size_t cap_len;

static void warn_line(const char *msg)
{
    char buf[600];
    int n = snprintf(buf, sizeof buf, "vks: audit: %s\n", msg);
    if (n > 0)
        (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
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
    vks_hmac_hex(r, sizeof r, A.chain_id);
}

static void build_actor(void)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "");
    host[sizeof host - 1] = '\0';
    struct jb b = { A.actor, 0, sizeof A.actor, false };
    JB_LIT(&b, ",\"actor\":{\"host\":");
    jb_cstr(&b, host);
    JB_LIT(&b, ",\"pid\":");
    jb_i64(&b, (int64_t)getpid());
    JB_LIT(&b, ",\"uid\":");
    jb_u64(&b, (uint64_t)getuid());
    JB_LIT(&b, ",\"program\":");
    jb_cstr(&b, program_invocation_short_name);
    jb_ch(&b, '}');
    A.actor_len = b.overflow ? 0 : b.len;
    A.pid = getpid();
}

static void start_chain(void)
{
    new_chain_id();
    A.seq = 0;
    memset(A.prev_mac, 0, sizeof A.prev_mac);
    A.started = false;
    A.reported_dropped = atomic_load(&A.dropped);
    A.reported_failures = atomic_load(&A.failures);
    build_actor();
}

static void format_ts(struct jb *b, const struct timespec *ts)
{
    if (ts->tv_sec != A.ts_cache_sec || A.ts_cache_prefix[0] == '\0') {
        struct tm tm;
        gmtime_r(&ts->tv_sec, &tm);
        strftime(A.ts_cache_prefix, sizeof A.ts_cache_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        A.ts_cache_sec = ts->tv_sec;
    }
    jb_ch(b, '"');
    jb_mem(b, A.ts_cache_prefix, strlen(A.ts_cache_prefix));
    char frac[8];
    long us = ts->tv_nsec / 1000;
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[7] = 'Z';
    jb_mem(b, frac, 8);
    jb_ch(b, '"');
}

static void line_head(struct jb *b, const struct timespec *ts, const char *type)
{
    JB_LIT(b, "{\"v\":1,\"chain\":\"");
    jb_mem(b, A.chain_id, 32);
    JB_LIT(b, "\",\"seq\":");
    jb_u64(b, A.seq);
    JB_LIT(b, ",\"ts\":");
    format_ts(b, ts);
    JB_LIT(b, ",\"type\":\"");
    jb_mem(b, type, strlen(type));
    jb_ch(b, '"');
}

/* Appends actor, key id, prev_mac and the MAC; returns the length (with '\n') or 0. */
static size_t line_finish(struct jb *b)
{
    const struct vks_audit_keys *k = atomic_load(&A.keys);
    char hex[2 * VKS_HMAC_LEN + 1];
    jb_mem(b, A.actor, A.actor_len);
    JB_LIT(b, ",\"key_id\":\"");
    jb_mem(b, k->key_id, strlen(k->key_id));
    JB_LIT(b, "\",\"prev_mac\":\"");
    vks_hmac_hex(A.prev_mac, VKS_HMAC_LEN, hex);
    jb_mem(b, hex, 64);
    jb_ch(b, '"');
    if (b->overflow)
        return 0;
    if (!vks_hmac_ctx(A.md, &k->chain, b->p, b->len, A.line_mac))
        return 0;
    JB_LIT(b, ",\"mac\":\"");
    vks_hmac_hex(A.line_mac, VKS_HMAC_LEN, hex);
    jb_mem(b, hex, 64);
    JB_LIT(b, "\"}\n");
    if (b->overflow)
        return 0;
    return b->len;
}

static void jb_strf(struct jb *b, const struct rec *r, int i)
{
    jb_str(b, rec_str(r, i), r->len[i], (r->truncated >> i) & 1u);
}

static void jb_opt_int(struct jb *b, int64_t v)
{
    if (v == 0)
        JB_LIT(b, "null");
    else
        jb_i64(b, v);
}

static size_t format_lookup(struct jb *b, const struct rec *r)
{
    line_head(b, &r->ts, "secret.lookup");
    JB_LIT(b, ",\"api\":");
    if (r->off[S_API] < 0)
        JB_LIT(b, "\"resolve\"");
    else
        jb_strf(b, r, S_API);
    JB_LIT(b, ",\"outcome\":\"");
    jb_mem(b, vks_audit_outcome_name(r->outcome), strlen(vks_audit_outcome_name(r->outcome)));
    JB_LIT(b, "\",\"result\":\"");
    if (r->status == VKS_OK)
        JB_LIT(b, "success");
    else
        JB_LIT(b, "failure");
    JB_LIT(b, "\",\"code\":\"");
    jb_mem(b, vks_status_code(r->status), strlen(vks_status_code(r->status)));
    JB_LIT(b, "\",\"error\":");
    jb_strf(b, r, S_ERROR);
    JB_LIT(b, ",\"source\":\"");
    jb_mem(b, vks_audit_source_name(r->source), strlen(vks_audit_source_name(r->source)));
    JB_LIT(b, "\",\"vault_addr\":");
    jb_strf(b, r, S_ADDR);
    JB_LIT(b, ",\"namespace\":");
    jb_strf(b, r, S_NS);
    JB_LIT(b, ",\"mount\":");
    jb_strf(b, r, S_MOUNT);
    JB_LIT(b, ",\"path\":");
    jb_strf(b, r, S_PATH);
    JB_LIT(b, ",\"key\":");
    jb_strf(b, r, S_KEY);
    JB_LIT(b, ",\"file\":");
    jb_strf(b, r, S_FILE);
    JB_LIT(b, ",\"event_name\":");
    jb_strf(b, r, S_EVENT);
    JB_LIT(b, ",\"kv_version\":");
    jb_opt_int(b, r->kv_version);
    JB_LIT(b, ",\"secret_version\":");
    jb_opt_int(b, r->secret_version);
    JB_LIT(b, ",\"version_pin\":");
    jb_opt_int(b, r->version_pin);
    JB_LIT(b, ",\"cached\":");
    if (r->cached) {
        JB_LIT(b, "true,\"cache_age_ms\":");
        jb_i64(b, r->cache_age_ms);
    } else {
        JB_LIT(b, "false,\"cache_age_ms\":null");
    }
    JB_LIT(b, ",\"latency_us\":");
    /* microseconds with three decimals: sub-microsecond cache hits stay visible */
    jb_u64(b, r->latency_ns / 1000);
    char frac[4] = { '.', (char)('0' + (r->latency_ns / 100) % 10),
                     (char)('0' + (r->latency_ns / 10) % 10), (char)('0' + r->latency_ns % 10) };
    jb_mem(b, frac, 4);
    JB_LIT(b, ",\"http_status\":");
    jb_opt_int(b, r->http_status);
    JB_LIT(b, ",\"token_accessor\":");
    jb_strf(b, r, S_ACCESSOR);
    JB_LIT(b, ",\"ctx\":{\"domain\":");
    jb_strf(b, r, S_DOMAIN);
    JB_LIT(b, ",\"site_name\":");
    jb_strf(b, r, S_SITE);
    JB_LIT(b, ",\"username\":");
    jb_strf(b, r, S_USER);
    JB_LIT(b, ",\"destination\":");
    jb_strf(b, r, S_DEST);
    JB_LIT(b, ",\"tag\":");
    jb_strf(b, r, S_TAG);
    JB_LIT(b, "},\"encrypted\":");
    if (r->encrypted)
        JB_LIT(b, "true");
    else
        JB_LIT(b, "false");
    JB_LIT(b, ",\"fp\":");
    if (r->has_fp) {
        char hex[2 * VKS_AUDIT_FP_LEN + 1];
        vks_hmac_hex(r->fp, VKS_AUDIT_FP_LEN, hex);
        jb_ch(b, '"');
        jb_mem(b, hex, 2 * VKS_AUDIT_FP_LEN);
        jb_ch(b, '"');
    } else {
        JB_LIT(b, "null");
    }
    return line_finish(b);
}

/* ---- writing one chain event ---------------------------------------------------------------- */

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

static void note_sink_error(struct sink *s, int e)
{
    atomic_fetch_add(&A.sink_errors, 1);
    snprintf(A.last_error, sizeof A.last_error, "%s sink%s%s: %s", sink_names[s->kind],
             s->path ? " " : "", s->path ? s->path : "", strerror(e));
}

static bool write_whole(struct sink *s, const char *line, size_t len)
{
    if (s->fd < 0) {
        if (s->kind == SINK_FILE && s->path != NULL) {
            /* the file could not be reopened earlier: try again */
            s->fd = file_open(s->path);
            struct stat st;
            if (s->fd >= 0 && fstat(s->fd, &st) == 0) {
                s->dev = st.st_dev;
                s->ino = st.st_ino;
                s->last_end = st.st_size;
            }
        }
        if (s->fd < 0) {
            note_sink_error(s, errno ? errno : EBADF);
            return false;
        }
    }
    if (s->kind == SINK_SYSLOG) {
        char msg[LINE_CAP + 128];
        struct tm tm;
        time_t now = time(NULL);
        localtime_r(&now, &tm);
        int h = snprintf(msg, 128, "<%d>", A.syslog_facility | LOG_INFO);
        h += (int)strftime(msg + h, 32, "%b %e %H:%M:%S ", &tm);
        h += snprintf(msg + h, 96, "%s[%ld]: ", A.syslog_ident, (long)getpid());
        memcpy(msg + h, line, len - 1); /* no newline in a datagram */
        size_t mlen = (size_t)h + len - 1;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (send(s->fd, msg, mlen, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)mlen)
                return true;
            int e = errno;
            if (attempt == 0 && (e == ECONNREFUSED || e == ENOTCONN)) {
                int fd = syslog_connect(s->path);
                if (fd >= 0) {
                    close(s->fd);
                    s->fd = fd;
                    continue;
                }
            }
            note_sink_error(s, e);
            return false;
        }
        return false;
    }
    /* file / stderr: exactly one write per event (a torn earlier line gets its '\n' first) */
    const char *p = line;
    size_t n = len;
    char *joined = NULL;
    if (s->torn) {
        joined = malloc(len + 1);
        if (joined != NULL) {
            joined[0] = '\n';
            memcpy(joined + 1, line, len);
            p = joined;
            n = len + 1;
        }
    }
    ssize_t w;
    do {
        w = write(s->fd, p, n);
    } while (w < 0 && errno == EINTR);
    int e = errno;
    free(joined);
    if (w == (ssize_t)n) {
        s->torn = false;
        if (s->kind == SINK_FILE) {
            s->last_end += (off_t)n;
            if ((enum vks_audit_mode)atomic_load(&A.mode) == VKS_AUDIT_FSYNC &&
                fdatasync(s->fd) != 0) {
                note_sink_error(s, errno);
                return false;
            }
        }
        return true;
    }
    if (w > 0) {
        /* a partial line is on disk (disk full): whatever comes next starts on a new line */
        s->torn = true;
        s->last_end += w;
        if ((size_t)w == n - 1) {
            /* only the newline is missing: the event itself is recorded */
            return true;
        }
        e = ENOSPC;
    }
    note_sink_error(s, w == 0 ? EIO : e);
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
    for (int i = 0; i < A.nsinks; i++) {
        struct sink *s = &A.sinks[i];
        s->ok_now = false;
        bool target = start || only == i || !s->need_open;
        if (!target)
            continue;
        s->ok_now = write_whole(s, line, len);
        if (s->ok_now)
            recorded++;
    }
    if (capture == CAP_COUNTS)
        recorded++;
    if (recorded == 0)
        return false;
    if (capture != CAP_NONE)
        capture_append(line, len);
    /* committed: the MAC of this line (always the one in A.line) becomes prev_mac */
    memcpy(A.prev_mac, A.line_mac, VKS_HMAC_LEN);
    for (int i = 0; i < A.nsinks; i++) {
        struct sink *s = &A.sinks[i];
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
                s->missed_from = A.seq;
            }
            s->need_open = true;
        }
    }
    A.seq++;
    atomic_fetch_add(&A.written, 1);
    return true;
}

static void jb_mode_fields(struct jb *b)
{
    JB_LIT(b, ",\"mode\":\"");
    const char *m = vks_audit_mode_name((enum vks_audit_mode)atomic_load(&A.mode));
    jb_mem(b, m, strlen(m));
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
    struct jb b = { A.line, 0, sizeof A.line, false };
    line_head(&b, &ts, "audit.open");
    JB_LIT(&b, ",\"reason\":\"start\",\"sink\":null,\"sinks\":[");
    for (int i = 0; i < A.nsinks; i++) {
        if (i > 0)
            jb_ch(&b, ',');
        jb_ch(&b, '"');
        jb_mem(&b, sink_names[A.sinks[i].kind], strlen(sink_names[A.sinks[i].kind]));
        jb_ch(&b, '"');
    }
    JB_LIT(&b, "],\"path\":");
    const char *path = NULL;
    for (int i = 0; i < A.nsinks; i++)
        if (A.sinks[i].kind == SINK_FILE)
            path = A.sinks[i].path;
    jb_cstr(&b, path);
    JB_LIT(&b, ",\"missed_from\":null,\"missed_to\":null");
    jb_mode_fields(&b);
    size_t len = line_finish(&b);
    if (len == 0)
        return false;
    if (!chain_commit(A.line, len, -1, true, capture))
        return false;
    A.started = true;
    return true;
}

static bool emit_open(int i, int capture)
{
    struct sink *s = &A.sinks[i];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct jb b = { A.line, 0, sizeof A.line, false };
    line_head(&b, &ts, "audit.open");
    JB_LIT(&b, ",\"reason\":\"");
    const char *reason = s->missing ? "resume" : (s->open_reason ? s->open_reason : "configure");
    jb_mem(&b, reason, strlen(reason));
    JB_LIT(&b, "\",\"sink\":\"");
    jb_mem(&b, sink_names[s->kind], strlen(sink_names[s->kind]));
    JB_LIT(&b, "\",\"sinks\":null,\"path\":");
    jb_cstr(&b, s->kind == SINK_FILE ? s->path : NULL);
    JB_LIT(&b, ",\"missed_from\":");
    if (s->missing) {
        jb_u64(&b, s->missed_from);
        JB_LIT(&b, ",\"missed_to\":");
        jb_u64(&b, A.seq - 1);
    } else {
        JB_LIT(&b, "null,\"missed_to\":null");
    }
    jb_mode_fields(&b);
    size_t len = line_finish(&b);
    if (len == 0)
        return false;
    return chain_commit(A.line, len, i, false, capture);
}

static bool emit_dropped_notice(int capture)
{
    uint64_t d = atomic_load(&A.dropped), f = atomic_load(&A.failures);
    if (d == A.reported_dropped && f == A.reported_failures)
        return true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct jb b = { A.line, 0, sizeof A.line, false };
    line_head(&b, &ts, "audit.dropped");
    JB_LIT(&b, ",\"queue_full\":");
    jb_u64(&b, d - A.reported_dropped);
    JB_LIT(&b, ",\"unrecorded\":");
    jb_u64(&b, f - A.reported_failures);
    JB_LIT(&b, ",\"total_queue_full\":");
    jb_u64(&b, d);
    JB_LIT(&b, ",\"total_unrecorded\":");
    jb_u64(&b, f);
    size_t len = line_finish(&b);
    if (len == 0 || !chain_commit(A.line, len, -1, false, capture))
        return false;
    A.reported_dropped = d;
    A.reported_failures = f;
    return true;
}

static void emit_close(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct jb b = { A.line, 0, sizeof A.line, false };
    line_head(&b, &ts, "audit.close");
    JB_LIT(&b, ",\"written\":");
    jb_u64(&b, atomic_load(&A.written));
    JB_LIT(&b, ",\"total_queue_full\":");
    jb_u64(&b, atomic_load(&A.dropped));
    JB_LIT(&b, ",\"total_unrecorded\":");
    jb_u64(&b, atomic_load(&A.failures));
    size_t len = line_finish(&b);
    if (len != 0)
        (void)chain_commit(A.line, len, -1, false, CAP_NONE);
}

/* File sinks: a rename (new inode at the path) reopens; a shrunk file (copytruncate) is noted. */
static void check_files(void)
{
    int64_t now = -1;
    for (int i = 0; i < A.nsinks; i++) {
        struct sink *s = &A.sinks[i];
        if (s->kind != SINK_FILE || s->fd < 0)
            continue;
        if (now < 0)
            now = mono_ms();
        if (A.reopen_ms > 0 && now < s->next_check_ms)
            continue;
        s->next_check_ms = now + A.reopen_ms;
        /* copytruncate: the file is shorter than what we wrote */
        struct stat st;
        if (fstat(s->fd, &st) == 0 && st.st_size < s->last_end) {
            s->last_end = st.st_size;
            if (!s->need_open) {
                s->need_open = true;
                s->open_reason = "truncated";
            }
        }
        struct stat ps;
        if (stat(s->path, &ps) == 0 && ps.st_dev == s->dev && ps.st_ino == s->ino)
            continue;
        int fd = file_open(s->path);
        if (fd < 0 || fstat(fd, &ps) != 0) {
            if (fd >= 0)
                close(fd);
            continue; /* keep writing to the old file rather than nowhere */
        }
        close(s->fd);
        s->fd = fd;
        s->dev = ps.st_dev;
        s->ino = ps.st_ino;
        s->last_end = ps.st_size;
        s->torn = false;
        s->need_open = true;
        s->open_reason = "reopen";
        atomic_fetch_add(&A.reopens, 1);
    }
}

/* The housekeeping events that must precede the next event. False when nothing recorded them. */
static bool emit_pending(int capture)
{
    check_files();
    if (!A.started) {
        if (!emit_start(capture))
            return false;
    }
    for (int i = 0; i < A.nsinks; i++)
        if (A.sinks[i].need_open)
            (void)emit_open(i, capture);
    return emit_dropped_notice(capture);
}

/* One lookup into the chain. Called with A.lock held. */
static bool chain_lookup(const struct rec *r, int capture, char **line_out)
{
    (void)emit_pending(capture);
    if (!A.started)
        return false;
    struct jb b = { A.line, 0, sizeof A.line, false };
    size_t len = format_lookup(&b, r);
    if (len == 0) {
        snprintf(A.last_error, sizeof A.last_error, "event could not be formatted");
        return false;
    }
    if (!chain_commit(A.line, len, -1, false, capture))
        return false;
    if (line_out != NULL) {
        *line_out = malloc(len);
        if (*line_out != NULL) {
            memcpy(*line_out, A.line, len - 1);
            (*line_out)[len - 1] = '\0';
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* async writer                                                                                */

static void record_outcome(bool recorded)
{
    if (recorded) {
        A.warned = false;
        return;
    }
    atomic_fetch_add(&A.failures, 1);
}

/*
 * The writer takes every queued record in one step and works on them in their ring slots without
 * q.lock: callers only append behind them (q.count still covers them), so the slots and their pool
 * slots stay the writer's until it gives them back under q.lock after the batch. Two q.lock round
 * trips per batch instead of two per record keep the writer off the callers' mutex.
 */
static void *writer_main(void *arg)
{
    (void)arg;
    struct queue *q = &A.q;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        if (q->count == 0) {
            if (q->stop)
                break;
            q->idle = true;
            if (q->failing) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += PROBE_MS * 1000000L;
                if (dl.tv_nsec >= 1000000000L) {
                    dl.tv_sec++;
                    dl.tv_nsec -= 1000000000L;
                }
                int rc = pthread_cond_timedwait(&q->nonempty, &q->lock, &dl);
                q->idle = false;
                if (rc == ETIMEDOUT && q->count == 0) {
                    /* probe: can any sink record the pending notice now? */
                    pthread_mutex_unlock(&q->lock);
                    pthread_mutex_lock(&A.lock);
                    bool ok = A.nsinks > 0 && emit_pending(CAP_NONE) && A.started;
                    pthread_mutex_unlock(&A.lock);
                    pthread_mutex_lock(&q->lock);
                    if (ok)
                        q->failing = false;
                }
            } else {
                pthread_cond_wait(&q->nonempty, &q->lock);
                q->idle = false;
            }
            continue;
        }
        size_t head = q->head, n = q->count, cap = q->cap;
        size_t pool_at = q->pool_head, pool_used = 0, pool_n = q->pool_n;
        unsigned char *pool = q->pool.data;
        q->busy = true;
        pthread_mutex_unlock(&q->lock);

        bool ok = true;
        for (size_t i = 0; i < n; i++) {
            struct rec *r = &q->ring[(head + i) % cap];
            const unsigned char *v = NULL;
            size_t vlen = 0;
            unsigned char *slot = NULL;
            if (r->in_pool) {
                slot = pool + ((pool_at + pool_used) % pool_n) * POOL_SLOT;
                pool_used++;
                v = slot;
                vlen = r->pool_len;
            } else if (r->val.data != NULL) {
                v = r->val.data;
                vlen = r->val.len;
            }
            if (v != NULL) {
                struct vks_audit_keys *k = atomic_load(&A.keys);
                unsigned char mac[VKS_HMAC_LEN];
                if (k != NULL && vks_hmac(&k->fp, v, vlen, mac)) {
                    memcpy(r->fp, mac, VKS_AUDIT_FP_LEN);
                    r->has_fp = true;
                }
                vks_wipe(mac, sizeof mac);
                if (slot != NULL)
                    vks_wipe(slot, POOL_SLOT);
                vks_secret_free(&r->val);
                r->in_pool = false;
            }
            pthread_mutex_lock(&A.lock);
            ok = chain_lookup(r, CAP_NONE, NULL);
            record_outcome(ok);
            pthread_mutex_unlock(&A.lock);
            free(r->heap);
            r->heap = NULL;
        }

        pthread_mutex_lock(&q->lock);
        q->head = (head + n) % cap;
        q->count -= n;
        q->pool_head = pool_n ? (pool_at + pool_used) % pool_n : 0;
        q->pool_count -= pool_used;
        q->busy = false;
        q->failing = !ok;
        if (q->count == 0)
            pthread_cond_broadcast(&q->drained);
    }
    q->running = false;
    pthread_cond_broadcast(&q->drained);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static vks_status queue_start(size_t cap, struct vks_err *err)
{
    struct queue *q = &A.q;
    pthread_mutex_lock(&q->lock);
    if (q->running) {
        pthread_mutex_unlock(&q->lock);
        return VKS_OK;
    }
    if (q->ring == NULL || q->cap != cap) {
        free(q->ring);
        q->ring = calloc(cap, sizeof *q->ring);
        if (q->ring == NULL) {
            q->cap = 0;
            pthread_mutex_unlock(&q->lock);
            return vks_err_set(err, VKS_E_NOMEM, "audit: cannot allocate a queue of %zu events",
                               cap);
        }
        q->cap = cap;
        q->head = q->count = 0;
    }
    if (q->pool.data == NULL) {
        /* best effort: without a locked pool every value goes through the secret arena */
        size_t n = cap < POOL_MAX ? cap : POOL_MAX;
        vks_scratch sc;
        if (vks_scratch_open(n * POOL_SLOT, &sc, NULL) == VKS_OK) {
            if (sc.locked) {
                sc.len = n * POOL_SLOT; /* close wipes it all */
                q->pool = sc;
                q->pool_n = n;
            } else {
                vks_scratch_close(&sc);
            }
        }
        q->pool_head = q->pool_count = 0;
    }
    q->stop = false;
    q->failing = false;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_create(&q->thread, &attr, writer_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_unlock(&q->lock);
        return vks_err_set(err, VKS_E_INTERNAL, "audit: cannot start the writer thread: %s",
                           strerror(rc));
    }
    q->running = true;
    pthread_mutex_unlock(&q->lock);
    return VKS_OK;
}

void vks_audit_flush(void)
{
    struct queue *q = &A.q;
    pthread_mutex_lock(&q->lock);
    while (q->running && (q->count > 0 || q->busy))
        pthread_cond_wait(&q->drained, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

static void queue_stop(void)
{
    struct queue *q = &A.q;
    pthread_mutex_lock(&q->lock);
    if (!q->running) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    q->stop = true;
    pthread_cond_signal(&q->nonempty);
    pthread_t t = q->thread;
    pthread_mutex_unlock(&q->lock);
    pthread_join(t, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* configuration                                                                               */

void vks_audit_config_init(struct vks_audit_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->syslog_facility = LOG_AUTHPRIV;
    cfg->mode = VKS_AUDIT_SYNC;
    cfg->on_failure = VKS_AUDIT_DENY;
    cfg->queue_size = DEFAULT_QUEUE;
    cfg->reopen_check_ms = -1;
}

static bool env_bool(const char *name, bool *out, struct vks_err *err, vks_status *st)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return true;
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = false;
    else {
        *st = vks_err_set(err, VKS_E_CONFIG, "%s must be true or false", name);
        return false;
    }
    return true;
}

static bool env_long(const char *name, long min, long max, long *out, struct vks_err *err,
                     vks_status *st)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return true;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max) {
        *st = vks_err_set(err, VKS_E_CONFIG, "%s must be an integer from %ld to %ld", name, min,
                          max);
        return false;
    }
    *out = n;
    return true;
}

int vks_audit_facility_from_name(const char *name)
{
    static const struct { const char *n; int v; } f[] = {
        { "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV }, { "daemon", LOG_DAEMON },
        { "mail", LOG_MAIL }, { "user", LOG_USER }, { "local0", LOG_LOCAL0 },
        { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
        { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
        { "local7", LOG_LOCAL7 },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (strcasecmp(name, f[i].n) == 0)
            return f[i].v;
    return -1;
}

vks_status vks_audit_config_from_env(struct vks_audit_config *cfg, struct vks_err *err)
{
    vks_status st = VKS_OK;
    vks_audit_config_init(cfg);
    const char *v;
    if ((v = getenv("VKS_AUDIT_FILE")) != NULL && *v != '\0')
        cfg->file = v;
    if (!env_bool("VKS_AUDIT_STDERR", &cfg->stderr_sink, err, &st) ||
        !env_bool("VKS_AUDIT_REQUIRE_KEY", &cfg->require_key, err, &st) ||
        !env_bool("VKS_AUDIT_REQUIRED", &cfg->required, err, &st))
        return st;
    if ((v = getenv("VKS_AUDIT_SYSLOG")) != NULL && *v != '\0') {
        if (v[0] == '/') {
            cfg->syslog = true;
            cfg->syslog_socket = v;
        } else if (!env_bool("VKS_AUDIT_SYSLOG", &cfg->syslog, err, &st)) {
            return st;
        }
    }
    if ((v = getenv("VKS_AUDIT_SYSLOG_FACILITY")) != NULL && *v != '\0') {
        int f = vks_audit_facility_from_name(v);
        if (f < 0)
            return vks_err_set(err, VKS_E_CONFIG,
                               "VKS_AUDIT_SYSLOG_FACILITY: unknown facility (auth, authpriv, "
                               "daemon, mail, user, local0..local7)");
        cfg->syslog_facility = f;
    }
    if ((v = getenv("VKS_AUDIT_MODE")) != NULL && *v != '\0') {
        if (!strcmp(v, "sync"))
            cfg->mode = VKS_AUDIT_SYNC;
        else if (!strcmp(v, "fsync"))
            cfg->mode = VKS_AUDIT_FSYNC;
        else if (!strcmp(v, "async"))
            cfg->mode = VKS_AUDIT_ASYNC;
        else
            return vks_err_set(err, VKS_E_CONFIG, "VKS_AUDIT_MODE must be sync, fsync or async");
    }
    if ((v = getenv("VKS_AUDIT_ON_FAILURE")) != NULL && *v != '\0') {
        if (!strcmp(v, "deny"))
            cfg->on_failure = VKS_AUDIT_DENY;
        else if (!strcmp(v, "allow"))
            cfg->on_failure = VKS_AUDIT_ALLOW;
        else
            return vks_err_set(err, VKS_E_CONFIG, "VKS_AUDIT_ON_FAILURE must be deny or allow");
    }
    long n = (long)cfg->queue_size;
    if (!env_long("VKS_AUDIT_QUEUE", 1, 1L << 20, &n, err, &st))
        return st;
    cfg->queue_size = (size_t)n;
    if (!env_long("VKS_AUDIT_REOPEN_CHECK_MS", 0, 3600000, &cfg->reopen_check_ms, err, &st))
        return st;
    return VKS_OK;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static char *dup_or_null(const char *s, bool *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = true;
    return d;
}

static void cfg_copy_free(struct cfg_copy *c)
{
    free(c->file);
    free(c->syslog_socket);
    free(c->syslog_ident);
    free(c->key_file);
    free(c->key_env);
    free(c->key_file_env);
    memset(c, 0, sizeof *c);
}

static long eff_reopen(long v)
{
    return v < 0 ? DEFAULT_REOPEN_MS : v;
}

static bool same_key_source(const struct cfg_copy *c, const struct vks_audit_config *cfg)
{
    return str_eq(c->key_file, cfg->key_file) && str_eq(c->key_env, getenv("VKS_AUDIT_KEY")) &&
           str_eq(c->key_file_env, getenv("VKS_AUDIT_KEY_FILE"));
}

static bool cfg_same(const struct cfg_copy *c, const struct vks_audit_config *cfg)
{
    return str_eq(c->file, cfg->file) && c->syslog == cfg->syslog &&
           (!cfg->syslog || (str_eq(c->syslog_socket, cfg->syslog_socket) &&
                             str_eq(c->syslog_ident, cfg->syslog_ident) &&
                             c->syslog_facility == cfg->syslog_facility)) &&
           c->stderr_sink == cfg->stderr_sink && c->callback == cfg->callback &&
           c->mode == cfg->mode && c->on_failure == cfg->on_failure &&
           c->queue_size == (cfg->queue_size ? cfg->queue_size : DEFAULT_QUEUE) &&
           c->reopen_check_ms == eff_reopen(cfg->reopen_check_ms) &&
           c->require_key == cfg->require_key && c->required == cfg->required &&
           same_key_source(c, cfg);
}

static void retire_keys(struct vks_audit_keys *k)
{
    if (k == NULL)
        return;
    /* callers may still be computing a fingerprint with it: wiped at shutdown */
    k->retired_next = A.retired;
    A.retired = k;
}

static void register_exit_handler(void);

vks_status vks_audit_configure(const struct vks_audit_config *cfg, struct vks_err *err)
{
    if (cfg == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "audit: no configuration");
    if ((unsigned)cfg->mode > VKS_AUDIT_ASYNC || (unsigned)cfg->on_failure > VKS_AUDIT_ALLOW)
        return vks_err_set(err, VKS_E_CONFIG, "audit: bad mode or on_failure");
    pthread_mutex_lock(&A.cfg_lock);
    atomic_store(&A.auto_tried, true);
    if (atomic_load(&A.configured) && A.have_cfg && cfg_same(&A.cfg, cfg)) {
        pthread_mutex_unlock(&A.cfg_lock);
        return VKS_OK;
    }
    vks_status st = VKS_OK;
    struct sink news[MAX_SINKS];
    int nnew = 0;
    struct vks_audit_keys *nkeys = NULL;
    bool key_change = !A.have_cfg || !same_key_source(&A.cfg, cfg) ||
                      atomic_load(&A.keys) == NULL || !atomic_load(&A.configured);

    if (key_change) {
        bool found = false;
        st = vks_audit_keys_load(cfg->key_file, &nkeys, &found, err);
        if (st != VKS_OK)
            goto fail;
        if (!found) {
            if (cfg->require_key) {
                st = vks_err_set(err, VKS_E_CONFIG,
                                 "audit: require_key is set but no audit key is configured "
                                 "(VKS_AUDIT_KEY, VKS_AUDIT_KEY_FILE or key_file)");
                goto fail;
            }
            if ((st = keys_ephemeral(&nkeys, err)) != VKS_OK)
                goto fail;
        }
    } else if (cfg->require_key && atomic_load(&A.keys)->ephemeral) {
        st = vks_err_set(err, VKS_E_CONFIG, "audit: require_key is set but no audit key is "
                                            "configured");
        goto fail;
    }
    if (cfg->file != NULL) {
        if ((st = sink_open(&news[nnew], SINK_FILE, cfg->file, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    if (cfg->syslog) {
        const char *sock = cfg->syslog_socket ? cfg->syslog_socket : "/dev/log";
        if ((st = sink_open(&news[nnew], SINK_SYSLOG, sock, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    if (cfg->stderr_sink) {
        if ((st = sink_open(&news[nnew], SINK_STDERR, NULL, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    struct cfg_copy nc;
    memset(&nc, 0, sizeof nc);
    bool oom = false;
    nc.file = dup_or_null(cfg->file, &oom);
    nc.syslog_socket = dup_or_null(cfg->syslog_socket, &oom);
    nc.syslog_ident = dup_or_null(cfg->syslog_ident, &oom);
    nc.key_file = dup_or_null(cfg->key_file, &oom);
    nc.key_env = dup_or_null(getenv("VKS_AUDIT_KEY"), &oom);
    nc.key_file_env = dup_or_null(getenv("VKS_AUDIT_KEY_FILE"), &oom);
    if (oom) {
        cfg_copy_free(&nc);
        st = vks_err_set(err, VKS_E_NOMEM, "audit: out of memory");
        goto fail;
    }
    nc.syslog = cfg->syslog;
    nc.stderr_sink = cfg->stderr_sink;
    nc.callback = cfg->callback;
    nc.require_key = cfg->require_key;
    nc.required = cfg->required;
    nc.syslog_facility = cfg->syslog_facility;
    nc.mode = cfg->mode;
    nc.on_failure = cfg->on_failure;
    nc.queue_size = cfg->queue_size ? cfg->queue_size : DEFAULT_QUEUE;
    nc.reopen_check_ms = eff_reopen(cfg->reopen_check_ms);

    /* everything is ready: events queued so far go to the old sinks, then swap */
    vks_audit_flush();
    if (cfg->mode != VKS_AUDIT_ASYNC || A.q.cap != nc.queue_size)
        queue_stop();

    pthread_mutex_lock(&A.lock);
    if (A.md == NULL)
        A.md = EVP_MD_CTX_new();
    bool was_enabled = atomic_load(&A.enabled);
    if (nkeys != NULL) {
        if (was_enabled && A.started)
            emit_close(); /* the old chain ends with its key */
        retire_keys(atomic_load(&A.keys));
        atomic_store(&A.keys, nkeys);
        nkeys = NULL;
        start_chain();
    }
    struct sink old[MAX_SINKS];
    int nold = A.nsinks;
    memcpy(old, A.sinks, sizeof old);
    memcpy(A.sinks, news, sizeof news);
    A.nsinks = nnew;
    atomic_store(&A.nsinks_pub, nnew);
    nnew = 0;
    cfg_copy_free(&A.cfg);
    A.cfg = nc;
    A.have_cfg = true;
    A.reopen_ms = nc.reopen_check_ms;
    A.syslog_facility = nc.syslog_facility & LOG_FACMASK;
    snprintf(A.syslog_ident, sizeof A.syslog_ident, "%s",
             nc.syslog_ident ? nc.syslog_ident : "vks-audit");
    A.has_config_error = false;
    atomic_store(&A.mode, (int)nc.mode);
    atomic_store(&A.on_failure, (int)nc.on_failure);
    atomic_store(&A.callback, nc.callback);
    atomic_store(&A.required, nc.required);
    atomic_store(&A.enabled, A.nsinks > 0 || nc.callback);
    bool ephemeral = atomic_load(&A.keys)->ephemeral;
    pthread_mutex_unlock(&A.lock);
    for (int i = 0; i < nold; i++)
        sink_close(&old[i]);

    if (nc.mode == VKS_AUDIT_ASYNC && (st = queue_start(nc.queue_size, err)) != VKS_OK) {
        /* fall back to synchronous writing rather than losing events */
        atomic_store(&A.mode, (int)VKS_AUDIT_SYNC);
        warn_line("cannot start the async writer; writing synchronously");
        st = VKS_OK;
    }
    atomic_store(&A.configured, true);
    register_exit_handler();
    pthread_mutex_unlock(&A.cfg_lock);
    if (ephemeral && (A.nsinks > 0 || nc.callback) && key_change)
        warn_line("no audit key configured (VKS_AUDIT_KEY / VKS_AUDIT_KEY_FILE): using an "
                  "ephemeral key; the chain cannot be verified after this process ends");
    return VKS_OK;

fail:
    for (int i = 0; i < nnew; i++)
        sink_close(&news[i]);
    vks_audit_keys_free(nkeys);
    pthread_mutex_unlock(&A.cfg_lock);
    return st;
}

static void auto_configure(void)
{
    if (atomic_load(&A.configured) || atomic_load(&A.auto_tried))
        return;
    struct vks_audit_config cfg;
    struct vks_err err;
    vks_err_clear(&err);
    vks_status st = vks_audit_config_from_env(&cfg, &err);
    if (st == VKS_OK)
        st = vks_audit_configure(&cfg, &err);
    atomic_store(&A.auto_tried, true);
    if (st != VKS_OK) {
        pthread_mutex_lock(&A.lock);
        snprintf(A.config_error, sizeof A.config_error, "%s", err.msg);
        A.has_config_error = true;
        pthread_mutex_unlock(&A.lock);
        warn_line(err.msg);
    }
}

/* In a forked child: load the audit key again (or a new ephemeral one) before any use. */
static void reload_keys_after_fork(void)
{
    if (!atomic_load(&A.reload_keys))
        return;
    pthread_mutex_lock(&A.cfg_lock);
    if (atomic_load(&A.reload_keys) && atomic_load(&A.keys) != NULL) {
        struct vks_audit_keys *nk = NULL;
        bool found = false;
        struct vks_err err;
        vks_err_clear(&err);
        if (!atomic_load(&A.keys)->ephemeral &&
            vks_audit_keys_load(A.cfg.key_file, &nk, &found, &err) != VKS_OK)
            warn_line(err.msg);
        if (nk == NULL && keys_ephemeral(&nk, &err) != VKS_OK)
            nk = NULL;
        pthread_mutex_lock(&A.lock);
        if (nk != NULL) {
            retire_keys(atomic_load(&A.keys));
            atomic_store(&A.keys, nk);
        } else {
            /* no key at all: nothing can be recorded with a valid MAC */
            atomic_store(&A.enabled, false);
            snprintf(A.config_error, sizeof A.config_error,
                     "cannot load the audit key again after fork");
            A.has_config_error = true;
        }
        pthread_mutex_unlock(&A.lock);
    }
    atomic_store(&A.reload_keys, false);
    pthread_mutex_unlock(&A.cfg_lock);
}

/* ------------------------------------------------------------------------------------------ */
/* emit                                                                                        */

vks_status vks_audit_fingerprint(const unsigned char *value, size_t len,
                                 unsigned char out[VKS_AUDIT_FP_LEN], struct vks_err *err)
{
    auto_configure();
    reload_keys_after_fork();
    struct vks_audit_keys *k = atomic_load(&A.keys);
    if (k == NULL)
        return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE, "audit: no key loaded");
    unsigned char mac[VKS_HMAC_LEN];
    if (!vks_hmac(&k->fp, value, len, mac))
        return vks_err_set(err, VKS_E_INTERNAL, "audit: HMAC failed");
    memcpy(out, mac, VKS_AUDIT_FP_LEN);
    vks_wipe(mac, sizeof mac);
    return VKS_OK;
}

static vks_status failed(struct vks_err *err)
{
    if (atomic_load(&A.on_failure) == VKS_AUDIT_ALLOW) {
        pthread_mutex_lock(&A.lock);
        bool warn = !A.warned;
        A.warned = true;
        char msg[400];
        snprintf(msg, sizeof msg,
                 "no sink could record an audit event (%s); serving anyway (on_failure=allow), "
                 "further failures are counted in the stats",
                 A.last_error[0] ? A.last_error : "unknown error");
        pthread_mutex_unlock(&A.lock);
        if (warn)
            warn_line(msg);
        return VKS_OK;
    }
    pthread_mutex_lock(&A.lock);
    vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE,
                "audit: no sink could record the event (%s); lookup refused (on_failure=deny)",
                A.last_error[0] ? A.last_error : "unknown error");
    pthread_mutex_unlock(&A.lock);
    return VKS_E_AUDIT_UNAVAILABLE;
}

vks_status vks_audit_emit(const struct vks_audit_event *ev, char **line_out, struct vks_err *err)
{
    if (line_out != NULL)
        *line_out = NULL;
    if (ev == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "audit: no event");
    auto_configure();
    reload_keys_after_fork();
    if (!atomic_load(&A.enabled)) {
        atomic_fetch_add(&A.unaudited, 1);
        if (!atomic_load(&A.has_config_error) && !atomic_load(&A.required))
            return VKS_OK; /* the common case: nothing to refuse, no lock taken */
        pthread_mutex_lock(&A.lock);
        bool cfg_err = A.has_config_error;
        char msg[VKS_ERR_MSG_MAX];
        msg[0] = '\0';
        if (cfg_err) /* formatted only when it will be used (this runs on every unaudited lookup) */
            snprintf(msg, sizeof msg, "%s", A.config_error);
        pthread_mutex_unlock(&A.lock);
        if (cfg_err && atomic_load(&A.on_failure) != VKS_AUDIT_ALLOW)
            return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE, "audit: bad configuration: %s", msg);
        if (atomic_load(&A.required))
            return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE,
                               "audit: required but no audit sink is configured");
        return VKS_OK;
    }
    atomic_fetch_add(&A.emitted, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);

    unsigned char fpbuf[VKS_AUDIT_FP_LEN];
    const unsigned char *fp = NULL;
    int capture = !cap_active ? CAP_NONE : atomic_load(&A.callback) ? CAP_COUNTS : CAP_DELIVER;
    if (atomic_load(&A.nsinks_pub) == 0 && capture != CAP_COUNTS) {
        /* the only sink is the Lua callback and this thread's Lua state registered none */
        pthread_mutex_lock(&A.lock);
        snprintf(A.last_error, sizeof A.last_error,
                 "the only sink is the Lua callback and this Lua state registered none");
        pthread_mutex_unlock(&A.lock);
        atomic_fetch_add(&A.failures, 1);
        return failed(err);
    }

    if (ev->has_fingerprint)
        fp = ev->fingerprint;
    vks_secret val = VKS_SECRET_EMPTY;
    if (atomic_load(&A.mode) == VKS_AUDIT_ASYNC && capture == CAP_NONE) {
        /* the writer fingerprints a locked copy of the value: 30 ns here instead of an HMAC */
        struct queue *q = &A.q;
        bool want_pool = fp == NULL && ev->value != NULL && ev->value_len <= POOL_SLOT;
        pthread_mutex_lock(&q->lock);
        bool use_pool = want_pool && q->running && q->pool.data != NULL &&
                        q->pool_count < q->pool_n;
        if (fp == NULL && ev->value != NULL && !use_pool) {
            pthread_mutex_unlock(&q->lock);
            if (vks_secret_dup(ev->value, ev->value_len, &val, NULL) != VKS_OK &&
                vks_audit_fingerprint(ev->value, ev->value_len, fpbuf, NULL) == VKS_OK)
                fp = fpbuf;
            pthread_mutex_lock(&q->lock);
        }
        if (!q->running) {
            pthread_mutex_unlock(&q->lock);
            vks_secret_free(&val);
            goto sync_path; /* e.g. in a forked child before its writer starts */
        }
        if (q->failing && atomic_load(&A.on_failure) != VKS_AUDIT_ALLOW) {
            pthread_mutex_unlock(&q->lock);
            vks_secret_free(&val);
            atomic_fetch_add(&A.failures, 1);
            return failed(err);
        }
        if (q->count == q->cap) {
            pthread_mutex_unlock(&q->lock);
            vks_secret_free(&val);
            atomic_fetch_add(&A.dropped, 1);
            pthread_mutex_lock(&A.lock);
            snprintf(A.last_error, sizeof A.last_error, "async queue full");
            pthread_mutex_unlock(&A.lock);
            return failed(err);
        }
        struct rec *slot = &q->ring[(q->head + q->count) % q->cap];
        if (!rec_fill(slot, ev, &ts, fp)) {
            pthread_mutex_unlock(&q->lock);
            vks_secret_free(&val);
            atomic_fetch_add(&A.failures, 1);
            return failed(err);
        }
        slot->val = val; /* the writer wipes and frees it */
        if (use_pool) {
            size_t at = (q->pool_head + q->pool_count) % q->pool_n;
            memcpy(q->pool.data + at * POOL_SLOT, ev->value, ev->value_len);
            slot->in_pool = true;
            slot->pool_len = (uint32_t)ev->value_len;
            q->pool_count++;
        }
        q->count++;
        if (q->idle)
            pthread_cond_signal(&q->nonempty);
        pthread_mutex_unlock(&q->lock);
        if (fp == fpbuf)
            vks_wipe(fpbuf, sizeof fpbuf);
        return VKS_OK;
    }

sync_path:
    if (fp == NULL && ev->value != NULL &&
        vks_audit_fingerprint(ev->value, ev->value_len, fpbuf, NULL) == VKS_OK)
        fp = fpbuf;
    struct rec r;
    bool ok = rec_fill(&r, ev, &ts, fp);
    if (fp == fpbuf)
        vks_wipe(fpbuf, sizeof fpbuf);
    if (!ok) {
        atomic_fetch_add(&A.failures, 1);
        return failed(err);
    }
    pthread_mutex_lock(&A.lock);
    bool recorded = A.nsinks > 0 || capture == CAP_COUNTS ? chain_lookup(&r, capture, line_out)
                                                          : false;
    record_outcome(recorded);
    pthread_mutex_unlock(&A.lock);
    free(r.heap);
    return recorded ? VKS_OK : failed(err);
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

bool vks_audit_enabled(void)
{
    auto_configure();
    return atomic_load(&A.enabled);
}

void vks_audit_get_stats(struct vks_audit_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&A.lock);
    out->enabled = atomic_load(&A.enabled);
    struct vks_audit_keys *k = atomic_load(&A.keys);
    out->ephemeral_key = k != NULL && k->ephemeral;
    out->sinks = A.nsinks + (atomic_load(&A.callback) ? 1 : 0);
    out->mode = (enum vks_audit_mode)atomic_load(&A.mode);
    out->on_failure = (enum vks_audit_on_failure)atomic_load(&A.on_failure);
    out->seq = A.seq;
    snprintf(out->chain, sizeof out->chain, "%s", A.chain_id);
    snprintf(out->key_id, sizeof out->key_id, "%s", k ? k->key_id : "");
    pthread_mutex_unlock(&A.lock);
    out->emitted = atomic_load(&A.emitted);
    out->written = atomic_load(&A.written);
    out->dropped = atomic_load(&A.dropped);
    out->failures = atomic_load(&A.failures);
    out->sink_errors = atomic_load(&A.sink_errors);
    out->unaudited = atomic_load(&A.unaudited);
    out->reopens = atomic_load(&A.reopens);
    pthread_mutex_lock(&A.q.lock);
    out->queue_depth = A.q.count;
    pthread_mutex_unlock(&A.q.lock);
}

void vks_audit_reopen(void)
{
    pthread_mutex_lock(&A.lock);
    for (int i = 0; i < A.nsinks; i++)
        A.sinks[i].next_check_ms = 0;
    long saved = A.reopen_ms;
    A.reopen_ms = 0;
    check_files();
    A.reopen_ms = saved;
    pthread_mutex_unlock(&A.lock);
}

void vks_audit_shutdown(void)
{
    pthread_mutex_lock(&A.cfg_lock);
    vks_audit_flush();
    queue_stop();
    pthread_mutex_lock(&A.lock);
    if (atomic_load(&A.enabled) && A.started && A.nsinks > 0) {
        (void)emit_dropped_notice(CAP_NONE);
        emit_close();
    }
    for (int i = 0; i < A.nsinks; i++)
        sink_close(&A.sinks[i]);
    A.nsinks = 0;
    atomic_store(&A.nsinks_pub, 0);
    atomic_store(&A.enabled, false);
    atomic_store(&A.configured, false);
    atomic_store(&A.auto_tried, false);
    atomic_store(&A.callback, false);
    atomic_store(&A.required, false);
    atomic_store(&A.mode, (int)VKS_AUDIT_SYNC);
    atomic_store(&A.on_failure, (int)VKS_AUDIT_DENY);
    A.has_config_error = false;
    A.started = false;
    A.warned = false;
    A.last_error[0] = '\0';
    cfg_copy_free(&A.cfg);
    A.have_cfg = false;
    vks_audit_keys_free(atomic_load(&A.keys));
    atomic_store(&A.keys, NULL);
    while (A.retired != NULL) {
        struct vks_audit_keys *n = A.retired->retired_next;
        vks_audit_keys_free(A.retired);
        A.retired = n;
    }
    if (A.md != NULL) {
        EVP_MD_CTX_free(A.md);
        A.md = NULL;
    }
    pthread_mutex_unlock(&A.lock);
    pthread_mutex_lock(&A.q.lock);
    free(A.q.ring);
    A.q.ring = NULL;
    A.q.cap = A.q.head = A.q.count = 0;
    if (A.q.pool.data != NULL)
        vks_scratch_close(&A.q.pool);
    A.q.pool_n = A.q.pool_head = A.q.pool_count = 0;
    pthread_mutex_unlock(&A.q.lock);
    pthread_mutex_unlock(&A.cfg_lock);
}

/* ------------------------------------------------------------------------------------------ */
/* exit and fork                                                                               */

static void at_exit(void)
{
    vks_audit_shutdown();
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&A.cfg_lock);
    pthread_mutex_lock(&A.q.lock);
    pthread_mutex_lock(&A.lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&A.lock);
    pthread_mutex_unlock(&A.q.lock);
    pthread_mutex_unlock(&A.cfg_lock);
}

static void fork_child(void)
{
    /* the writer thread does not exist here and queued events belong to the parent's chain */
    A.q.running = false;
    A.q.busy = false;
    A.q.idle = false;
    A.q.count = 0;
    A.q.head = 0;
    A.q.pool_head = A.q.pool_count = 0; /* the pool pages were wiped by fork (MADV_WIPEONFORK) */
    if (atomic_load(&A.keys) != NULL) {
        /* the keys lived in the arena, which fork wiped (MADV_WIPEONFORK): reload them */
        atomic_store(&A.reload_keys, true);
        start_chain();
        for (int i = 0; i < A.nsinks; i++) {
            A.sinks[i].need_open = false;
            A.sinks[i].missing = false;
        }
    }
    pthread_mutex_unlock(&A.lock);
    pthread_mutex_unlock(&A.q.lock);
    pthread_mutex_unlock(&A.cfg_lock);
    if (atomic_load(&A.mode) == VKS_AUDIT_ASYNC && atomic_load(&A.enabled))
        (void)queue_start(A.cfg.queue_size ? A.cfg.queue_size : DEFAULT_QUEUE, NULL);
}

static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void do_register(void)
{
    /* registered after OpenSSL initialised, so this runs before OpenSSL's own cleanup; inside a
     * dlopen'ed module glibc runs it when the module is unloaded */
    atexit(at_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void register_exit_handler(void)
{
    pthread_once(&exit_once, do_register);
}
