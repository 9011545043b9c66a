/*
 * vks_reset_gate: the resolvers' side of the emergency reset (issue 13). Design and the numbers:
 * docs/internals/reset.md; the record: vks_reset_record.h; the operator's side: vks_cred_reset.h.
 *
 * vks_resolve calls vks_reset_gate for every Vault lookup, before the cache. Per (Vault address,
 * mount) the process keeps the last known control record (its KV version and seq). When the
 * check is due (interval with +-10 % jitter), the calling lookup checks, single-flight: one GET
 * <mount>/metadata/vks-control/reset, and only when the version changed a GET of the data; the
 * new entries' credentials are dropped from the cache (vks_cache_invalidate_match), so their next
 * lookup reads Vault and the credential's own custom_metadata (state=reset, reset_id) refuses it
 * (VKS_E_REVOKED, in the resolver's admit step). Other lookups meanwhile use the last known record
 * and do not wait. A hit_only lookup never checks: when a check is due it gets VKS_E_NOT_CACHED.
 *
 * Fail closed:
 *  - 404 (no record) is "no reset"; any other failure is retried at the next interval, and the
 *    mount keeps being served for at most bound_ms after the first failed check (so at most
 *    interval + bound after the record was last read), then every lookup of that mount fails
 *    with VKS_E_UNAVAILABLE naming the record and the bound, until a check succeeds again;
 *  - a record that does not parse refuses every lookup of the mount with VKS_E_REVOKED naming the
 *    record and the field, until a check reads a good one.
 *
 * Ownership: nothing is handed out. Thread-safety: every function may be called from any thread;
 * the state is behind one mutex that is never held during a Vault request and is re-initialised
 * in a forked child (pthread_atfork), which keeps the parent's last known record but not its
 * check in flight.
 */
#ifndef VKS_RESET_GATE_H
#define VKS_RESET_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_vault.h"

#define VKS_RESET_INTERVAL_DEFAULT_MS 2000L   /* reset_check_interval / VKS_RESET_CHECK_INTERVAL   */
#define VKS_RESET_BOUND_DEFAULT_MS 30000L     /* reset_max_unverified / VKS_RESET_MAX_UNVERIFIED   */
#define VKS_RESET_INTERVAL_MIN_MS 100L

struct vks_reset_gate_req {
    struct vks_vault *vault;   /* the runtime's client (its own auth): NULL skips the gate      */
    const char *mount;
    long interval_ms;          /* <= 0: the default; below VKS_RESET_INTERVAL_MIN_MS: that      */
    long bound_ms;             /* <= 0: the default                                             */
    bool hit_only;
};

/* VKS_OK: go on with the lookup. VKS_E_NOT_CACHED (hit_only, a check is due: nothing happened,
 * not audited), VKS_E_UNAVAILABLE (bound passed), VKS_E_REVOKED (malformed record). */
vks_status vks_reset_gate(const struct vks_reset_gate_req *req, struct vks_err *err);

/* The resolver reports a lookup of (mount, path) refused because the credential is reset
 * (VKS_E_REVOKED): the cache remembers the refusing metadata until the value would have expired,
 * so the next check of that mount drops it again, and the credential is served within one
 * interval once a rotation ended its reset. At most 256 paths are kept; beyond that the next check
 * of any mount drops all of that mount's entries. */
void vks_reset_gate_note_revoked(const char *mount, const char *path);

/* A number that changes whenever any check of this process found a control record changed (a new
 * reset, or a record that cannot be understood). A cache that is not vks_cache (vks_inbound's
 * success cache) reads it before reading Vault, keeps it with what it stores, and treats an entry
 * with another epoch as absent: a reset reaches it within one interval, like vks_cache. Any thread. */
uint64_t vks_reset_gate_epoch(void);

struct vks_reset_gate_stats {
    uint64_t checks;       /* metadata reads of a control record                                */
    uint64_t data_reads;   /* data reads (the version had changed)                              */
    uint64_t failures;     /* checks that failed (other than 404)                               */
    uint64_t dropped;      /* cache entries dropped                                             */
};
void vks_reset_gate_get_stats(struct vks_reset_gate_stats *out);

/* Forgets every mount's state (tests, and vks_resolver_shutdown). Not concurrent with lookups. */
void vks_reset_gate_clear(void);

#endif
