/*
 * vks_audit: configuration, keys, the failure policy, emit, stats and the lifecycle (exit, fork).
 * The other parts: vks_audit_event.c (formatting), vks_audit_chain.c (the chain and its sinks),
 * vks_audit_sink.c (file, syslog, stderr), vks_audit_async.c (queue and writer thread),
 * vks_audit_verify.c (the verifier); shared state in vks_audit_int.h.
 * Design notes: docs/internals/audit.md. Operator guide and schema: docs/audit.md.
 */
#include "vks_audit.h"
#include "vks_file.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vks_audit_async.h"
#include "vks_audit_chain.h"
#include "vks_audit_event.h"
#include "vks_audit_int.h"
#include "vks_hmac.h"
#include "vks_secmem.h"

#define A audit_A

struct audit_state audit_A = {
    .cfg_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .timeout_ms = AUDIT_DEFAULT_TIMEOUT_MS,
};

/* ------------------------------------------------------------------------------------------ */
/* keys                                                                                        */

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

void audit_warn_line(const char *msg)
{
    char buf[600];
    int n = snprintf(buf, sizeof buf, "vks: audit: %s\n", msg);
    if (n > 0)
        vks_audit_warn_raw(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void vks_audit_warn_raw(const char *text, size_t len)
{
    /* fd 2 may be a pipe nobody reads (the very stall being warned about): never wait for it */
    struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
        (void)!write(STDERR_FILENO, text, len);
}

/* ------------------------------------------------------------------------------------------ */
/* configuration                                                                               */

void vks_audit_config_init(struct vks_audit_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->syslog_facility = LOG_AUTHPRIV;
    cfg->mode = VKS_AUDIT_SYNC;
    cfg->on_failure = VKS_AUDIT_DENY;
    cfg->queue_size = AUDIT_DEFAULT_QUEUE;
    cfg->reopen_check_ms = -1;
    cfg->timeout_ms = -1;
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
    if (!env_long("VKS_AUDIT_TIMEOUT_MS", 0, 600000, &cfg->timeout_ms, err, &st))
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

static void cfg_copy_free(struct audit_cfg_copy *c)
{
    free(c->file);
    free(c->syslog_socket);
    free(c->syslog_ident);
    free(c->key_file);
    free(c->key_env);
    free(c->key_file_env);
    memset(c, 0, sizeof *c);
}

static long eff_timeout(long v)
{
    return v < 0 ? AUDIT_DEFAULT_TIMEOUT_MS : v > 600000 ? 600000 : v;
}

static long eff_reopen(long v)
{
    return v < 0 ? AUDIT_DEFAULT_REOPEN_MS : v;
}

static bool same_key_source(const struct audit_cfg_copy *c, const struct vks_audit_config *cfg)
{
    return str_eq(c->key_file, cfg->key_file) && str_eq(c->key_env, getenv("VKS_AUDIT_KEY")) &&
           str_eq(c->key_file_env, getenv("VKS_AUDIT_KEY_FILE"));
}

static bool cfg_same(const struct audit_cfg_copy *c, const struct vks_audit_config *cfg)
{
    return str_eq(c->file, cfg->file) && c->syslog == cfg->syslog &&
           (!cfg->syslog || (str_eq(c->syslog_socket, cfg->syslog_socket) &&
                             str_eq(c->syslog_ident, cfg->syslog_ident) &&
                             c->syslog_facility == cfg->syslog_facility)) &&
           c->stderr_sink == cfg->stderr_sink && c->callback == cfg->callback &&
           c->mode == cfg->mode && c->on_failure == cfg->on_failure &&
           c->queue_size == (cfg->queue_size ? cfg->queue_size : AUDIT_DEFAULT_QUEUE) &&
           c->reopen_check_ms == eff_reopen(cfg->reopen_check_ms) &&
           c->timeout_ms == eff_timeout(cfg->timeout_ms) &&
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
    struct audit_sink news[AUDIT_MAX_SINKS];
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
        if ((st = audit_sink_open(&news[nnew], AUDIT_SINK_FILE, cfg->file, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    if (cfg->syslog) {
        const char *sock = cfg->syslog_socket ? cfg->syslog_socket : "/dev/log";
        if ((st = audit_sink_open(&news[nnew], AUDIT_SINK_SYSLOG, sock, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    if (cfg->stderr_sink) {
        if ((st = audit_sink_open(&news[nnew], AUDIT_SINK_STDERR, NULL, err)) != VKS_OK)
            goto fail;
        nnew++;
    }
    struct audit_cfg_copy nc;
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
    nc.queue_size = cfg->queue_size ? cfg->queue_size : AUDIT_DEFAULT_QUEUE;
    nc.reopen_check_ms = eff_reopen(cfg->reopen_check_ms);
    nc.timeout_ms = eff_timeout(cfg->timeout_ms);

    /* everything is ready: events queued so far go to the old sinks, then swap */
    vks_audit_flush();
    if (cfg->mode != VKS_AUDIT_ASYNC || audit_q_capacity() != nc.queue_size)
        audit_q_stop();

    pthread_mutex_lock(&A.lock);
    (void)audit_chain_ready();
    bool was_enabled = atomic_load(&A.enabled);
    if (nkeys != NULL) {
        if (was_enabled && audit_chain_started()) {
            audit_chain_set_deadline(audit_deadline());
            audit_chain_close(); /* the old chain ends with its key */
        }
        retire_keys(atomic_load(&A.keys));
        atomic_store(&A.keys, nkeys);
        nkeys = NULL;
        audit_chain_new();
    }
    struct audit_sink old[AUDIT_MAX_SINKS];
    int nold = audit_chain_swap_sinks(news, nnew, old);
    nnew = 0;
    cfg_copy_free(&A.cfg);
    A.cfg = nc;
    A.have_cfg = true;
    audit_chain_set_options(nc.reopen_check_ms, nc.syslog_facility, nc.syslog_ident);
    atomic_store(&A.timeout_ms, nc.timeout_ms);
    A.has_config_error = false;
    atomic_store(&A.mode, (int)nc.mode);
    atomic_store(&A.on_failure, (int)nc.on_failure);
    atomic_store(&A.callback, nc.callback);
    atomic_store(&A.required, nc.required);
    atomic_store(&A.enabled, audit_chain_nsinks() > 0 || nc.callback);
    bool ephemeral = atomic_load(&A.keys)->ephemeral;
    bool any_sink = audit_chain_nsinks() > 0 || nc.callback;
    pthread_mutex_unlock(&A.lock);
    for (int i = 0; i < nold; i++)
        audit_sink_close(&old[i]);

    if (nc.mode == VKS_AUDIT_ASYNC && (st = audit_q_start(nc.queue_size, err)) != VKS_OK) {
        /* fall back to synchronous writing rather than losing events */
        atomic_store(&A.mode, (int)VKS_AUDIT_SYNC);
        audit_warn_line("cannot start the async writer; writing synchronously");
        st = VKS_OK;
    }
    atomic_store(&A.configured, true);
    register_exit_handler();
    pthread_mutex_unlock(&A.cfg_lock);
    if (ephemeral && any_sink && key_change)
        audit_warn_line("no audit key configured (VKS_AUDIT_KEY / VKS_AUDIT_KEY_FILE): using an "
                  "ephemeral key; the chain cannot be verified after this process ends");
    return VKS_OK;

fail:
    for (int i = 0; i < nnew; i++)
        audit_sink_close(&news[i]);
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
        audit_warn_line(err.msg);
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
            audit_warn_line(err.msg);
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

bool audit_lock_until(int64_t deadline_ms)
{
    if (pthread_mutex_trylock(&A.lock) == 0)
        return true;
    /* pthread_mutex_timedlock takes a CLOCK_REALTIME time (pthread_mutex_clocklock would take
       the monotonic one, but ThreadSanitizer does not see it): the time left, from now */
    int64_t left = deadline_ms - audit_now_ms();
    if (left <= 0)
        return false;
    struct timespec abs;
    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_sec += (time_t)(left / 1000);
    abs.tv_nsec += (long)(left % 1000) * 1000000L;
    if (abs.tv_nsec >= 1000000000L) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000L;
    }
    int rc;
    do {
        rc = pthread_mutex_timedlock(&A.lock, &abs);
    } while (rc == EINTR);
    return rc == 0;
}

int64_t audit_deadline(void)
{
    return audit_now_ms() + atomic_load(&A.timeout_ms);
}

/* Why the event was lost, for the warning or the error (the audit lock may be unavailable). */
static void failure_reason(char *out, size_t cap, int64_t deadline_ms)
{
    if (audit_lock_until(deadline_ms)) {
        snprintf(out, cap, "%s", A.last_error[0] ? A.last_error : "unknown error");
        pthread_mutex_unlock(&A.lock);
    } else {
        snprintf(out, cap, "a stalled sink held the audit lock past the write deadline "
                           "(timeout_ms %ld)", (long)atomic_load(&A.timeout_ms));
    }
}

/* The failure policy for an event no sink recorded. `known`: the reason, when the caller has it;
 * NULL reads A.last_error under the audit lock, waiting until deadline_ms at most (0: only if the
 * lock is free). */
static vks_status failed_why(struct vks_err *err, int64_t deadline_ms, const char *known)
{
    char why[300];
    bool allow = atomic_load(&A.on_failure) == VKS_AUDIT_ALLOW;
    if (allow && atomic_exchange(&A.warned, true))
        return VKS_OK;
    if (known != NULL)
        snprintf(why, sizeof why, "%s", known);
    else
        failure_reason(why, sizeof why, deadline_ms);
    if (allow) {
        char msg[500];
        snprintf(msg, sizeof msg,
                 "no sink could record an audit event (%s); serving anyway (on_failure=allow), "
                 "further failures are counted in the stats", why);
        audit_warn_line(msg);
        return VKS_OK;
    }
    return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE,
                       "audit: no sink could record the event (%s); lookup refused "
                       "(on_failure=deny)", why);
}

static vks_status failed(struct vks_err *err, int64_t deadline_ms)
{
    return failed_why(err, deadline_ms, NULL);
}

/* Sets A.last_error unless the audit lock is not free before the deadline. */
static void set_last_error(const char *msg, int64_t deadline_ms)
{
    if (audit_lock_until(deadline_ms)) {
        snprintf(A.last_error, sizeof A.last_error, "%s", msg);
        pthread_mutex_unlock(&A.lock);
    }
}

/* The async path: true when it decided (*st set), false to write synchronously instead. */
static bool emit_async(const struct vks_audit_event *ev, const struct timespec *ts,
                       const unsigned char *fp, vks_status *st, struct vks_err *err)
{
    switch (audit_q_enqueue(ev, ts, fp)) {
    case AUDIT_Q_QUEUED:
        *st = VKS_OK;
        return true;
    case AUDIT_Q_NOT_RUNNING:
        return false;
    case AUDIT_Q_FULL:
        /* deadline 0: the audit lock only if it is free (audit_lock_until tries once). The writer
         * holds it while a stalled sink waits out its deadline, which is what fills the queue, and
         * a caller that drops its event must not wait for it just to note and word the reason. */
        atomic_fetch_add(&A.dropped, 1);
        set_last_error("async queue full", 0);
        *st = failed_why(err, 0, "async queue full");
        return true;
    case AUDIT_Q_NOMEM:
        atomic_fetch_add(&A.failures, 1);
        *st = failed_why(err, 0, "out of memory queueing the event");
        return true;
    case AUDIT_Q_FAILING:
    default:
        atomic_fetch_add(&A.failures, 1);
        *st = failed(err, 0);
        return true;
    }
}

/* Unaudited lookups are counted in stripes, one cache line each, a thread in its own (threads are
 * spread over them as they first count): one shared counter was written by every lookup of every
 * thread while auditing is off. */
#define UNAUDITED_STRIPES 16
static struct {
    _Alignas(64) atomic_uint_fast64_t n;
} unaudited[UNAUDITED_STRIPES];
static atomic_uint unaudited_next;
static _Thread_local int t_unaudited = -1;

static void count_unaudited(void)
{
    if (t_unaudited < 0)
        t_unaudited = (int)(atomic_fetch_add_explicit(&unaudited_next, 1, memory_order_relaxed) %
                            UNAUDITED_STRIPES);
    atomic_fetch_add_explicit(&unaudited[t_unaudited].n, 1, memory_order_relaxed);
}

static uint64_t unaudited_sum(void)
{
    uint64_t n = 0;
    for (int i = 0; i < UNAUDITED_STRIPES; i++)
        n += atomic_load_explicit(&unaudited[i].n, memory_order_relaxed);
    return n;
}

/* Auditing is off (no sink, or a bad configuration): the lookup is unaudited. */
static vks_status emit_off(struct vks_err *err)
{
    count_unaudited();
    if (!atomic_load(&A.has_config_error) && !atomic_load(&A.required))
        return VKS_OK; /* the common case: nothing to refuse, no lock taken */
    bool cfg_err = false;
    char msg[VKS_ERR_MSG_MAX] = "";
    if (audit_lock_until(audit_deadline())) {
        cfg_err = A.has_config_error;
        if (cfg_err) /* formatted only when it will be used */
            snprintf(msg, sizeof msg, "%s", A.config_error);
        pthread_mutex_unlock(&A.lock);
    }
    if (cfg_err && atomic_load(&A.on_failure) != VKS_AUDIT_ALLOW)
        return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE, "audit: bad configuration: %s", msg);
    if (atomic_load(&A.required))
        return vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE,
                           "audit: required but no audit sink is configured");
    return VKS_OK;
}

/* The synchronous path: formats, chains and writes under the audit lock, within the deadline. */
static vks_status emit_sync(const struct vks_audit_event *ev, const struct timespec *ts,
                            const unsigned char *fp, int capture, char **line_out,
                            struct vks_err *err)
{
    int64_t deadline = audit_deadline();
    unsigned char fpbuf[VKS_AUDIT_FP_LEN];
    if (fp == NULL && ev->value != NULL &&
        vks_audit_fingerprint(ev->value, ev->value_len, fpbuf, NULL) == VKS_OK)
        fp = fpbuf;
    struct audit_rec r;
    bool ok = audit_rec_fill(&r, ev, ts, fp);
    if (fp == fpbuf)
        vks_wipe(fpbuf, sizeof fpbuf);
    if (!ok) {
        atomic_fetch_add(&A.failures, 1);
        return failed(err, deadline);
    }
    if (!audit_lock_until(deadline)) {
        /* a writer is stuck on a stalled sink: this event is lost, counted, and reported by the
           next audit.dropped line */
        atomic_fetch_add(&A.timeouts, 1);
        atomic_fetch_add(&A.failures, 1);
        audit_rec_release(&r);
        return failed(err, deadline);
    }
    audit_chain_set_deadline(deadline);
    bool recorded = audit_chain_nsinks() > 0 || capture == AUDIT_CAP_COUNTS
                        ? audit_chain_lookup(&r, capture, line_out)
                        : false;
    audit_record_outcome(recorded);
    pthread_mutex_unlock(&A.lock);
    audit_rec_release(&r);
    return recorded ? VKS_OK : failed(err, deadline);
}

vks_status vks_audit_emit(const struct vks_audit_event *ev, char **line_out, struct vks_err *err)
{
    if (line_out != NULL)
        *line_out = NULL;
    if (ev == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "audit: no event");
    auto_configure();
    reload_keys_after_fork();
    if (!atomic_load(&A.enabled))
        return emit_off(err);
    atomic_fetch_add(&A.emitted, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);

    int capture = audit_capture_mode();
    if (atomic_load(&A.nsinks_pub) == 0 && capture != AUDIT_CAP_COUNTS) {
        /* the only sink is the Lua callback and this thread's Lua state registered none */
        int64_t deadline = audit_deadline();
        set_last_error("the only sink is the Lua callback and this Lua state registered none",
                       deadline);
        atomic_fetch_add(&A.failures, 1);
        return failed(err, deadline);
    }
    const unsigned char *fp = ev->has_fingerprint ? ev->fingerprint : NULL;
    vks_status st;
    if (atomic_load(&A.mode) == VKS_AUDIT_ASYNC && capture == AUDIT_CAP_NONE &&
        emit_async(ev, &ts, fp, &st, err))
        return st;
    return emit_sync(ev, &ts, fp, capture, line_out, err);
}

static bool admin_action_ok(const char *a)
{
    size_t n = a ? strlen(a) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((a[i] >= 'a' && a[i] <= 'z') || a[i] == '_' || (a[i] == '.' && i > 0 && i + 1 < n)))
            return false;
    return true;
}

static bool admin_group_ok(const char *g)
{
    size_t n = strlen(g);
    for (size_t i = 0; i < n; i++)
        if (g[i] < 'a' || g[i] > 'z')
            return false;
    return n >= 1 && n <= 16;
}

vks_status vks_audit_emit_admin(const struct vks_audit_admin_event *ev, char **line_out,
                                struct vks_err *err)
{
    if (line_out != NULL)
        *line_out = NULL;
    if (ev == NULL || !admin_action_ok(ev->action) || (ev->group && !admin_group_ok(ev->group)))
        return vks_err_set(err, VKS_E_INVALID_ARG, "audit: administrative event without a valid action");
    auto_configure();
    reload_keys_after_fork();
    if (!atomic_load(&A.enabled))
        return emit_off(err);
    atomic_fetch_add(&A.emitted, 1);
    if (atomic_load(&A.mode) == VKS_AUDIT_ASYNC)
        vks_audit_flush(); /* the queued lookups go first: the chain keeps the order of events */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t deadline = audit_deadline();
    if (!audit_lock_until(deadline)) {
        atomic_fetch_add(&A.timeouts, 1);
        atomic_fetch_add(&A.failures, 1);
        return failed(err, deadline);
    }
    audit_chain_set_deadline(deadline);
    bool recorded = audit_chain_nsinks() > 0 ? audit_chain_admin(ev, &ts, line_out) : false;
    audit_record_outcome(recorded);
    pthread_mutex_unlock(&A.lock);
    return recorded ? VKS_OK : failed(err, deadline);
}

void vks_audit_callback_policy(long *timeout_ms, bool *must_fail)
{
    *timeout_ms = atomic_load(&A.timeout_ms);
    *must_fail = atomic_load(&A.on_failure) != VKS_AUDIT_ALLOW && atomic_load(&A.callback) &&
                 atomic_load(&A.nsinks_pub) == 0;
}

void vks_audit_note_timeout(void)
{
    atomic_fetch_add(&A.timeouts, 1);
}

bool vks_audit_enabled(void)
{
    auto_configure();
    return atomic_load(&A.enabled);
}

void vks_audit_get_stats(struct vks_audit_stats *out)
{
    memset(out, 0, sizeof *out);
    out->enabled = atomic_load(&A.enabled);
    out->mode = (enum vks_audit_mode)atomic_load(&A.mode);
    out->on_failure = (enum vks_audit_on_failure)atomic_load(&A.on_failure);
    if (audit_lock_until(audit_deadline())) {
        /* else a writer is stuck on a stalled sink: the chain fields stay empty */
        struct vks_audit_keys *k = atomic_load(&A.keys);
        out->ephemeral_key = k != NULL && k->ephemeral;
        out->sinks = audit_chain_nsinks() + (atomic_load(&A.callback) ? 1 : 0);
        audit_chain_stats(&out->seq, out->chain);
        snprintf(out->key_id, sizeof out->key_id, "%s", k ? k->key_id : "");
        pthread_mutex_unlock(&A.lock);
    }
    out->emitted = atomic_load(&A.emitted);
    out->written = atomic_load(&A.written);
    out->dropped = atomic_load(&A.dropped);
    out->failures = atomic_load(&A.failures);
    out->sink_errors = atomic_load(&A.sink_errors);
    out->unaudited = unaudited_sum();
    out->reopens = atomic_load(&A.reopens);
    out->timeouts = atomic_load(&A.timeouts);
    out->queue_depth = audit_q_depth();
}

void vks_audit_reopen(void)
{
    pthread_mutex_lock(&A.lock);
    audit_chain_reopen_now();
    pthread_mutex_unlock(&A.lock);
}

void vks_audit_shutdown(void)
{
    pthread_mutex_lock(&A.cfg_lock);
    vks_audit_flush();
    audit_q_stop();
    pthread_mutex_lock(&A.lock);
    if (atomic_load(&A.enabled) && audit_chain_started() && audit_chain_nsinks() > 0) {
        audit_chain_set_deadline(audit_deadline());
        (void)audit_chain_dropped_notice(AUDIT_CAP_NONE);
        audit_chain_close();
    }
    audit_chain_close_sinks();
    atomic_store(&A.enabled, false);
    atomic_store(&A.configured, false);
    atomic_store(&A.auto_tried, false);
    atomic_store(&A.callback, false);
    atomic_store(&A.required, false);
    atomic_store(&A.mode, (int)VKS_AUDIT_SYNC);
    atomic_store(&A.on_failure, (int)VKS_AUDIT_DENY);
    A.has_config_error = false;
    atomic_store(&A.warned, false);
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
    pthread_mutex_unlock(&A.lock);
    audit_q_free();
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
    audit_q_atfork_prepare();
    pthread_mutex_lock(&A.lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&A.lock);
    audit_q_atfork_parent();
    pthread_mutex_unlock(&A.cfg_lock);
}

static void fork_child(void)
{
    if (atomic_load(&A.keys) != NULL) {
        /* the keys lived in the arena, which fork wiped (MADV_WIPEONFORK): reload them */
        atomic_store(&A.reload_keys, true);
        audit_chain_fork_child();
    }
    pthread_mutex_unlock(&A.lock);
    audit_q_atfork_child(); /* resets the queue, releases its lock */
    pthread_mutex_unlock(&A.cfg_lock);
    if (atomic_load(&A.mode) == VKS_AUDIT_ASYNC && atomic_load(&A.enabled))
        (void)audit_q_start(A.cfg.queue_size ? A.cfg.queue_size : AUDIT_DEFAULT_QUEUE, NULL);
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
