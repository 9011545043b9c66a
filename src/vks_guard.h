/*
 * vks_guard: one guarded anonymous mapping for secret bytes (docs/internals/guard.md).
 *
 * The three places that hold secrets outside the heap (the secret arena and the scratch buffers
 * of vks_secmem, the kept region of vks_fork) map their memory the same way, here:
 *   - an anonymous private mapping of len bytes (rounded up to pages) between two PROT_NONE
 *     guard pages, so a linear overrun or underrun faults instead of reading a neighbour;
 *   - MADV_DONTDUMP on the whole mapping (not in core dumps);
 *   - MADV_WIPEONFORK on the data when asked (a child sees zeros), otherwise inherited;
 *   - no memory lock: the caller decides when and whether to lock (vks_guard_lock), because the
 *     arena's lock is accounted against RLIMIT_MEMLOCK and may be retried.
 *
 * Ownership: the caller owns a vks_guarded it mapped and releases it with vks_guard_unmap (which
 * does not wipe: wiping is the caller's, with vks_wipe, before unmapping).
 * Thread-safety: every function is safe to call from any thread on distinct regions; a region is
 * not locked internally (its owner serialises use).
 */
#ifndef VKS_GUARD_H
#define VKS_GUARD_H

#include <stdbool.h>
#include <stddef.h>

struct vks_guarded {
    void *map;            /* the whole mapping, guard pages included                           */
    size_t map_len;
    unsigned char *data;  /* the usable bytes, map + one page                                  */
    size_t len;           /* usable length: the request rounded up to whole pages               */
    bool dontdump;        /* MADV_DONTDUMP took effect                                          */
    bool wipe_on_fork;    /* MADV_WIPEONFORK was asked for and took effect                      */
    bool locked;          /* set by vks_guard_lock_region on success                            */
};

/* The step that failed, for a message: "mmap" or "mprotect". */
struct vks_guard_failure {
    const char *step;
    int errnum;
};

/* The page size (sysconf, 4096 when unknown). */
size_t vks_guard_page_size(void);

/* Maps len (> 0) usable bytes as above. Returns 0 and fills *out, or -1 with *why filled (nothing
 * is left mapped). */
int vks_guard_map(size_t len, bool wipe_on_fork, struct vks_guarded *out, struct vks_guard_failure *why);

/* Sets or clears MADV_WIPEONFORK on the data (MADV_KEEPONFORK when clearing); returns whether the
 * kernel took it. */
bool vks_guard_set_wipe_on_fork(struct vks_guarded *g, bool wipe);

/* Locks [p, p+n) into RAM: mlock2(MLOCK_ONFAULT) where the kernel has it, mlock otherwise.
 * Returns 0, or -1 with errno set. Memory locks are not inherited by a child. */
int vks_guard_lock(void *p, size_t n);

/* vks_guard_lock on the region's data, recording the outcome in g->locked. */
bool vks_guard_lock_region(struct vks_guarded *g);

/* Unlocks (when locked) and unmaps; *g is zeroed. Does not wipe. A zeroed region is fine. */
void vks_guard_unmap(struct vks_guarded *g);

#endif
