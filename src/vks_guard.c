/*
 * vks_guard: one guarded anonymous mapping for secret bytes (contract: vks_guard.h).
 *
 *   [ guard page (PROT_NONE) | data (read/write), whole pages | guard page (PROT_NONE) ]
 */
#include "vks_guard.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

size_t vks_guard_page_size(void)
{
    long pl = sysconf(_SC_PAGESIZE);
    return pl > 0 ? (size_t)pl : 4096;
}

int vks_guard_map(size_t len, bool wipe_on_fork, struct vks_guarded *out, struct vks_guard_failure *why)
{
    memset(out, 0, sizeof *out);
    size_t pg = vks_guard_page_size();
    if (len == 0 || len > SIZE_MAX - 3 * pg) {
        *why = (struct vks_guard_failure){ .step = "mmap", .errnum = EINVAL };
        return -1;
    }
    size_t body = (len + pg - 1) / pg * pg;
    size_t total = body + 2 * pg;
    void *m = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        *why = (struct vks_guard_failure){ .step = "mmap", .errnum = errno };
        return -1;
    }
    unsigned char *data = (unsigned char *)m + pg;
    if (mprotect(data, body, PROT_READ | PROT_WRITE) != 0) {
        *why = (struct vks_guard_failure){ .step = "mprotect", .errnum = errno };
        munmap(m, total);
        return -1;
    }
    out->map = m;
    out->map_len = total;
    out->data = data;
    out->len = body;
    out->dontdump = madvise(m, total, MADV_DONTDUMP) == 0;
    if (wipe_on_fork)
        (void)vks_guard_set_wipe_on_fork(out, true);
    return 0;
}

bool vks_guard_set_wipe_on_fork(struct vks_guarded *g, bool wipe)
{
#if defined(MADV_WIPEONFORK) && defined(MADV_KEEPONFORK)
    bool ok = madvise(g->data, g->len, wipe ? MADV_WIPEONFORK : MADV_KEEPONFORK) == 0;
    g->wipe_on_fork = wipe && ok;
    return ok;
#else
    (void)wipe;
    g->wipe_on_fork = false;
    return false;
#endif
}

int vks_guard_lock(void *p, size_t n)
{
#ifdef MLOCK_ONFAULT
    if (mlock2(p, n, MLOCK_ONFAULT) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -1;
#endif
    return mlock(p, n);
}

bool vks_guard_lock_region(struct vks_guarded *g)
{
    g->locked = vks_guard_lock(g->data, g->len) == 0;
    return g->locked;
}

void vks_guard_unmap(struct vks_guarded *g)
{
    if (g->map != NULL) {
        if (g->locked)
            (void)munlock(g->data, g->len);
        (void)munmap(g->map, g->map_len);
    }
    memset(g, 0, sizeof *g);
}
