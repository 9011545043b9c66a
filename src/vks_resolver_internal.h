/*
 * vks_resolver internals shared by its two files: vks_resolver_runtime.c (the process-wide
 * runtime: configuration, Vault client, keyring; its generations, hazard records and fork handling)
 * and vks_resolver.c (identities, sources, envelopes, the cache source, audit, vks_resolve).
 * Not a contract for anyone else (that is vks_resolver.h; design: docs/internals/resolver.md).
 */
#ifndef VKS_RESOLVER_INTERNAL_H
#define VKS_RESOLVER_INTERNAL_H

#include <stdbool.h>

#include "vks_resolver.h"
#include "vks_vault.h"

struct runtime {
    unsigned refs;          /* guarded by rt_lock */
    unsigned long gen;      /* distinct per runtime: part of every cache identity */
    struct vks_config cfg;
    struct vks_vault *vault;    /* NULL when it could not be built: vault_err says why */
    struct vks_err vault_err;
    struct vks_keyring *keyring;/* NULL when it could not be loaded: keyring_err says why */
    struct vks_err keyring_err;
    char *vault_addr_shown;     /* cfg.vault.address redacted (vks_redact_url) once, for audit */
    unsigned long born_gen;     /* vks_fork_generation() when built                          */
    bool retired;               /* on rt_retired (guarded by rt_lock)                        */
    struct runtime *retired_next;
};

/* The current runtime with a reference (built from the environment on first use); the caller
 * gives it back with runtime_release. Thread-safe. */
vks_status runtime_acquire(struct runtime **out, struct vks_err *err);
void runtime_release(struct runtime *rt);
/* One more reference to a runtime the caller already holds one of (a cloned cache source). */
void runtime_ref(struct runtime *rt);
/* The hit path's hold: the current runtime through this thread's hazard record, no lock and no
 * reference count; false when there is none (then runtime_acquire). runtime_unhold ends it. */
bool runtime_hold(struct runtime **out);
void runtime_unhold(void);

#endif
