/*
 * vks_fork: what a forked child keeps, and how every module notices that it is one.
 * Design: docs/internals/secmem.md ("Fork").
 *
 * The secret arena is MADV_WIPEONFORK: a child of fork(2) reads zeros where the parent had cached
 * plaintext, and the cache forgets it. Credentials are different: Postfix and Exim fork per
 * delivery and pre-forking hosts fork per worker, and their children must still reach Vault and
 * open ENC: values. So long-lived credentials (the Vault token, the AppRole secret_id, the ENC:
 * keys) live in a small second region, the "kept" region: locked (best effort, like scratch
 * buffers), MADV_DONTDUMP, guard pages, but NOT wiped on fork. Only such credentials go there.
 *
 * Fork mode (process-wide, read when a child is created):
 *   VKS_FORK_INHERIT (default): the child keeps the kept region (re-locked in the child); an
 *     inherited Vault client drops the parent's connections and TLS sessions and opens its own.
 *   VKS_FORK_STRICT (setup fork = 'strict' or VKS_FORK=strict): the kernel wipes the kept region
 *     too (MADV_WIPEONFORK) and the child's handler wipes it again; every use of an inherited
 *     credential is refused with a message naming fork = 'strict' (vks_fork_check), until the
 *     child configures its own (vks.setup).
 *
 * Detection: a pthread_atfork child handler, plus a getpid() comparison for forks that bypass it
 * (_Fork, raw clone); either bumps the fork generation.
 *
 * Thread-safety: every function is safe from any thread. vks_fork_sync runs its callback under a
 * process-wide mutex that is never inherited locked (atfork handlers).
 */
#ifndef VKS_FORK_H
#define VKS_FORK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"
#include "vks_secmem.h"

enum vks_fork_mode { VKS_FORK_INHERIT = 0, VKS_FORK_STRICT = 1 };

/* Parses "inherit" or "strict" (n bytes, not NUL-terminated). VKS_E_CONFIG names `what`. */
vks_status vks_fork_mode_parse(const char *s, size_t n, const char *what, enum vks_fork_mode *out,
                               struct vks_err *err);
/* Sets the mode for the next fork (and applies MADV_WIPEONFORK / MADV_KEEPONFORK to the kept
 * region). Until set, the mode comes from VKS_FORK (default inherit; a bad value is strict). */
void vks_fork_set_mode(enum vks_fork_mode m);
enum vks_fork_mode vks_fork_get_mode(void);
const char *vks_fork_mode_name(enum vks_fork_mode m);

/* A number that changes in every forked child (and only there). One getpid() and an atomic load. */
unsigned long vks_fork_generation(void);

/*
 * VKS_OK when credentials taken at fork generation `born` (vks_fork_generation() when they were
 * stored) are still intact. In a child forked in strict mode after they were stored it returns
 * `code` with "<what> was inherited across fork() and fork = 'strict' (...)".
 */
vks_status vks_fork_check(unsigned long born, vks_status code, const char *what, struct vks_err *err);

/*
 * Brings an object up to date with the fork generation: when *seen differs from the current
 * generation, fn(arg) runs once (under a process-wide mutex; other callers wait) and *seen is
 * updated. fn must not call vks_fork_sync. Fast path: one atomic load and a comparison.
 */
void vks_fork_sync(atomic_ulong *seen, void (*fn)(void *), void *arg);

/*
 * Kept secrets: like vks_secret_alloc / vks_secret_dup, but in the kept region (64-byte chunks,
 * 64 KiB). Release them with vks_secret_free as any secret. When the kept region is full they
 * come from the arena instead (counted in kept_fallbacks: such a credential is wiped in a child).
 */
vks_status vks_secret_alloc_kept(size_t cap, vks_secret *out, struct vks_err *err);
vks_status vks_secret_dup_kept(const void *src, size_t n, vks_secret *out, struct vks_err *err);
/* Moves *s (an arena secret) into the kept region in place; on failure *s is unchanged. */
vks_status vks_secret_keep(vks_secret *s, struct vks_err *err);

struct vks_fork_status {
    enum vks_fork_mode mode;
    unsigned long generation;   /* 1 in a process that was not forked (as far as we know)      */
    bool kept_locked;           /* mlock of the kept region succeeded (in this process)       */
    bool kept_dontdump;
    size_t kept_capacity, kept_in_use;
    unsigned long kept_fallbacks;
};
void vks_fork_get_status(struct vks_fork_status *out);

/* For vks_secmem: true when p lies in the kept region; then vks_fork_kept_free releases it. */
bool vks_fork_kept_owns(const void *p);
void vks_fork_kept_free(vks_secret *s);

#endif
