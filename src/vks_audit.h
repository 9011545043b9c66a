/*
 * vks_audit: one tamper-evident audit event per lookup, written to one or more sinks.
 *
 * CONTRACT for the resolver (schema and operator guide: docs/audit.md; design: docs/internals/audit.md)
 *  - vks_resolve() calls vks_audit_emit() exactly once per resolve / resolve_handle call, whatever
 *    the outcome, from one place, after the outcome is known and before it returns. When emit
 *    returns VKS_E_AUDIT_UNAVAILABLE (policy 'deny' and no sink recorded the event) the lookup fails
 *    with that code: the caller wipes the value and returns the error instead.
 *  - The event only borrows pointers: every string and the value must stay valid during the call;
 *    nothing is kept afterwards. The plaintext value (value/value_len) is used ONLY to compute a
 *    keyed fingerprint (HMAC-SHA256 with a subkey of the audit key, truncated to 128 bits); it is
 *    never stored, copied, queued or printed. A caller that already has the fingerprint (e.g. the
 *    cache computed it once with vks_audit_fingerprint) sets has_fingerprint instead.
 *  - Never put a token, a password, key_data or key material into any field: token_accessor is the
 *    accessor, error is a vks_err message (secret-free by the rules of vks_error.h).
 *
 * Lines are JSON, one per event, with a per-process HMAC-SHA256 chain (chain id, seq, prev_mac,
 * mac over the exact bytes of the line before ',"mac":'). `build/vks audit verify` checks them.
 *
 * Configuration is process-wide. Without vks_audit_configure the first emit configures from the
 * environment (VKS_AUDIT_FILE, VKS_AUDIT_SYSLOG, VKS_AUDIT_STDERR, VKS_AUDIT_MODE,
 * VKS_AUDIT_ON_FAILURE, VKS_AUDIT_QUEUE, VKS_AUDIT_KEY, VKS_AUDIT_KEY_FILE, ...: docs/audit.md).
 * With no sink configured auditing is off: emit returns VKS_OK and counts the event as unaudited
 * (unless `required`, then every lookup fails with VKS_E_AUDIT_UNAVAILABLE).
 *
 * Thread-safety: every function may be called from any thread at any time, except that
 * vks_audit_shutdown must not race with emit from other threads (call it at exit / in tests).
 * No callback into the caller is made with any lock held. fork(): the child starts a new chain.
 */
#ifndef VKS_AUDIT_H
#define VKS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vks_error.h"

#define VKS_AUDIT_SCHEMA_VERSION 1
/* Bytes of the value fingerprint (HMAC-SHA256 truncated); printed as 32 hex characters. */
#define VKS_AUDIT_FP_LEN 16

/* What happened to the lookup. */
enum vks_audit_outcome {
    VKS_AUDIT_HIT = 0,      /* served from the cache, fresh                                  */
    VKS_AUDIT_MISS,         /* fetched from the source now (cache empty or no cache)         */
    VKS_AUDIT_REFRESH,      /* the caller's lookup refreshed an expiring entry                */
    VKS_AUDIT_STALE,        /* served stale because the source failed (stale-if-error)        */
    VKS_AUDIT_NEGATIVE,     /* a cached failure answered (negative cache)                    */
    VKS_AUDIT_DENIED,       /* refused by policy: permission denied, restricted, not encrypted */
    VKS_AUDIT_ERROR,        /* any other failure                                             */
    VKS_AUDIT_OUTCOME_COUNT
};

/* Which keysource form the lookup used. */
enum vks_audit_source {
    VKS_AUDIT_SRC_UNKNOWN = 0, /* e.g. the keysource did not parse                          */
    VKS_AUDIT_SRC_FILE,
    VKS_AUDIT_SRC_KEY_DATA,
    VKS_AUDIT_SRC_VAULT,
    VKS_AUDIT_SRC_EVENT,
    VKS_AUDIT_SRC_COUNT
};

/* The caller context from the policy (all optional, NULL = absent). */
struct vks_audit_ctx {
    const char *domain;
    const char *site_name;
    const char *username;     /* the SMTP AUTH user name, never the password */
    const char *destination;
    const char *tag;
};

/*
 * One lookup. Zero-initialise, then fill what is known; NULL strings and zero numbers are written
 * as JSON null (absent). All pointers are borrowed for the duration of vks_audit_emit only.
 */
