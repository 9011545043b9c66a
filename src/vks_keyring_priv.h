/*
 * Private to vks_keyring.c and vks_envelope.c: the keyring's layout. Metadata (ids, sources) is
 * ordinary memory; key bytes live only in arena slots.
 *
 * Thread-safety: as vks_envelope.h (immutable after load, shared freely).
 */
#ifndef VKS_KEYRING_PRIV_H
#define VKS_KEYRING_PRIV_H

#include "vks_envelope.h"

#define VKS_KEY_LEN 32

struct vks_key_entry {
    char id[VKS_KEY_ID_MAX + 1];
    char source[128];       /* where it came from, e.g. "VKS_ENCRYPTION_KEYS entry 2" */
    vks_secret key;         /* 32 bytes in the kept region (vks_fork: survives fork) */
};

struct vks_keyring {
    size_t n;
    unsigned long born_gen; /* vks_fork_generation() at creation (vks_fork_check) */
    struct vks_key_entry keys[VKS_KEYRING_MAX];
};

/* The entry with this id (idlen bytes, not NUL-terminated), or NULL. */
const struct vks_key_entry *vks_keyring_find(const struct vks_keyring *kr, const char *id,
                                             size_t idlen);

/* True when id[0..n) is a valid key id (1..VKS_KEY_ID_MAX of [A-Za-z0-9._-]). */
bool vks_key_id_valid(const char *id, size_t n);

/* Writes "a, b, c" (the ids, truncated to fit) into buf. */
void vks_keyring_list_ids(const struct vks_keyring *kr, char *buf, size_t cap);

#endif
