/*
 * vks_secmem: the one wipe primitive, constant-time comparison, and the process-wide locked arena
 * that holds every plaintext secret (the long-lived credentials that must survive fork, the Vault
 * token and the encryption keys, live in the kept region of vks_fork.h; vks_secret_free releases
 * both kinds).
 *
 * Design (docs/internals/secmem.md): one private anonymous mapping split into size classes,
 * PROT_NONE guard pages on both sides, MADV_DONTDUMP, MADV_WIPEONFORK, mlock. Slot metadata (free
 * lists, lengths) lives in ordinary heap memory outside the region. Every release path wipes.
 *
 * Thread-safety: every function here is safe to call from any thread at any time. The arena is
 * initialised once per process (explicitly by vks_secmem_init, or lazily with defaults by the first
 * allocation); its internal mutexes (one per lane of threads, one for the mapping) are held only
 * for O(1) slot operations and never across a call back into the caller.
 */
#ifndef VKS_SECMEM_H
#define VKS_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"

/* The one wipe primitive. Every free path of secret memory goes through it. Never optimised out. */
void vks_wipe(void *p, size_t n);

/* Constant-time equality of two n-byte buffers: true when equal. Time depends only on n. */
bool vks_ct_equal(const void *a, const void *b, size_t n);

/* The largest secret the arena stores (bytes). Larger values are refused with VKS_E_BAD_RESPONSE
 * or VKS_E_BAD_KEYSOURCE by the caller, naming the field. */
#define VKS_SECRET_MAX 4096

struct vks_secmem_config {
    size_t locked_bytes;  /* arena capacity; 0 = default (VKS_LOCKED_BYTES env or 7 MiB)      */
    bool require_locked;  /* refuse (VKS_E_LOCKED_MEMORY) when the region cannot be mlocked  */
};

struct vks_secmem_status {
    bool initialised;
    bool locked;        /* mlock succeeded for the whole region                  */
    bool dontdump;      /* MADV_DONTDUMP applied                                 */
    bool guard_pages;   /* PROT_NONE pages before and after the region           */
    bool wipe_on_fork;  /* MADV_WIPEONFORK applied (kernel >= 4.14)              */
    bool require_locked;
    size_t capacity;    /* bytes of the data region                              */
    size_t in_use;      /* bytes of slots currently handed out                   */
    size_t slots_in_use;
    unsigned long alloc_failures;
    /* scratch buffers (added by secmem): open now, bytes of them locked, opens whose mlock failed */
    size_t scratch_open;
    size_t scratch_locked_bytes;
    unsigned long scratch_lock_failures;
};

/*
 * Initialises the arena once. A second call with the same config is a no-op returning VKS_OK; a
 * second call with a different config after the arena is in use returns VKS_E_CONFIG (the arena
 * is never remapped under live secrets). With require_locked and a failed mlock it returns
 * VKS_E_LOCKED_MEMORY and the arena refuses every allocation until a later init without
 * require_locked. Without require_locked a failed mlock warns once on stderr and degrades.
 */
vks_status vks_secmem_init(const struct vks_secmem_config *cfg, struct vks_err *err);

/* Copies the current protection status and usage. */
void vks_secmem_get_status(struct vks_secmem_status *out);

/*
 * A secret buffer inside the arena. `data` points to `cap` bytes of locked memory; `len` is the
 * number of meaningful bytes. The struct itself is an ordinary value (it holds no secret bytes) and
 * is owned by whoever allocated it; it must be released with vks_secret_free exactly once (a
 * zeroed struct is a valid "empty" secret and freeing it is a no-op).
 */
typedef struct vks_secret {
    unsigned char *data;
    size_t len;
    size_t cap;
} vks_secret;

#define VKS_SECRET_EMPTY ((vks_secret){ NULL, 0, 0 })

/* Allocates a zeroed slot of at least `cap` bytes (1..VKS_SECRET_MAX). Errors: VKS_E_INVALID_ARG
 * (cap out of range), VKS_E_LOCKED_MEMORY (arena full or refused). */
vks_status vks_secret_alloc(size_t cap, vks_secret *out, struct vks_err *err);

/* Allocates and copies n bytes (n may be 0: a valid empty secret with a slot). */
vks_status vks_secret_dup(const void *src, size_t n, vks_secret *out, struct vks_err *err);

/* vks_secret_dup with another allocation step (vks_secret_alloc_kept for the fork-kept region);
 * `who` names the caller in the error for a NULL src. Same thread-safety as `alloc`. */
typedef vks_status (*vks_secret_alloc_fn)(size_t cap, vks_secret *out, struct vks_err *err);
vks_status vks_secret_dup_with(vks_secret_alloc_fn alloc, const char *who, const void *src, size_t n,
                               vks_secret *out, struct vks_err *err);

/* Wipes the whole slot, returns it to the arena and zeroes *s. Idempotent. */
void vks_secret_free(vks_secret *s);

/*
 * Scratch buffers for transient secret-bearing data that is larger than a slot (an HTTP response
 * body carrying a secret, a JSON request carrying a token). Each is its own private mapping of a
 * fixed capacity, MADV_DONTDUMP, mlock attempted (best effort, not counted against the arena),
 * never reallocated; vks_scratch_close wipes the used bytes and unmaps. Opening a scratch first
 * initialises the arena (if nothing did yet) so the arena is locked before scratch buffers use up
 * RLIMIT_MEMLOCK; a failed scratch mlock is counted in the status (scratch_lock_failures). The struct is owned by the
 * caller; one scratch must not be used from two threads at once.
 */
typedef struct vks_scratch {
    unsigned char *data;
    size_t len;
    size_t cap;
    size_t map_len;
    bool locked; /* mlock succeeded (added by secmem) */
} vks_scratch;

vks_status vks_scratch_open(size_t cap, vks_scratch *out, struct vks_err *err);
/* Wipes data[0..len) (and resets len to 0) so the buffer can be reused. */
void vks_scratch_reset(vks_scratch *s);
void vks_scratch_close(vks_scratch *s);

/* For tests: wipes and releases the whole arena (all live secrets become invalid). */
void vks_secmem_shutdown(void);

/*
 * Additions (secmem). vks_secmem_init(NULL, err) uses the environment: VKS_LOCKED_BYTES (bytes,
 * optional K/M/G suffix) and VKS_REQUIRE_LOCKED (true/false); the lazy init of the first
 * allocation does the same.
 *
 * vks_secmem_generation: a number that changes whenever live slots stop being valid: in a forked
 * child (the region reads zeros there) and on shutdown. A cache records it when it stores a
 * secret and flushes itself (freeing, not reading, its slots) when it changes. Lock-free, cheap.
 */
unsigned long vks_secmem_generation(void);

/* Bytes of locked memory a secret of n bytes costs (its size class); 0 when n > VKS_SECRET_MAX. */
size_t vks_secmem_class_size(size_t n);

/* True when [p, p+n) lies inside the arena's data region (for assertions and tests). */
bool vks_secmem_owns(const void *p, size_t n);

/* For tests and diagnostics: the data region (between the guard pages). False when not mapped. */
bool vks_secmem_region(const void **data, size_t *len);

#endif
