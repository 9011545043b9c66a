/*
 * vks_reset_record: the reset control record, pure (issue 13, emergency reset). Design:
 * docs/internals/reset.md; the operator's side is vks_cred_reset.h, the resolvers' side
 * vks_reset_gate.h.
 *
 * Where: the KV v2 secret <mount>/vks-control/reset of every mount that holds credentials, beside
 * the credentials (outside their prefix, like vks-rotation/ and vks-index/). A missing record
 * (404) means "no reset ever". Its data (never a secret: names only):
 *
 *   {"schema": "1", "seq": 7, "first_seq": 5,
 *    "entries": [{"seq": 5, "id": "<uuid>", "at": "<RFC 3339>", "scope": "name",
 *                 "paths": ["smtp-auth/example.com"]},
 *                {"seq": 6, ..., "scope": "tenant", "tenant": "acme", "paths": [...]},
 *                {"seq": 7, ..., "scope": "all", "prefix": "smtp-auth/"}]}
 *
 * Each reset appends one entry (seq + 1); the writer keeps the newest VKS_RESET_KEEP_ENTRIES and
 * at most VKS_RESET_MAX_PATHS paths (first_seq says where the kept ones start). The record is an
 * invalidation signal only: what refuses a credential is its own custom_metadata (state=reset,
 * reset_id), which every resolver reads with the value.
 *
 * Ownership: a record is caller-owned (vks_reset_record_free); strings are heap copies.
 * Thread-safety: every function is reentrant (no global state).
 */
#ifndef VKS_RESET_RECORD_H
#define VKS_RESET_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"

#define VKS_RESET_RECORD_PATH "vks-control/reset"
#define VKS_RESET_KEEP_ENTRIES 32
#define VKS_RESET_MAX_PATHS 20000
#define VKS_RESET_PATH_MAX 402   /* <prefix><name>: 2 x VKS_CRED_NAME_MAX + 2 */

enum vks_reset_scope { VKS_RESET_NAME = 0, VKS_RESET_TENANT = 1, VKS_RESET_ALL = 2 };

struct vks_reset_entry {
    int64_t seq;
    char id[64], at[40];
    enum vks_reset_scope scope;
    char tenant[65];
    char prefix[VKS_RESET_PATH_MAX + 1]; /* ALL: every path starting with it                */
    char **paths;                        /* NAME, TENANT: sorted, bsearch'ed                */
    size_t npaths;
};

struct vks_reset_record {
    int64_t seq, first_seq;              /* 0, 0: no reset yet                                */
    struct vks_reset_entry *entries;     /* ascending seq                                     */
    size_t n;
};

/* Parses Vault's whole GET data answer ({"data":{"data":{...},"metadata":{...}}}). VKS_E_BAD_RESPONSE
 * names the field and what is wrong with it ("control record: entries[2].scope: ..."); on error
 * *out is empty. */
vks_status vks_reset_record_parse(const char *body, size_t len, struct vks_reset_record *out, struct vks_err *err);

/* The data object of rec (heap JSON text, caller frees). */
vks_status vks_reset_record_json(const struct vks_reset_record *rec, char **out, struct vks_err *err);

/* Appends e (its paths are taken over: e->paths is NULL afterwards) with seq = rec->seq + 1, then
 * trims the oldest entries to the limits above (first_seq follows). */
vks_status vks_reset_record_append(struct vks_reset_record *rec, struct vks_reset_entry *e, struct vks_err *err);

/* True when the entry selects path (exact member of paths, or under prefix for ALL). */
bool vks_reset_entry_matches(const struct vks_reset_entry *e, const char *path, size_t len);

void vks_reset_entry_free(struct vks_reset_entry *e);
void vks_reset_record_free(struct vks_reset_record *rec);

#endif
