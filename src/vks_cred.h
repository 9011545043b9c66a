/*
 * vks_cred: managed SMTP credentials (issue 12, phases 1 and 2). The stored shape is the contract in
 * docs/credentials.md; the design is docs/internals/cred.md.
 *
 * Each administrative act exists once, here, so that the CLI (cli/cred.c) now and the agent's
 * admin API later call the same operation. Two layers:
 *  - pure parts (this header, first half; src/vks_cred.c): name, username, owner and tenant rules,
 *    restriction lists (parsed with vks_restrict's own entry parser), the permission summary, the
 *    password generator, and the metadata record <-> JSON. No I/O except getrandom(2).
 *  - operations (second half; src/vks_cred_ops.c): create, list, show, fingerprint, reveal,
 *    restrict, delete against Vault through vks_vault, each writing one audit event (vks_audit);
 *    the username index of create and delete is in src/vks_cred_index.c.
 *
 * Secrets: a password exists only in vks_secret arena slots (generated into one, read into one,
 * decrypted into one) and is wiped by vks_secret_free on every path. Nothing here puts a password,
 * an envelope or a token into an error message, a record, a list or an audit event.
 *
 * Errors: VKS_E_INVALID_INPUT names the field (--username, --domain, --ip, NAME, --owner, ...);
 * VKS_E_EXISTS (duplicate name or username), VKS_E_CONFLICT (lost a check-and-set: edited
 * concurrently, nothing written), VKS_E_NOT_FOUND, VKS_E_REJECTED (Vault's 400), and Vault's and
 * the transport's codes as in vks_vault.h.
 */
#ifndef VKS_CRED_H
#define VKS_CRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_envelope.h"
#include "vks_error.h"
#include "vks_secmem.h"
#include "vks_vault.h"
#include "vks_verifier.h"

#define VKS_CRED_DEFAULT_MOUNT "secret"
#define VKS_CRED_DEFAULT_PREFIX "smtp-auth/"
#define VKS_CRED_PASSWORD_LEN 32
/* 62 characters: never needs escaping in Postfix, Exim (no ':' list separator, no '^'), JSON, a
   URL (unreserved) or a shell word. 32 x log2(62) = 190.5 bits. */
#define VKS_CRED_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#define VKS_CRED_ALPHABET_LEN 62
#define VKS_CRED_REJECT_FROM 248   /* bytes >= 4 x 62 are discarded (rejection sampling)          */
#define VKS_CRED_USERNAME_MAX 255
#define VKS_CRED_NAME_MAX 200
#define VKS_CRED_OWNER_MAX 128
#define VKS_CRED_TENANT_MAX 64
#define VKS_CRED_PROVIDED_MAX 1024 /* a provider-issued password (--password-stdin)               */
#define VKS_CRED_VALUE_MAX 512     /* Vault's custom_metadata value limit                        */
#define VKS_CRED_MAX_VERSIONS 20
#define VKS_CRED_DUE_DAYS 180      /* the default rotation policy: due = rotated + 180 days         */
#define VKS_CRED_DAYS_MAX 3650     /* longest policy (VKS_CRED_ROTATION_DAYS, rotation_days)        */
#define VKS_CRED_SCHEMA "1"
#define VKS_CRED_RELAY_MAX 262     /* "host:port" / "[v6]:port" of the relay rotation tests against */

/* ================================ pure parts ================================================ */

/* Rules (docs/credentials.md). Each returns VKS_OK or VKS_E_INVALID_INPUT with a message naming
 * `field` (e.g. "--username"). Pure, reentrant. */
vks_status vks_cred_check_username(const char *s, size_t n, const char *field, struct vks_err *err);
vks_status vks_cred_check_name(const char *name, const char *field, struct vks_err *err);
vks_status vks_cred_check_prefix(const char *prefix, const char *field, struct vks_err *err);
vks_status vks_cred_check_owner(const char *s, const char *field, struct vks_err *err);
vks_status vks_cred_check_tenant(const char *s, const char *field, struct vks_err *err);
/* A provider-issued password: 1..VKS_CRED_PROVIDED_MAX bytes of printable ASCII (0x21-0x7e). */
vks_status vks_cred_check_password(const unsigned char *p, size_t n, struct vks_err *err);
/* The relay a credential is tested against by rotation: "HOST:PORT" (HOST a DNS name or IPv4
 * literal) or "[IPv6]:PORT", port 1-65535. host (cap >= VKS_CRED_RELAY_MAX) receives HOST without
 * brackets; host and port may be NULL for a check only. VKS_E_INVALID_INPUT naming `field`. */
