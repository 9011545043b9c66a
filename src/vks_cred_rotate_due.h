/*
 * vks_cred_rotate_due: `vks cred rotate --due` (issue 12, the 180-day policy): selects the managed
 * credentials the rotation policy says are due (vks_cred_list + vks_cred_due_eval) and rotates
 * them one at a time through vks_cred_rotate, continuing after a failure. Design:
 * docs/internals/cred-rotate-due.md; operator view: docs/credentials.md "Rotating what is due".
 *
 * Selection (pure: vks_cred_due_select), fail closed:
 *   - unmanaged secrets under the prefix are not under the policy: counted, never touched;
 *   - INVALID (unreadable dates, see vks_cred_due_eval), an unknown state, or due without a
 *     stored relay (the test step needs one): REFUSE — reported
 *     and counted as a failure, never rotated blindly (a credential whose dates cannot be read
 *     may be one an operator is repairing by hand);
 *   - OVERDUE (and SOON when within > 0): ROTATE, or RESUME when a rotation is already in flight
 *     (state "rotating"): the same rotation_id is completed, never a second one started;
 *   - not due but a rotation in flight: INFLIGHT — reported, left to whoever started it (an
 *     operator may be running it right now; `vks cred rotate --resume NAME` or `--abort NAME`).
 * Items are ordered: refused first, then by due date, then by name.
 *
 * Running (vks_cred_rotate_due_run): each ROTATE/RESUME item through vks_cred_rotate with a copy
 * of the caller's options (resume set per item, relay NULL so that each credential's stored
 * relay is used); the outcome (status, last step, versions, message) is stored in the item. No
 * password passes through here: the core generates it, the hook and the SMTP test see it.
 *
 * Ownership: ctx and opts borrowed; a plan is caller-owned (vks_cred_due_plan_free); items point
 * into plan->recs. Thread-safety: as vks_cred_ctx (one ctx, one plan per thread); select is pure
 * and reentrant.
 */
#ifndef VKS_CRED_ROTATE_DUE_H
#define VKS_CRED_ROTATE_DUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_cred.h"
#include "vks_cred_rotate.h"

enum vks_cred_due_action {
    VKS_CRED_DUE_ROTATE,   /* due: a new rotation                                          */
    VKS_CRED_DUE_RESUME,   /* due, with a rotation in flight: resumed (same rotation_id)   */
    VKS_CRED_DUE_REFUSE,   /* invalid dates or unknown state: reported, a failure          */
    VKS_CRED_DUE_INFLIGHT, /* not due, a rotation in flight: reported, left alone          */
};

struct vks_cred_due_item {
    const struct vks_cred_record *rec; /* borrowed from plan->recs                            */
    struct vks_cred_due due;
    enum vks_cred_due_action action;
    char relay[VKS_CRED_RELAY_MAX + 1]; /* custom_metadata.relay as stored ("" when absent)  */
    /* the outcome, filled by vks_cred_rotate_due_run */
    bool ran;
    vks_status status;
    const char *step;                  /* last step completed (static), NULL if none         */
    char rotation_id[64];
    int64_t old_version, new_version;
    char message[VKS_ERR_MSG_MAX];     /* the error (no secret: vks_err messages never hold one) */
};

struct vks_cred_due_sel {
    int64_t now;                       /* Unix seconds                                        */
    int64_t within;                    /* seconds; 0: overdue only                            */
    int default_days;                  /* the policy when a credential has no rotation_days   */
    const char *tenant;                /* NULL: every tenant                                  */
};

struct vks_cred_due_counts {
    size_t rotate, resume, refuse, inflight; /* per action, in the plan                      */
    size_t not_due, unmanaged, other_tenant; /* not in the plan                              */
    size_t rotated, failed;                  /* after the run (refused ones not included)     */
};

struct vks_cred_due_plan {
    struct vks_cred_record *recs;      /* every record listed (owned)                        */
    size_t nrecs;
    struct vks_cred_due_item *items;   /* what rotate --due acts on or reports (owned)       */
    size_t n;
    struct vks_cred_due_counts counts;
};

/* Pure: fills items[0..*nitems) (items has room for n) and counts from the records, ordered as
 * above. */
void vks_cred_due_select(const struct vks_cred_record *recs, size_t n, const struct vks_cred_due_sel *sel,
                         struct vks_cred_due_item *items, size_t *nitems, struct vks_cred_due_counts *counts);

/* Lists the credentials (metadata only, no write) and selects. On failure the plan is empty and
 * the listing's error is returned (Vault unreachable, permission denied, ...). */
vks_status vks_cred_due_plan(struct vks_cred_ctx *ctx, const struct vks_cred_due_sel *sel,
                             struct vks_cred_due_plan *plan, struct vks_err *err);

/* Called after each item has run (or been refused): i is its index in plan->items. */
typedef void (*vks_cred_due_progress_fn)(const struct vks_cred_due_item *it, size_t i, size_t n, void *arg);

/*
 * Rotates every ROTATE and RESUME item of the plan, one at a time, continuing after a failure.
 * opts: the whole run's options (set_hook, hook_timeout_ms, smtp tls/cafile/timeout_ms, ehlo);
 * its resume, relay and password are ignored (per item: resume from the plan, the stored relay,
 * a generated password). REFUSE items are reported through progress without any request.
 * Returns VKS_OK when every item rotated and none was refused, else the first failure's status
 * (the counts and items say which).
 */
vks_status vks_cred_rotate_due_run(struct vks_cred_ctx *ctx, struct vks_cred_due_plan *plan,
                                   const struct vks_cred_rotate_opts *opts, vks_cred_due_progress_fn progress,
                                   void *arg);

void vks_cred_due_plan_free(struct vks_cred_due_plan *plan);

/* "rotate", "resume", "refuse", "in-flight" */
const char *vks_cred_due_action_name(enum vks_cred_due_action a);

#endif
