/*
 * vks_cred_rotate_due: select what the rotation policy says is due and rotate it (see the header;
 * docs/internals/cred-rotate-due.md).
 */
#include "vks_cred_rotate_due.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vks_cred_due_action_name(enum vks_cred_due_action a)
{
    switch (a) {
    case VKS_CRED_DUE_ROTATE: return "rotate";
    case VKS_CRED_DUE_RESUME: return "resume";
    case VKS_CRED_DUE_REFUSE: return "refuse";
    case VKS_CRED_DUE_INFLIGHT: return "in-flight";
    }
    return "?";
}

/* The stored relay (custom_metadata.relay), non-printable bytes as '?' (it is printed to a terminal). */
static void stored_relay(const struct vks_cred_record *r, char *out, size_t cap)
{
    snprintf(out, cap, "%s", r->relay);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

/* The action for a managed record of this tenant; false: not in the plan (not due). */
static bool classify(const struct vks_cred_record *r, const struct vks_cred_due_sel *sel,
                     struct vks_cred_due_item *it)
{
    memset(it, 0, sizeof *it);
    it->rec = r;
    vks_cred_due_eval(r, sel->now, sel->within, sel->default_days, &it->due);
    bool in_flight = strcmp(r->state, "rotating") == 0;
    bool reset = strcmp(r->state, "reset") == 0; /* emergency reset: due now, whatever the dates say */
    bool due = reset || it->due.status == VKS_CRED_DUE_OVERDUE ||
               (sel->within > 0 && it->due.status == VKS_CRED_DUE_SOON);
    if (it->due.status == VKS_CRED_DUE_INVALID) {
        it->action = VKS_CRED_DUE_REFUSE;
    } else if (!in_flight && !reset && strcmp(r->state, "active") != 0) {
        /* fail closed: a state this program does not know is not rotated on a guess */
        it->action = VKS_CRED_DUE_REFUSE;
        if (r->state[0] == '\0')
            snprintf(it->due.why, sizeof it->due.why, "state is missing (neither active, rotating nor reset)");
        else
            snprintf(it->due.why, sizeof it->due.why, "state \"%.24s\" is neither active, rotating nor reset", r->state);
        for (char *p = it->due.why; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
    } else if (due && r->relay[0] == '\0') {
        /* the test step needs a relay: refused here rather than failing in the core */
        it->action = VKS_CRED_DUE_REFUSE;
        snprintf(it->due.why, sizeof it->due.why, "no relay stored to test a new password against (vks cred "
                 "restrict NAME --relay HOST:PORT)");
    } else if (due) {
        it->action = in_flight ? VKS_CRED_DUE_RESUME : VKS_CRED_DUE_ROTATE;
    } else if (in_flight) {
        it->action = VKS_CRED_DUE_INFLIGHT;
    } else {
        return false;
    }
    snprintf(it->rotation_id, sizeof it->rotation_id, "%s", in_flight ? r->rotation_id : "");
    stored_relay(r, it->relay, sizeof it->relay);
    return true;
}

static int item_cmp(const void *a, const void *b)
{
    const struct vks_cred_due_item *x = a, *y = b;
    bool xr = x->action == VKS_CRED_DUE_REFUSE, yr = y->action == VKS_CRED_DUE_REFUSE;
    if (xr != yr)
        return xr ? -1 : 1;
    if (!xr && x->due.due != y->due.due)
        return x->due.due < y->due.due ? -1 : 1;
    return strcmp(x->rec->name, y->rec->name);
}

void vks_cred_due_select(const struct vks_cred_record *recs, size_t n, const struct vks_cred_due_sel *sel,
                         struct vks_cred_due_item *items, size_t *nitems, struct vks_cred_due_counts *counts)
{
    memset(counts, 0, sizeof *counts);
    *nitems = 0;
    for (size_t i = 0; i < n; i++) {
        const struct vks_cred_record *r = &recs[i];
        if (sel->tenant && strcmp(sel->tenant, r->tenant) != 0) {
            counts->other_tenant++;
            continue;
        }
        if (!r->managed) { /* not under the policy */
            counts->unmanaged++;
            continue;
        }
        struct vks_cred_due_item *it = &items[*nitems];
        if (!classify(r, sel, it)) {
            counts->not_due++;
            continue;
        }
        (*nitems)++;
        switch (it->action) {
        case VKS_CRED_DUE_ROTATE: counts->rotate++; break;
        case VKS_CRED_DUE_RESUME: counts->resume++; break;
        case VKS_CRED_DUE_REFUSE: counts->refuse++; break;
        case VKS_CRED_DUE_INFLIGHT: counts->inflight++; break;
        }
    }
    if (*nitems > 1)
        qsort(items, *nitems, sizeof *items, item_cmp);
}

vks_status vks_cred_due_plan(struct vks_cred_ctx *ctx, const struct vks_cred_due_sel *sel,
                             struct vks_cred_due_plan *plan, struct vks_err *err)
{
    memset(plan, 0, sizeof *plan);
    if (ctx == NULL || sel == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_cred_due_plan: ctx or sel is NULL");
    vks_status st = vks_cred_list(ctx, &plan->recs, &plan->nrecs, err);
    if (st != VKS_OK)
        return st;
    plan->items = calloc(plan->nrecs ? plan->nrecs : 1, sizeof *plan->items);
    if (plan->items == NULL) {
        vks_cred_due_plan_free(plan);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    vks_cred_due_select(plan->recs, plan->nrecs, sel, plan->items, &plan->n, &plan->counts);
    return VKS_OK;
}

/* One item through the core; the outcome goes into it. */
static void run_one(struct vks_cred_ctx *ctx, struct vks_cred_due_item *it, const struct vks_cred_rotate_opts *base)
{
    struct vks_cred_rotate_opts o = *base;
    struct vks_cred_rotate_result res;
    struct vks_err e;
    memset(&res, 0, sizeof res);
    vks_err_clear(&e);
    o.resume = it->action == VKS_CRED_DUE_RESUME;
    o.relay = NULL;     /* each credential's stored relay */
    o.password = NULL;  /* generated per credential */
    it->ran = true;
    it->status = vks_cred_rotate(ctx, it->rec->name, &o, &res, &e);
    it->step = res.step;
    it->old_version = res.old_version;
    it->new_version = res.new_version;
    if (res.rotation_id[0])
        snprintf(it->rotation_id, sizeof it->rotation_id, "%s", res.rotation_id);
    if (it->status != VKS_OK)
        snprintf(it->message, sizeof it->message, "%s", e.msg[0] ? e.msg : vks_status_code(it->status));
    vks_cred_rotate_result_free(&res);
}

vks_status vks_cred_rotate_due_run(struct vks_cred_ctx *ctx, struct vks_cred_due_plan *plan,
                                   const struct vks_cred_rotate_opts *opts, vks_cred_due_progress_fn progress,
                                   void *arg)
{
    if (ctx == NULL || plan == NULL || opts == NULL)
        return VKS_E_INVALID_ARG;
    vks_status first = VKS_OK;
    plan->counts.rotated = plan->counts.failed = 0;
    for (size_t i = 0; i < plan->n; i++) {
        struct vks_cred_due_item *it = &plan->items[i];
        switch (it->action) {
        case VKS_CRED_DUE_ROTATE:
        case VKS_CRED_DUE_RESUME:
            run_one(ctx, it, opts);
            if (it->status == VKS_OK)
                plan->counts.rotated++;
            else
                plan->counts.failed++;
            if (first == VKS_OK)
                first = it->status;
            break;
        case VKS_CRED_DUE_REFUSE:
            if (first == VKS_OK)
                first = VKS_E_INVALID_INPUT;
            break;
        case VKS_CRED_DUE_INFLIGHT:
            break;
        }
        if (progress)
            progress(it, i, plan->n, arg);
    }
    return first;
}

void vks_cred_due_plan_free(struct vks_cred_due_plan *plan)
{
    if (plan == NULL)
        return;
    free(plan->items);
    vks_cred_records_free(plan->recs, plan->nrecs);
    memset(plan, 0, sizeof *plan);
}
