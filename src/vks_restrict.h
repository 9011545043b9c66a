/*
 * vks_restrict: per-destination restrictions carried by a KV v2 secret's custom_metadata.
 *
 * A secret may say who may use it with two custom_metadata keys (details, examples and the exact
 * grammar: docs/restrictions.md; design: docs/internals/restrict.md):
 *   allowed_domains  "example.com, *.example.net"        exact names and *.suffix
 *   allowed_hosts    "192.0.2.10, 2001:db8::/32, relay.example.com, *.relays.example.org"
 *                    IPv4/IPv6 addresses, CIDR ranges, host names and *.suffix
 * Vault's custom_metadata values are strings, so a list is one string of entries separated by
 * commas and/or white space; a JSON array of strings is accepted too. When a key is present the
 * lookup context must match it; when both are present both must match. A secret without either
 * key is unrestricted.
 *
 * Fail closed, one rule: anything that looks like a restriction but cannot be understood refuses
 * the secret with VKS_E_RESTRICTED and a message naming the field (never "allow all"):
 *  - a list that is empty, null, not a string/array of strings, or has an entry that does not
 *    parse (the message gives the entry's position);
 *  - any other key that looks like a restriction once case, separators and non-alphanumerics are
 *    ignored (it starts with "allow" or contains "allowed": Allowed_Domains, allowed-hosts,
 *    "allowed domains", allowedHosts, allowlist, hosts_allowed, disallowed_domains);
 *  - custom_metadata that is not a JSON object (string, array, number, boolean), is not valid
 *    JSON, or is longer than VKS_RESTRICT_MAX_JSON.
 * NULL, empty text and the literal null (Vault's "no custom_metadata") are no restriction.
 *
 * Matching: domains and host names compare case-insensitively, a trailing dot ignored.
 * "*.example.com" matches any name that ends in ".example.com" (one or more labels), never
 * "example.com" itself. Addresses and ranges match only a destination that is an address literal
 * (no DNS is ever done here); host name entries match only a destination that is a name.
 * The destination may carry a port ("host:25", "[2001:db8::1]:25", "192.0.2.1:587"), which is
 * ignored. IPv4-mapped IPv6 forms compare as their IPv4 address, in the list and in the
 * destination: ::ffff:192.0.2.1 is 192.0.2.1 and ::ffff:192.0.2.0/120 is 192.0.2.0/24 (a mapped
 * range shorter than /96 spans both families and is malformed).
 *
 * Results:
 *   VKS_OK              no restriction applies or the context is inside every list present
 *   VKS_E_RESTRICTED    the context is outside a list, the context lacks the field a list needs
 *                       (no domain / no destination), or the metadata cannot be understood (above)
 *   VKS_E_NOMEM         out of memory parsing the metadata (the caller refuses too)
 *   VKS_E_INVALID_ARG   ctx is NULL
 * Messages name the field, the context value and the entry position; custom_metadata holds no
 * secret, so naming its entries is allowed.
 *
 * Ownership: all arguments are borrowed for the duration of the call; nothing is retained.
 * Thread-safety: pure functions, reentrant, safe from any thread. No locks, no global state.
 */
#ifndef VKS_RESTRICT_H
#define VKS_RESTRICT_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"

/* The longest custom_metadata JSON text accepted (Vault allows 64 keys x 512-byte values). */
#define VKS_RESTRICT_MAX_JSON (256 * 1024)

struct vks_restrict_ctx {
    const char *domain;      /* the recipient domain of the lookup (ctx.domain), may be NULL   */
    const char *destination; /* host name or address the relay connection goes to, may be NULL */
};

/*
 * Decides whether the lookup context may use a secret with this custom_metadata.
 * custom_metadata_json may be NULL (or len 0, or the JSON text "null"): no restriction.
 * len is the length of the text (it need not be NUL-terminated).
 */
vks_status vks_restrict_check(const char *custom_metadata_json, size_t len,
                              const struct vks_restrict_ctx *ctx, struct vks_err *err);

/*
 * Validates the restriction lists without a context (for operators' tooling): VKS_OK when absent
 * or well-formed, else VKS_E_RESTRICTED (cannot be understood) as above.
 * *restricted (if non-NULL) is set to true when at least one list is present.
 */
vks_status vks_restrict_validate(const char *custom_metadata_json, size_t len, bool *restricted,
                                 struct vks_err *err);

/* ---- one list entry, for operator tooling (vks cred) ---- */
enum vks_restrict_entry_type {
    VKS_RESTRICT_NAME = 1,   /* a domain / host name                                  */
    VKS_RESTRICT_SUFFIX,     /* *.suffix                                              */
    VKS_RESTRICT_ADDRESS,    /* one IPv4/IPv6 address (a /32 or /128 counts as one)   */
    VKS_RESTRICT_RANGE,      /* a CIDR range                                          */
};
struct vks_restrict_entry_info {
    enum vks_restrict_entry_type type;
    int family;              /* 4 or 6 for ADDRESS/RANGE, else 0                      */
    unsigned prefix;         /* bits of a RANGE/ADDRESS                               */
    char canonical[272];     /* lower-case name / "*.suffix" without trailing dot, or the
                                address as inet_ntop writes it with "/prefix" for a range;
                                an IPv4-mapped IPv6 form is its IPv4 address (as matched) */
};
/*
 * Parses one entry of allowed_hosts (hosts true: address, CIDR range, name or *.suffix) or of
 * allowed_domains (hosts false: name or *.suffix) with exactly the parser the resolver uses, so
 * whatever this accepts the resolver understands. VKS_OK and *out filled, or VKS_E_INVALID_INPUT
 * (no message: the caller names its own field). A range's host bits need not be zero (the
 * resolver ignores them). Pure, reentrant.
 */
vks_status vks_restrict_entry(const char *s, size_t n, bool hosts, struct vks_restrict_entry_info *out);

#endif
