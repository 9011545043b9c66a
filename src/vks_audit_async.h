/*
 * vks_audit_async: the bounded queue and the writer thread of mode async (part of vks_audit;
 * module contract in vks_audit.h, design in docs/internals/audit.md "Async").
 *
 * A caller copies its event into a ring slot (and a value up to 64 bytes into a locked,
 * non-dumpable, wiped-on-fork pool slot; longer values into a secret-arena slot) and returns; the
 * writer thread fingerprints the value, wipes it, and writes the event through the chain.
 *
 * Ownership: the ring, the pool and the writer thread belong to this part (audit_q_free releases
 * the ring and the pool). A queued record owns its string block and its value copy until the
 * writer has written it. Nothing the caller passes is kept.
 * Thread-safety: every function may be called from any thread, with no audit lock held (the
 * queue lock comes before the audit lock in the lock order), except audit_q_atfork_* which only
 * the fork handlers call, in the documented order.
 */
#ifndef VKS_AUDIT_ASYNC_H
#define VKS_AUDIT_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "vks_audit.h"

/* Starts the writer with a ring of `cap` events (no-op when it runs). */
vks_status audit_q_start(size_t cap, struct vks_err *err);
/* Stops the writer after it drained the ring (no-op when it does not run). */
void audit_q_stop(void);
/* The ring's capacity (0 when none). */
size_t audit_q_capacity(void);
/* Events queued or being written. */
size_t audit_q_depth(void);
/* Releases the ring and the pool (the writer must be stopped). */
void audit_q_free(void);

enum audit_q_result {
    AUDIT_Q_QUEUED,       /* the writer will write it                                    */
    AUDIT_Q_NOT_RUNNING,  /* no writer (e.g. a forked child before it restarted): write now */
    AUDIT_Q_FAILING,      /* deny, and the writer found every sink failing: refuse        */
    AUDIT_Q_FULL,         /* the ring is full: dropped                                    */
    AUDIT_Q_NOMEM,        /* the event could not be copied                                */
};
/*
 * Queues one event stamped `ts`. fp (may be NULL) is its fingerprint; without one the value (if
 * any) is copied for the writer to fingerprint. Counts nothing: the caller applies the policy.
 */
enum audit_q_result audit_q_enqueue(const struct vks_audit_event *ev, const struct timespec *ts,
                                    const unsigned char *fp);

/* fork: prepare takes the queue lock, parent releases it, child resets the queue (its writer
   does not exist there and the queued events belong to the parent) and releases it. */
void audit_q_atfork_prepare(void);
void audit_q_atfork_parent(void);
void audit_q_atfork_child(void);

#endif
