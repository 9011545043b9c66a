/*
 * vks-agent internals (docs/internals/agent.md). One process: a libevent loop on the main thread
 * owns every listener and connection; cache hits are answered on the loop (ag_lookup_inline:
 * vks_resolve with hit_only, when audit cannot block); a small pool of worker threads runs the
 * other lookups (which may block on Vault) through vks_resolve, the same core operation the Lua
 * module uses; results come back to the loop through a completion queue and event_active().
 *
 *   conf.c       --config FILE (TOML via common/vks_toml.h) -> struct ag_conf (immutable, refcounted)
 *   lookup.c     lookup key -> keysource -> vks_resolve (username and password) -> ag_result
 *   pool.c       worker threads, job and completion queues
 *   socketmap.c  Postfix socketmap (netstrings, persistent connections)
 *   exim.c       Exim ${readsocket} line protocol (one request, one reply, close)
 *   net.c        unix listeners, connections, peer credentials, deadlines, replies
 *   metrics.c    counters and the /metrics + /health HTTP listener (evhttp)
 *   main.c       command line, signals, reload, drain
 *
 * Thread-safety: everything in net.c, socketmap.c, exim.c and main.c runs on the loop thread
 * only. lookup.c runs on worker threads (and, for the inline try, on the loop thread while the
 * job belongs to no worker) and touches only its job, the conf snapshot the job holds a reference
 * to (read-only), the core (thread-safe) and the metrics counters (atomics).
 * Secrets: replies holding a password live in arena slots (vks_secret) from the worker until the
 * last byte is written, then are wiped; they never pass through libevent's buffers.
 */
#ifndef VKS_AGENT_H
#define VKS_AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "vks_audit.h"
#include "vks_cache.h"
#include "vks_config.h"
#include "vks_secmem.h"

#define AG_NAME "vks-agent"

struct event_base;

/* The unix-socket line protocols (AG_LISTENER_COUNT of them, each with a [section] of the same
 * name), then the Vault-compatible HTTP read API. */
enum ag_proto { AG_PROTO_SOCKETMAP = 0, AG_PROTO_EXIM, AG_PROTO_VAULTAPI, AG_PROTO_COUNT };
#define AG_LISTENER_COUNT 2
enum ag_result { AG_R_OK = 0, AG_R_NOTFOUND, AG_R_TEMP, AG_R_PERM, AG_R_COUNT };

const char *ag_proto_name(enum ag_proto p);
const char *ag_result_name(enum ag_result r);

/* ------------------------------------------------------------------------------------------
 * Configuration (conf.c). Immutable once loaded; shared by reference count between the loop and
 * the jobs in flight, so a reload never changes what a running lookup sees.
 */
struct ag_cred_map {
    char *mount;             /* vault_mount                                                  */
    char *path;              /* template: {key} {host} {port} {sender} {domain}             */
    char *username_field;    /* field holding the user name (NULL when `username` is fixed)  */
    char *username;          /* a fixed user name, or NULL                                  */
    char *password_field;    /* field holding the password ("key" by default)                */
    char *namespace_;        /* NULL: the [vault] namespace                                  */
    int kv_version;          /* VKS_KV_UNSET: the [vault] default                            */
};

struct ag_listener_conf {
    bool enabled;
    enum ag_proto proto;
    char *socket;            /* unix socket path                                              */
    unsigned mode;           /* file mode of the socket (default 0660)                       */
    bool has_group;
    gid_t group;
    uid_t *allow_uids;
    size_t n_uids;
    gid_t *allow_gids;
    size_t n_gids;
    char *map;               /* socketmap: the only map name answered                        */
    bool sender_dependent;   /* socketmap: answer full sender address keys                   */
    bool forms[3];           /* socketmap: which key forms are managed (host, nexthop, sender) */
    struct ag_cred_map cred;
};

enum ag_form { AG_FORM_HOST = 0, AG_FORM_NEXTHOP, AG_FORM_SENDER };