vks_status vks_cred_parse_relay(const char *s, const char *field, char *host, size_t cap, int *port,
                                struct vks_err *err);

/*
 * Rejection sampling, the pure step of the generator: maps the random bytes rnd[0..n) onto
 * VKS_CRED_ALPHABET (byte b < VKS_CRED_REJECT_FROM gives alphabet[b % 62], others are discarded)
 * until `want` characters are in out. Returns how many were written (< want when rnd ran out).
 */
size_t vks_cred_sample(const unsigned char *rnd, size_t n, unsigned char *out, size_t want);

/* A new password of VKS_CRED_PASSWORD_LEN characters into a fresh arena slot (*out, caller frees
 * with vks_secret_free). Random bytes come from getrandom(2) into an arena slot, wiped. */
vks_status vks_cred_generate(vks_secret *out, struct vks_err *err);

/* One restriction list: entries in canonical form (vks_restrict_entry), no duplicates. all=true
 * means "no restriction" (the custom_metadata key is absent) and then n is 0. */
struct vks_cred_list {
    bool all;
    char **v;
    size_t n;
};
struct vks_cred_restrictions {
    struct vks_cred_list domains; /* allowed_domains */
    struct vks_cred_list hosts;   /* allowed_hosts   */
};
void vks_cred_restrictions_free(struct vks_cred_restrictions *r);

/* Adds one entry (validated as a domain / *.suffix, or as an IPv4/IPv6 address or CIDR range
 * whose host bits are zero); an entry already present is not added twice; the list stops being
 * "all". `field` names the option in the error. */
vks_status vks_cred_list_add(struct vks_cred_list *l, bool hosts, const char *entry, const char *field,
                             struct vks_err *err);
/* Removes an entry (compared in canonical form): VKS_E_INVALID_INPUT when it is not in the list. */
vks_status vks_cred_list_remove(struct vks_cred_list *l, bool hosts, const char *entry, const char *field,
                                struct vks_err *err);
/* Back to "all" (empties the list). */
void vks_cred_list_set_all(struct vks_cred_list *l);
/* The custom_metadata value: entries joined with ", " (heap; NULL for all). VKS_E_INVALID_INPUT
 * when it would exceed VKS_CRED_VALUE_MAX, naming `field`; VKS_E_INVALID_INPUT for an empty,
 * not-all list ("a list cannot be empty: use --all-...").  */
vks_status vks_cred_list_join(const struct vks_cred_list *l, const char *field, char **out, struct vks_err *err);

/* "All domains, all IPs", "2 domains, 3 IPs", "1 domain, all IPs" (docs: `vks cred list`). */
void vks_cred_summary(const struct vks_cred_restrictions *r, char *out, size_t cap);

/* A credential's metadata as read from Vault (GET metadata). Strings "" when absent. */
struct vks_cred_version {
    int64_t version;
    char created[40], deleted[40];
    bool destroyed;
};
struct vks_cred_record {
    char name[VKS_CRED_NAME_MAX + 1];
    bool managed;                  /* custom_metadata.vks_cred present                        */
    char username[VKS_CRED_USERNAME_MAX + 1];
    char state[24], created[40], rotated[40], due[40];
    char owner[VKS_CRED_OWNER_MAX + 1], tenant[VKS_CRED_TENANT_MAX + 1], rotation_id[64];
    char relay[VKS_CRED_RELAY_MAX + 1];   /* rotation's test target "host:port"; "" = none      */
    char rotation_started[40];            /* when the rotation in flight was claimed            */
    char previous_rotated[40];            /* `rotated` of previous_version's password (rollback) */
    char direction[16];                   /* "inbound" (applications log in to our MTA) or "" =
                                             outbound (a relay password we send); issue 15   */
    int64_t rev, current_version, previous_version, pending_version; /* from custom_metadata; 0 = absent */
    int64_t vault_version;         /* Vault's current_version of the secret                  */
    struct vks_cred_restrictions restrictions;
    bool restrictions_bad;         /* the lists do not parse: the resolver refuses the secret  */
    struct vks_cred_version *versions;
    size_t nversions;
    void *custom;                  /* the whole custom_metadata (json_object *), other keys kept */
};
/* Parses Vault's GET metadata answer (the whole body). rec is zeroed first; free with
 * vks_cred_record_free. VKS_E_BAD_RESPONSE for an unusable answer. */