struct vks_audit_event {
    const char *api;                  /* "resolve" (NULL) or "resolve_handle"                  */
    enum vks_audit_outcome outcome;
    vks_status status;                /* VKS_OK, or the code the lookup returns               */
    const char *error;                /* the vks_err message of a failure (secret-free), or NULL */
    enum vks_audit_source source;
    const char *vault_addr;
    const char *namespace_;
    const char *mount;
    const char *path;
    const char *key;                  /* vault_key (the field name, not a key!)              */
    const char *file_path;            /* file keysource                                       */
    const char *event_name;           /* event keysource                                      */
    int kv_version;                   /* 1 or 2; 0 = unknown / not Vault                      */
    int64_t secret_version;           /* KV v2 metadata.version; 0 = unknown                  */
    int64_t version_pin;              /* vault_version asked for; 0 = latest                  */
    bool cached;                      /* the answer involved the cache (hit/stale/negative/refresh) */
    int64_t cache_age_ms;             /* age of the cached entry when cached                   */
    uint64_t latency_ns;              /* wall time of the whole lookup                        */
    int http_status;                  /* last HTTP status from Vault; 0 = none                */
    const char *token_accessor;       /* accessor of the token used; NEVER the token           */
    struct vks_audit_ctx ctx;
    bool encrypted;                   /* the stored value was an ENC: envelope                */
    const unsigned char *value;       /* plaintext, ONLY for the fingerprint; NULL on failure */
    size_t value_len;
    bool has_fingerprint;             /* use `fingerprint` instead of hashing `value`         */
    unsigned char fingerprint[VKS_AUDIT_FP_LEN];
};

enum vks_audit_mode { VKS_AUDIT_SYNC = 0, VKS_AUDIT_FSYNC, VKS_AUDIT_ASYNC };
enum vks_audit_on_failure { VKS_AUDIT_DENY = 0, VKS_AUDIT_ALLOW };

/*
 * Process-wide configuration. Strings are borrowed during vks_audit_configure (copied inside).
 * Start from vks_audit_config_init (defaults) or vks_audit_config_from_env.
 */
struct vks_audit_config {
    const char *file;                 /* file sink path, NULL = none                           */
    bool syslog;                      /* syslog sink (datagram to syslog_socket)               */
    const char *syslog_socket;        /* NULL = /dev/log                                       */
    const char *syslog_ident;         /* NULL = "vks-audit"                                    */
    int syslog_facility;              /* LOG_* facility value (<syslog.h>); default LOG_AUTHPRIV */
    bool stderr_sink;                 /* one line per event on fd 2                            */
    bool callback;                    /* Lua callback sink: lines captured per thread (below)  */
    enum vks_audit_mode mode;         /* default sync                                          */
    enum vks_audit_on_failure on_failure; /* default deny                                      */
    size_t queue_size;                /* async queue capacity in events; 0 = 1024             */
    long reopen_check_ms;             /* file sink: rename check period; <0 = default 1000, 0 = every write */
    long timeout_ms;                  /* write deadline of one event on all sinks, and the longest
                                         a lookup waits for the audit lock; <0 = default 1000,
                                         0 = never wait (docs/audit.md "Deadlines")            */
    const char *key_file;             /* audit key file (raw 32 bytes, mode 0600/0400); NULL = env */
    bool require_key;                 /* refuse to run with an ephemeral key                   */
    bool required;                    /* no sink configured = every lookup fails (deny)        */
};

/* Defaults: no sink, sync, deny, queue 1024, rename check 1000 ms, write deadline 1000 ms. */
void vks_audit_config_init(struct vks_audit_config *cfg);

/*
 * Defaults overridden by the environment. Strings point into the environment (valid until it
 * changes). Errors (VKS_E_CONFIG) name the variable.
 */
vks_status vks_audit_config_from_env(struct vks_audit_config *cfg, struct vks_err *err);

/*
 * Applies a configuration. The same options as the current ones: no-op (VKS_OK). Changed options:
 * the new sinks are opened and the key loaded first; on any error nothing changes; then the new
 * set replaces the old one atomically (the async queue is drained into the old sinks first). The
 * chain (id, seq, mac) continues across reconfiguration unless the key changes (then a new chain
 * starts). Key: cfg->key_file, else VKS_AUDIT_KEY (base64 of 32 bytes), else VKS_AUDIT_KEY_FILE,
 * else an ephemeral random key (warned once; refused with require_key).
 */
vks_status vks_audit_configure(const struct vks_audit_config *cfg, struct vks_err *err);

/*
 * Records one event. Returns VKS_OK when at least one sink recorded it (in async mode: when it
 * was queued), or when policy is 'allow' (failures are counted and warned once per episode), or
 * when auditing is off. Returns VKS_E_AUDIT_UNAVAILABLE under 'deny' when no sink could record
 * it (async: queue full, or the writer's sinks are failing). Never waits longer than the write
 * deadline (timeout_ms) for a sink or for the audit lock, except inside a write() to a regular
 * file that the kernel blocks (a frozen filesystem; docs/audit.md "Deadlines"). An event no sink
 * recorded is counted and reported by the next audit.dropped line (`unrecorded`). line_out,
 * when non-NULL, receives a malloc'd copy of the JSON line (no newline) when it was formatted in
 * this call (sync modes, or any mode while capture is active), else NULL; the caller free()s it.
 * It holds no secret.
 */