/* [vault_api]: a Vault-compatible read endpoint (GET /v1/<mount>/data/<path>, KV v1 reads) for
 * unmodified Vault clients (KumoMTA's vault keysource, hvac, the vault CLI). */
struct ag_api_client {
    char *name;
    unsigned char token_sha256[32]; /* the client's token is never stored, only its hash        */
    char **mounts;
    size_t n_mounts;
    char **prefixes;                /* path prefixes the client may read ("" = every path)      */
    size_t n_prefixes;
    char *destination;              /* NULL, or the destination host this token is bound to     */
    char *domain;                   /* NULL, or the sender domain it is bound to: restrictions
                                       (allowed_hosts / allowed_domains) are judged against them */
};

struct ag_api_conf {
    bool enabled;
    char *host;                     /* loopback address of the TCP listener, or NULL            */
    int port;
    char *tls_cert, *tls_key;       /* PEM files: the TCP listener speaks HTTPS (both or none)   */
    bool plain_http;                /* tls = false: plain HTTP, only on a loopback IP literal
                                       (conf.c refuses it otherwise); tls_cert/tls_key are NULL  */
    char *socket;                   /* unix socket path, or NULL                                */
    unsigned mode;
    bool has_group;
    gid_t group;
    char **fields;                  /* the secret fields a read returns (default: "key")         */
    size_t n_fields;
    struct ag_api_client *clients;
    size_t n_clients;
};

/* [inbound] (issue 15, agent/inbound.h): inbound SMTP credentials for Postfix's Dovecot SASL and
 * policy delegation. Read at start; a reload keeps the running settings (logged). */
struct ag_inbound_conf {
    bool enabled;
    char *mount, *prefix;              /* NULL: "secret", "smtp-auth/"                           */
    long cache_ttl_ms, lockout_ms, window_ms; /* -1 / 0: the core's defaults (30 s, 30, 15 min)  */
    long long max_failures, max_failures_address, workers, max_connections;
    long idle_timeout_ms, read_timeout_ms, verify_timeout_ms;
    struct ag_listener_conf sasl, policy; /* socket, mode, group, allow_users/groups             */
    bool http_verify;                  /* POST /v1/vks/inbound/verify on the [vault_api] listener */
};

struct ag_conf {
    atomic_int refs;
    char *file;
    struct vks_config vault;           /* complete (vks_config_finish'ed)                        */
    struct vks_cache_config cache;
    /* audit: the strings the vks_audit_config points to */
    struct vks_audit_config audit;
    char *audit_file, *audit_key_file, *audit_syslog_socket;
    int workers;
    bool inline_hits;                  /* answer cache hits on the loop thread (default true)    */
    size_t max_connections;
    size_t max_request;                /* socketmap netstring payload cap (bytes)                 */
    long idle_timeout_ms, read_timeout_ms, write_timeout_ms, drain_timeout_ms;
    char *metrics_host;                /* NULL: no metrics listener                               */
    int metrics_port;
    struct ag_listener_conf lst[AG_LISTENER_COUNT];
    struct ag_api_conf api;
    struct ag_inbound_conf inbound;
};

/*
 * Loads and validates FILE. On failure returns NULL and writes every error found, one per line,
 * each naming "FILE:LINE: key: message", into errbuf. check_files: also check that files named
 * by the config exist (CA, token file, key file) and that users/groups resolve.
 */
struct ag_conf *ag_conf_load(const char *file, char *errbuf, size_t errlen);
struct ag_conf *ag_conf_ref(struct ag_conf *c);
void ag_conf_unref(struct ag_conf *c);
/* True when the listener settings (path, mode, group) differ, so the socket must be rebound. */
bool ag_listener_conf_socket_differs(const struct ag_listener_conf *a, const struct ag_listener_conf *b);
/* Applies vault/cache/audit settings to the process-wide core. On error nothing is kept changed
 * when possible (audit is restored to `prev` if the resolver refuses); err says why. */
