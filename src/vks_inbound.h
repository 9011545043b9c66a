/*
 * vks_inbound: verification of inbound SMTP credentials (issue 15; docs/inbound.md, design
 * docs/internals/inbound.md). An application logs in to the operator's MTA with the username and
 * password of a `vks cred create --inbound` credential; the MTA asks vks-agent (Dovecot SASL,
 * Postfix policy, HTTP), and the agent asks this module. One verification:
 *
 *   1. rate limit: the username or the source address locked out -> LOCKED (no hash computed);
 *   2. success cache: HMAC-SHA256(per-process random key, lower(username) NUL password) equal to a
 *      tag remembered (locked memory) less than cache_ttl ago -> the cached credential record;
 *   3. otherwise Vault: the username index record (vks-index/<prefix>usernames/<hex>) names the
 *      credential, one KV v2 read gives its username, verifier (or ENC: key) and custom_metadata;
 *   4. fail closed on the record: managed, direction "inbound", the same username, `state` active
 *      or rotating (a reset or any other state is REVOKED), restrictions understood;
 *   5. the source address against allowed_hosts (vks_restrict, the resolver's own matcher);
 *   6. the password against the verifier (vks_verifier_check, constant time) or, for a
 *      --retrievable credential, against the decrypted envelope (HMACs compared, constant time);
 *      an unknown username costs one verification of a dummy verifier all the same.
 * Every success, failure and lockout is one audit event (api "inbound.auth", "inbound.lockout",
 * "inbound.sender"): username, source address, credential path, reason; never a password or hash.
 *
 * Ownership: vks_inbound_new borrows vault and keyring (they must outlive the object) and copies
 * the config; vks_inbound_free wipes the cache. Thread-safety: verify and check_sender may be called
 * from any number of threads at once (one mutex guards the cache and the counters; Vault reads and
 * hashes run outside it); new/free are not concurrent with anything else.
 */
#ifndef VKS_INBOUND_H
#define VKS_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_vault.h"

struct vks_keyring;

struct vks_inbound_config {
    const char *mount;             /* NULL: "secret"                                             */
    const char *prefix;            /* NULL: "smtp-auth/"                                         */
    long cache_ttl_ms;             /* a verified password is remembered this long; 0 = never;
                                      < 0 = default 30000. Also how long a delete or reset may
                                      take to reach an application that keeps logging in.       */
    unsigned max_failures;         /* failures per username within the window that lock it;
                                      0 = default 10                                            */
    unsigned max_failures_address; /* failures per source address; 0 = default 30                */
    long lockout_ms;               /* how long a lockout lasts; <= 0 = default 1800000 (30 min,
                                      PCI DSS v4.0 8.3.4's minimum)                              */
    long window_ms;                /* failures are counted over this window; <= 0 = default
                                      900000 (a new window starts at the first failure after the
                                      previous one ended)                                        */
    size_t entries;                /* cache and counter slots; 0 = default 1024                  */
    long reset_interval_ms;        /* the emergency reset's check of <mount>/vks-control/reset
                                      (vks_reset_gate.h); <= 0 = its default (2 s)               */
    long reset_bound_ms;           /* how long a mount is served while the record is unreadable;
                                      <= 0 = its default (30 s)                                  */
};

enum vks_inbound_outcome {
    VKS_IN_OK = 0,
    VKS_IN_BAD_PASSWORD,           /* wrong password                                             */
    VKS_IN_UNKNOWN_USER,           /* no inbound credential has this username                    */
    VKS_IN_SOURCE_REFUSED,         /* the source address is outside allowed_hosts                */
    VKS_IN_SENDER_REFUSED,         /* check_sender: the sender's domain is outside allowed_domains */
    VKS_IN_LOCKED,                 /* too many failures: refused without a check                 */
    VKS_IN_REVOKED,                /* state is not active/rotating (reset), or not inbound, or the
                                      record cannot be understood                                */
    VKS_IN_TEMP,                   /* Vault could not be asked (unavailable, timeout, sealed)    */
};

struct vks_inbound_answer {
    enum vks_inbound_outcome outcome;
    bool cached;                   /* answered from the success / record cache                   */
    char username[256];            /* the credential's username as stored (OK)                  */
    char reason[240];              /* secret-free, for logs and protocol replies                */
};

struct vks_inbound;

vks_status vks_inbound_new(const struct vks_inbound_config *cfg, struct vks_vault *vault,
                           const struct vks_keyring *kr, struct vks_inbound **out, struct vks_err *err);
void vks_inbound_free(struct vks_inbound *ib);

/* One login: username (1..255 bytes), password (0..1024 bytes), source address (an IPv4/IPv6
 * literal, or NULL when the MTA did not say: then a credential with allowed_hosts is refused).
 * VKS_OK with ans filled for every outcome (a refusal is not an error); an error status only for
 * misuse (VKS_E_INVALID_ARG). */
vks_status vks_inbound_verify(struct vks_inbound *ib, const char *username, const unsigned char *pw, size_t n,
                              const char *source, struct vks_inbound_answer *ans, struct vks_err *err);

/* The sending-domain restriction for an authenticated user: the domain of `sender` (after the last
 * '@'; the null sender "" has none) against allowed_domains. The credential record comes from the
 * cache (less than cache_ttl old) or Vault, with the same fail-closed rules as verify. VKS_IN_OK or
 * VKS_IN_SENDER_REFUSED / REVOKED / UNKNOWN_USER / TEMP, with the reason. */
vks_status vks_inbound_check_sender(struct vks_inbound *ib, const char *username, const char *sender,
                                    const char *source, struct vks_inbound_answer *ans, struct vks_err *err);

/* Forgets every cached success and record (counters are kept). */
void vks_inbound_flush(struct vks_inbound *ib);

/* "ok", "bad_password", ... (stable names for logs and metrics). */
const char *vks_inbound_outcome_name(enum vks_inbound_outcome o);

#endif