vks_status vks_audit_emit(const struct vks_audit_event *ev, char **line_out, struct vks_err *err);

/* True when auditing is on (configuring from the environment on first use, as vks_audit_emit
 * does). Lock-free: a caller may skip work that only an event would use (the resolver's latency
 * clock); the answer may change right after. */
bool vks_audit_enabled(void);

/*
 * Lua callback sink support (per thread). vks_audit_capture_begin marks the calling thread: the
 * next event emitted from it is formatted synchronously (even in async mode) and its line kept;
 * vks_audit_capture_end returns that line (malloc'd, caller frees; NULL if none) and clears the
 * mark. A captured line counts as recorded when the config has `callback` enabled: the binding
 * delivers it to the Lua function after the C call returns, with no lock held.
 */
void vks_audit_capture_begin(void);
char *vks_audit_capture_end(void);

/*
 * For the callback sink (lock-free, any thread): the write deadline in ms, and whether a callback
 * that misses it must fail the lookup (on_failure deny, and the callback is the only sink: no
 * other sink holds the event). A missed deadline is counted with vks_audit_note_timeout.
 */
void vks_audit_callback_policy(long *timeout_ms, bool *must_fail);
void vks_audit_note_timeout(void);

/* The keyed value fingerprint with the current audit key (for callers that cache it). */
vks_status vks_audit_fingerprint(const unsigned char *value, size_t len,
                                 unsigned char out[VKS_AUDIT_FP_LEN], struct vks_err *err);

struct vks_audit_stats {
    bool enabled;                     /* at least one sink configured                          */
    bool ephemeral_key;
    int sinks;
    enum vks_audit_mode mode;
    enum vks_audit_on_failure on_failure;
    uint64_t emitted;                 /* vks_audit_emit calls while enabled                    */
    uint64_t written;                 /* chain events recorded by at least one sink            */
    uint64_t dropped;                 /* async: events dropped because the queue was full      */
    uint64_t failures;                /* events no sink could record (lost or refused)         */
    uint64_t sink_errors;             /* individual sink write failures                        */
    uint64_t unaudited;               /* lookups while auditing was off                        */
    uint64_t reopens;                 /* file sink reopened after rotation                     */
    uint64_t timeouts;                /* sink writes (or waits for the audit lock) that passed
                                         their deadline                                        */
    size_t queue_depth;
    uint64_t seq;                     /* next sequence number of the chain                     */
    char chain[33];                   /* chain id (hex)                                        */
    char key_id[17];                  /* "ephemeral" or 16 hex characters                      */
};
void vks_audit_get_stats(struct vks_audit_stats *out);

/* Blocks until the async queue is empty and written (no-op in sync modes). */
void vks_audit_flush(void);

/* File sink: reopen now (e.g. from a logrotate postrotate hook via the host). */
void vks_audit_reopen(void);

/*
 * Drains the queue, writes a final "audit.close" event, stops the writer, closes the sinks and
 * wipes the keys. Auditing is off afterwards until the next configure (a new chain then starts).
 * Also run automatically at exit / module unload.
 */
void vks_audit_shutdown(void);

/*
 * Writes a warning to fd 2 only if it can take it now (poll, no waiting): a stalled stderr never
 * blocks the caller. For the binding's own audit warnings.
 */
void vks_audit_warn_raw(const char *text, size_t len);

/* syslog facility by name ("authpriv", "mail", "local0".."local7", ...); -1 when unknown. */
int vks_audit_facility_from_name(const char *name);

/* Names used in the JSON lines. */
const char *vks_audit_outcome_name(enum vks_audit_outcome o);
const char *vks_audit_source_name(enum vks_audit_source s);
const char *vks_audit_mode_name(enum vks_audit_mode m);

/*
 * Audit key loading shared with the CLI verifier: the master key (32 bytes) from key_file, else
 * VKS_AUDIT_KEY (base64), else VKS_AUDIT_KEY_FILE. Returns VKS_OK with *found=false when none is
 * configured. A key file readable by group or others is refused (VKS_E_CONFIG).
 */
struct vks_audit_keys;
vks_status vks_audit_keys_load(const char *key_file, struct vks_audit_keys **out, bool *found,
                               struct vks_err *err);
void vks_audit_keys_free(struct vks_audit_keys *k);
/* "ephemeral" never; the 16-hex key id derived from the key (safe to print). */
const char *vks_audit_keys_id(const struct vks_audit_keys *k);

/*
 * Verifier building blocks (used by `vks audit verify`). Checks the chain MAC of one line (the
 * exact bytes, without the newline): true when the line ends with ,"mac":"<64 hex>"} and that MAC
 * is the HMAC of everything before ',"mac":' under the chain subkey.
 */
