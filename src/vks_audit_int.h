/*
 * vks_audit_int: the state the parts of vks_audit share (private to src/vks_audit*.c).
 *
 * The module is split along its seams (docs/internals/audit.md "Files"):
 *   vks_audit.c        configuration, keys, the failure policy, emit, stats, lifecycle, fork
 *   vks_audit_event.c  the JSON writer, event records, the secret.lookup fields
 *   vks_audit_chain.c  the HMAC chain, its sink set and its housekeeping events, capture
 *   vks_audit_sink.c   file, syslog and stderr sinks
 *   vks_audit_async.c  the async queue and its writer thread
 *   vks_audit_verify.c the verifier
 * Each part's header states its own contract; this one states who guards what in audit_A.
 *
 * Locks, in this order (never the other way round): cfg_lock -> the queue lock (vks_audit_async.c)
 * -> lock. No lock is held while calling back into the caller.
 *  - cfg_lock: configure, shutdown, key reload after fork.
 *  - lock ("the audit lock"): the chain and its sinks (vks_audit_chain.c), cfg, retired,
 *    config_error, last_error. A lookup waits for it at most until its write deadline
 *    (audit_lock_until): a writer stuck on a stalled sink never holds lookups longer.
 *  - the atomics may be read without a lock; they are written under lock (or cfg_lock).
 * The process has one instance, audit_A, defined in vks_audit.c.
 */
#ifndef VKS_AUDIT_INT_H
#define VKS_AUDIT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "vks_audit.h"
#include "vks_hmac.h"

#define AUDIT_DEFAULT_QUEUE 1024
#define AUDIT_DEFAULT_REOPEN_MS 1000
#define AUDIT_DEFAULT_TIMEOUT_MS 1000

struct vks_audit_keys {
    struct vks_hmac_key chain;   /* MAC of each line                         */
    struct vks_hmac_key fp;      /* fingerprint of values                    */
    char key_id[17];             /* hex, or "ephemeral"                      */
    bool ephemeral;
    struct vks_audit_keys *retired_next;
};

/* The configuration as applied (strings owned). */
struct audit_cfg_copy {
    char *file, *syslog_socket, *syslog_ident, *key_file;
    bool syslog, stderr_sink, callback, require_key, required;
    int syslog_facility;
    enum vks_audit_mode mode;
    enum vks_audit_on_failure on_failure;
    size_t queue_size;
    long reopen_check_ms;
    long timeout_ms;
    char *key_env, *key_file_env;    /* key sources seen at configure, to notice a change */
};

struct audit_state {
    pthread_mutex_t cfg_lock;       /* serialises configure / shutdown                     */
    /* Cache-line layout: the writer takes lock for every event, so the flags every emit reads,
       the counter every emit bumps and the queue (vks_audit_async.c) each get their own line
       (false sharing with the lock cost the async caller a cache miss per event). */
    _Alignas(64) pthread_mutex_t lock; /* the audit lock (see above)                        */
    _Alignas(64) atomic_bool configured, auto_tried, enabled;
    atomic_int mode, on_failure;
    atomic_bool callback, required;
    atomic_int nsinks_pub;          /* the chain's sink count, readable without the lock     */
    atomic_long timeout_ms;         /* write deadline per call (and wait for the audit lock)  */
    atomic_bool reload_keys;        /* forked: the arena (MADV_WIPEONFORK) lost the keys     */
    _Alignas(64) struct audit_cfg_copy cfg;
    bool have_cfg;
    _Atomic(struct vks_audit_keys *) keys;
    struct vks_audit_keys *retired;
    char config_error[VKS_ERR_MSG_MAX];
    atomic_bool has_config_error; /* written under lock; read without it by unaudited lookups */
    char last_error[256];
    atomic_bool warned;             /* the allow-policy warning of this failure episode       */
    /* counters */
    _Alignas(64) atomic_uint_fast64_t emitted;
    _Alignas(64) atomic_uint_fast64_t written, dropped, failures, sink_errors, reopens,
        timeouts;
};

extern struct audit_state audit_A;

/* The outcome of one chain event for the failure policy. Called with the audit lock held. */
static inline void audit_record_outcome(bool recorded)
{
    if (recorded) {
        atomic_store(&audit_A.warned, false);
        return;
    }
    atomic_fetch_add(&audit_A.failures, 1);
}

/* Takes the audit lock unless deadline_ms (audit_now_ms clock) passes first (false). */
bool audit_lock_until(int64_t deadline_ms);
/* now + the configured write timeout (audit_now_ms clock). */
int64_t audit_deadline(void);

/* One line "vks: audit: <msg>" on fd 2 (no lock, no allocation). */
void audit_warn_line(const char *msg);

#endif