vks_status vks_cred_record_parse(const char *body, size_t len, const char *name, struct vks_cred_record *rec,
                                 struct vks_err *err);
void vks_cred_record_free(struct vks_cred_record *rec);
/* The POST metadata body for rec: custom_metadata = the keys rec->custom had that are not ours,
 * plus ours from rec; max_versions and cas_required. Heap string (caller frees). */
vks_status vks_cred_metadata_body(const struct vks_cred_record *rec, char **out, struct vks_err *err);
/* Vault's RFC 3339 "YYYY-MM-DDTHH:MM:SSZ" of t (+days). */
void vks_cred_time(int64_t t, int days, char out[40]);

/*
 * The due-date policy (docs/credentials.md "The rotation policy"). A credential is due at the
 * earlier of rotated + days and its stored `due`, where days is custom_metadata.rotation_days
 * (1..VKS_CRED_DAYS_MAX, a per-credential decision) or default_days. Fail closed: a managed
 * credential whose rotated is absent or unparseable, or whose due or rotation_days is present
 * but unparseable, is INVALID (reported with the due ones, never skipped). Values are read from
 * rec->custom as stored (not the truncated record fields). Pure, reentrant.
 */
enum vks_cred_due_status { VKS_CRED_DUE_OK, VKS_CRED_DUE_SOON, VKS_CRED_DUE_OVERDUE, VKS_CRED_DUE_INVALID };
struct vks_cred_due {
    enum vks_cred_due_status status;
    int64_t due;                   /* effective due time (Unix seconds); 0 when INVALID          */
    int days;                      /* the policy applied                                         */
    bool per_credential;           /* days came from custom_metadata.rotation_days              */
    bool stored_earlier;           /* the stored due is earlier than rotated + days             */
    char why[200];                 /* INVALID: the field and what is wrong with it              */
};
/* now, within: seconds; SOON when due <= now + within, OVERDUE when due <= now. */
void vks_cred_due_eval(const struct vks_cred_record *rec, int64_t now, int64_t within, int default_days,
                       struct vks_cred_due *out);
/* "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (UTC, a real date) -> Unix seconds; false otherwise. */
bool vks_cred_parse_time(const char *s, int64_t *t);
/* "0", "<N>d", "<N>w" or "<N>h" (N decimal, at most VKS_CRED_DAYS_MAX days) -> seconds. */
bool vks_cred_parse_duration(const char *s, int64_t *seconds);
/* Decimal days 1..VKS_CRED_DAYS_MAX; false otherwise. */
bool vks_cred_parse_days(const char *s, int *days);

/* ================================ operations (vks_cred_ops.c) =============================== */

/*
 * The context of a series of acts: the Vault client and keyring (borrowed, must outlive it), mount
 * and prefix (copied), the operator's identity (looked up once, lazily, with lookup-self) and the
 * source ("cli"). Ownership: the caller owns ctx. Thread-safety: one ctx per thread (the identity
 * is cached in it); the vault client may be shared.
 */
struct vks_cred_ctx {
    struct vks_vault *vault;
    const struct vks_keyring *keyring;
    char mount[128];
    char prefix[VKS_CRED_NAME_MAX + 1];
    const char *source;
    const char *vault_addr;        /* for the audit events */
    char operator_name[128];
    char operator_accessor[64];
    bool identity_known;
    int rotation_days;             /* create's due = now + this; ctx_init sets VKS_CRED_DUE_DAYS   */
    const char *client_addr;       /* vks serve: the requester's address for the audit events    */
    const char *user_agent;        /* vks serve: its User-Agent for the audit events (borrowed)  */
};
vks_status vks_cred_ctx_init(struct vks_cred_ctx *ctx, struct vks_vault *vault, const struct vks_keyring *kr,
                             const char *mount, const char *prefix, const char *source, struct vks_err *err);