bool vks_audit_line_mac_ok(const struct vks_audit_keys *k, const char *line, size_t len);

/*
 * The chain verifier behind `vks audit verify` (rules: docs/audit.md "Verifying"). Feed every line
 * of one or more files in order, then finish. Ownership: the verifier is owned by the caller and
 * borrows `keys` (may be NULL: structure-only checks) until freed. Not thread-safe (one thread).
 */
struct vks_audit_verifier;
/* sink: which sink wrote the lines ("file" by default; "stderr", "syslog" for their copies). */
vks_status vks_audit_verifier_new(const struct vks_audit_keys *keys, const char *sink,
                                  struct vks_audit_verifier **out, struct vks_err *err);
/* An anchored head: the 64-hex MAC of an event the operator recorded elsewhere. */
vks_status vks_audit_verifier_add_head(struct vks_audit_verifier *v, const char *mac_hex,
                                       struct vks_err *err);
/* One line, without its newline; any bytes. `where` names the file in reports (borrowed). */
void vks_audit_verifier_line(struct vks_audit_verifier *v, const char *where, const char *line,
                             size_t len);
/*
 * Writes the per-chain report and the verdict to out (may be NULL) and returns the exit status:
 * 0 every chain verified, 1 a problem was found (first one reported), 3 no problem found but some
 * chain could not be verified with a key (ephemeral key, other key, or no key given).
 */
int vks_audit_verifier_finish(struct vks_audit_verifier *v, FILE *out);
/* The first problem found: line number (1-based over all lines fed; 0 when that problem concerns
 * no one line, e.g. an anchored head that never appeared) and seq (-1 if none). */
void vks_audit_verifier_first_bad(const struct vks_audit_verifier *v, unsigned long *line,
                                  long long *seq);
void vks_audit_verifier_free(struct vks_audit_verifier *v);
/*
 * Optional: fn is called for every line that parsed as an audit event of this schema (after the
 * chain and MAC checks of that line), with the parsed object (a json-c object, borrowed for the
 * call only), the 1-based line number over all lines fed, and whether this line itself was found
 * bad (bad MAC, broken continuity). `vks audit report` reads events this way, so there is one
 * parser. fn must not keep `event`. Not thread-safe (as the verifier).
 */
struct json_object;
typedef void (*vks_audit_event_fn)(void *ud, const char *where, unsigned long line,
                                   const struct json_object *event, bool line_bad);
void vks_audit_verifier_on_event(struct vks_audit_verifier *v, vks_audit_event_fn fn, void *ud);
/* How many lines were fed so far (per-file spans in reports). */
void vks_audit_verifier_lines(const struct vks_audit_verifier *v, unsigned long *lines);

/* ---- administrative events (vks cred; docs/credentials.md "Operator identity and audit") ----
 * One event per administrative act, type "cred.<action>", in the same chain as lookups (so
 * `vks audit verify` checks it). Every string is borrowed for the call; NULL is written as null.
 * Never a password, an envelope or a token in any field. */
struct vks_audit_admin_event {
    const char *action;            /* [a-z_.]{1,32} (no leading/trailing "."): "create", "rotate.claim" */
    vks_status status;             /* VKS_OK or the act's failure code                         */
    const char *error;             /* the vks_err message of a failure (secret-free), or NULL   */
    const char *operator_name;     /* Vault token display_name (lookup-self)                   */
    const char *operator_accessor; /* Vault token accessor; NEVER the token                    */
    const char *source;            /* where the act came from: "cli" (later "admin-api")       */
    const char *vault_addr;
    const char *namespace_;
    const char *mount;
    const char *path;
    const char *username;          /* the credential's SMTP AUTH user name                     */
    int64_t secret_version;        /* the KV v2 version written or read; 0 = none              */
    const char *reason;            /* reveal: the operator's reason                            */
    const char *detail;            /* a short, secret-free summary ("2 domains, all IPs")      */
    const char *group;             /* the type's first part, [a-z]{1,16}: NULL = "cred"; vks backup
                                      writes "backup" (backup.create, backup.restore)         */
    const char *client_addr;       /* vks serve: the browser's/API client's address, or NULL   */
    const char *user_agent;        /* vks serve: its User-Agent (capped, escaped), or NULL     */
};
/*
 * Writes one administrative event synchronously (in async mode the queue is drained first, so the
 * chain keeps the order of events). Same failure policy as vks_audit_emit: VKS_E_AUDIT_UNAVAILABLE
 * under 'deny' when no sink recorded it; VKS_OK when auditing is off (unless required).
 * VKS_E_INVALID_ARG for a missing or malformed action. Thread-safety: as vks_audit_emit.
 */
vks_status vks_audit_emit_admin(const struct vks_audit_admin_event *ev, char **line_out,
                                struct vks_err *err);

#endif