int ag_conf_apply_core(const struct ag_conf *c, const struct ag_conf *prev, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------
 * Lookups (lookup.c), on worker threads.
 */
struct ag_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

#define AG_KEY_MAX 1024

struct ag_job {
    struct ag_job *next;
    /* input (set by the loop) */
    struct ag_conf *conf;              /* a reference, released by the loop when the job is done */
    enum ag_proto proto;
    char item[8];                      /* exim: "user", "pass" or "plain"; socketmap: ""         */
    char key[AG_KEY_MAX + 1];          /* as received (socketmap: the key; exim: the host)      */
    struct ag_peer peer;
    void *conn;                        /* opaque to workers (loop-thread object)                */
    uint64_t conn_id;
    /* vault_api input */
    char mount[256];
    int kv_version;                    /* 1 or 2                                                */
    long long version;                 /* KV v2 ?version=N, 0 = latest                          */
    const struct ag_api_client *client;/* inside conf                                           */
    char peer_desc[96];                /* "uid=.. pid=.." (unix socket) or "addr=127.0.0.1:port" */
    /* an inline try on the loop thread (ag_lookup_inline): cache hits only; what it resolved
     * before something was not cached is kept here for the pool's run */
    bool hit_only;
    bool needs_pool;                   /* set by the inline try: run it in the pool             */
    vks_secret user;                   /* socketmap/exim: the user name, when resolved inline   */
    bool have_user;
    size_t api_next, api_found;        /* vault_api: next field to read, fields written so far  */
    long long api_version;
    bool api_overflow;
    /* output (set by the worker) */
    int http_status;                   /* vault_api                                             */
    enum ag_result result;
    vks_secret reply;                  /* the full bytes to send (secret); empty: close        */
    char why[640];                     /* secret-free reason for logs and TEMP replies          */
};

/* Runs one job to completion (fills result, reply, why). Never blocks forever: Vault requests
 * have the configured timeout. A job an inline try left unfinished continues where it stopped. */
void ag_lookup_run(struct ag_job *job);
/* Loop thread: tries the job with cache hits only (vks_resolve_req.hit_only: no Vault read, no
 * wait). true: finished (result, reply set: hand it to the completion callback); false: something
 * was not cached, the job keeps what was resolved and must go to the pool (ag_lookup_run). */
bool ag_lookup_inline(struct ag_job *job);
/* Whether hits may be answered on the loop thread under this config: agent.inline_hits and an
 * audit trail that cannot block the loop (no sink, or mode "async"; sync/fsync sinks write on the
 * caller's thread, so those lookups all go to the pool). */
bool ag_inline_allowed(const struct ag_conf *c);
/* Frees what an unfinished job holds (the inline user name); the reply is the caller's. */
void ag_job_clear(struct ag_job *job);
/* One vks_resolve of (m->mount, path, field) with the job's api name ("agent.<proto>") and ctx;
 * kv_version VKS_KV_UNSET = the configured default; version 0 = latest. *out owned by the caller;
 * *secret_version (may be NULL) receives the KV v2 version of the value. */
struct vks_ctx;
/* siblings: other fields of the same secret to cache from the same Vault read (at most
 * VKS_KV_SIBLINGS_MAX). With job->hit_only: VKS_E_NOT_CACHED when not a fresh cache hit. */
vks_status ag_resolve_field(const struct ag_job *job, const struct ag_cred_map *m, const char *path,
                            const char *field, int kv_version, long long version,
                            const struct vks_ctx *ctx, const char *const *siblings, size_t n_siblings,
                            vks_secret *out, int64_t *secret_version, struct vks_err *err);
/* The vault_api part of ag_lookup_run (lookup_api.c): reads the configured fields, builds the
 * Vault-shaped JSON body in job->reply and sets job->http_status. */
void ag_lookup_api(struct ag_job *job);

/* The client whose token this is (SHA-256 compared in constant time with every entry), or NULL. */
const struct ag_api_client *ag_api_find_client(const struct ag_api_conf *api, const char *token);
/* vault_api (vaultapi.c), loop thread: starts the TCP and/or unix listeners. */
int ag_api_open(struct event_base *base, const struct ag_conf *conf, char *err, size_t n);
void ag_api_close(void);
/* The pool's completion callback for vault_api jobs: sends the reply (loop thread). */
void ag_api_job_done(struct ag_job *job);

/* Classifies a key for socketmap (host, nexthop [h]:p or h:p, sender addr); false: malformed. */
bool ag_key_form(const char *key, enum ag_form *form);

/*
 * Expands a path template for a lowercased key. Returns 1 on success, 0 when the template uses a
 * placeholder this key form does not have or a substituted value is not a safe path component
 * (the key is then "not managed": NOTFOUND), -1 when out is too small.
 * host_out receives the host part (for restrictions), domain_out the sender's domain or "".
 */
int ag_expand_path(const char *tmpl, const char *key, enum ag_form form, char *out, size_t n,
                   char *host_out, size_t hn, char *domain_out, size_t dn);

/* Exim's circumflex rule: copies v doubling every '^'. Returns the length written, or -1 when the
 * value cannot be represented (NUL, CR/LF, or too long for n). */
long ag_exim_escape(const unsigned char *v, size_t len, unsigned char *out, size_t n);

/* ------------------------------------------------------------------------------------------
 * Worker pool (pool.c). Submit from the loop; completion callback on the loop thread.
 */
struct event_base;
typedef void (*ag_done_fn)(struct ag_job *job);
int ag_pool_start(struct event_base *base, int workers, ag_done_fn done);
void ag_pool_submit(struct ag_job *job);
/* Loop thread: a job finished inline goes through the same completion path (callback on the
 * next pass of the loop, never from inside the caller: no recursion into the connection). */
void ag_pool_complete(struct ag_job *job);
size_t ag_pool_in_flight(void);
void ag_pool_stop(void);

/* ------------------------------------------------------------------------------------------
 * Metrics (metrics.c). Counters are atomics, updated from any thread.
 */
void ag_metrics_lookup(enum ag_proto p, enum ag_result r);
void ag_metrics_outcome(const char *cache_outcome);   /* vks_resolve_info.outcome            */
void ag_metrics_vault_latency(double seconds);        /* one lookup that read Vault         */
void ag_metrics_conn(enum ag_proto p, int delta);     /* open connections                   */
void ag_metrics_refused(enum ag_proto p, const char *reason); /* peer refused, too many, bad input */
void ag_metrics_reload(bool ok);
void ag_metrics_inline(enum ag_proto p);              /* a request answered on the loop     */
/* Starts the HTTP listener (NULL host: none). */
int ag_metrics_listen(struct event_base *base, const char *host, int port, char *err, size_t n);
void ag_metrics_set_draining(bool draining);
void ag_metrics_close(void);

/* ------------------------------------------------------------------------------------------
 * Network (net.c) and the two protocols.
 */
int ag_net_open(struct event_base *base, struct ag_conf *conf, char *err, size_t n);
/* Reload: rebinds listeners whose socket settings changed (new socket first, renamed over the
 * path), keeps the others; on error nothing changes. Takes a reference to conf. */
int ag_net_reconfigure(struct ag_conf *conf, char *err, size_t n);
void ag_net_stop_listening(void);
/* The pool's completion callback: sends the reply of a finished job (loop thread). */
void ag_net_job_done(struct ag_job *job);
size_t ag_net_connections(void);
void ag_net_close_all(void);
struct ag_conf *ag_net_conf(void);
/* A listening unix socket at lc->socket (bound at a temporary name, mode and group set, renamed
 * over the path); name is the config section for messages. Returns the fd or -1 with err. */
int ag_net_bind_unix(const struct ag_listener_conf *lc, const char *name, char *err, size_t n);
/* SO_PEERCRED uid/gid against the listener's allow-lists. */
bool ag_net_peer_allowed(const struct ag_listener_conf *lc, const struct ag_peer *p);

void ag_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