struct vks_cred_create_req {
    const char *name, *username, *owner, *tenant;     /* owner/tenant may be NULL           */
    const struct vks_cred_restrictions *restrictions; /* domains must be all or non-empty    */
    const vks_secret *password;                       /* NULL: generate one                  */
    const char *relay;                                /* "host:port" for rotation; may be NULL */
    bool inbound;                                     /* issue 15: direction=inbound            */
    bool retrievable;                                 /* inbound: keep the ENC: form in `key`
                                                         (reveal works); else only a verifier  */
    const struct vks_verifier_params *verifier;       /* inbound, not retrievable: NULL = defaults */
};
/*
 * Creates the credential (docs/credentials.md "Every write is check-and-set"). The username is
 * claimed first in the username index (src/vks_cred_index.c, docs/credentials.md "Usernames are
 * unique: the index") with cas 0: of concurrent creates with one username exactly one gets past it,
 * the others get VKS_E_EXISTS naming the username; a claim given up by a failure before the data is
 * stored is released again (best effort). On VKS_OK and also
 * when the data was written but a later step failed (*version > 0), *password holds the password
 * (generated or a copy of the given one; caller frees) so that it can still be shown once.
 */
vks_status vks_cred_create(struct vks_cred_ctx *ctx, const struct vks_cred_create_req *req, vks_secret *password,
                           int64_t *version, struct vks_err *err);

/* Every secret under the prefix (recursively, at most 10000), metadata only. *recs is an array
 * the caller frees with vks_cred_records_free. Unmanaged secrets are included (managed false). */
vks_status vks_cred_list(struct vks_cred_ctx *ctx, struct vks_cred_record **recs, size_t *n, struct vks_err *err);
void vks_cred_records_free(struct vks_cred_record *recs, size_t n);

/* The metadata of one credential (no data read, no audit event: a metadata read). */
vks_status vks_cred_show(struct vks_cred_ctx *ctx, const char *name, struct vks_cred_record *rec,
                         struct vks_err *err);
/* The keyed fingerprint of the current password as 32 hex characters (docs/credentials.md
 * "Fingerprint"): reads and decrypts the latest version, HMACs it with the audit key's
 * fingerprint subkey, wipes it. VKS_E_CONFIG when no audit key is configured;
 * VKS_E_PERMISSION_DENIED, without any data request, when sys/capabilities-self says the token may
 * not read <mount>/data/<path> (a metadata-only role: show still works, without fingerprint). */
vks_status vks_cred_fingerprint(struct vks_cred_ctx *ctx, const char *name, char hex[33], struct vks_err *err);

/* The password for support: reason is required (1..256 printable characters); one audit event
 * (with the reason) before the password is handed out; no audit sink configured
 * (VKS_E_AUDIT_UNAVAILABLE, before any request), or an event that cannot be recorded under the
 * 'deny' policy, refuses the reveal. *out is an arena slot the caller frees. */
vks_status vks_cred_reveal(struct vks_cred_ctx *ctx, const char *name, const char *reason, vks_secret *out,
                           int64_t *version, struct vks_err *err);

/* A change of restrictions: applied in order (all first, then removals, then additions). */
struct vks_cred_change {
    bool all_domains, all_hosts;
    const char *const *add_domains, *const *remove_domains, *const *add_hosts, *const *remove_hosts;
    size_t n_add_domains, n_remove_domains, n_add_hosts, n_remove_hosts;
    const char *relay;                 /* a new relay "host:port" (rotation's test), or NULL     */
    bool clear_relay;                  /* forget the relay                                      */
};
/* Applies the change under check-and-set; *rec (may be NULL) receives the record written.
 * Refused with VKS_E_CONFLICT while a rotation is in flight (state rotating): the rotation owns the
 * credential's metadata until it finishes or is aborted (docs/credentials.md "Rotation"). */
vks_status vks_cred_restrict(struct vks_cred_ctx *ctx, const char *name, const struct vks_cred_change *ch,
                             struct vks_cred_record *rec, struct vks_err *err);

/* Removes every version and the metadata after checking that confirm_username is the
 * credential's username (exactly), then the username's index record if it names this credential
 * (a failure there is returned, the credential being gone already). */
vks_status vks_cred_delete(struct vks_cred_ctx *ctx, const char *name, const char *confirm_username,
                           struct vks_err *err);

#endif
