/*
 * vks_audit_report: the period report behind `vks audit report` (docs/audit.md "Reports").
 *
 * Events come from the chain verifier (vks_audit_verifier_on_event: one parser, the verifier's);
 * this module only selects the period and aggregates: lookups by credential, actor and api (an
 * outbound lookup, or an inbound login / sender check of vks-agent [inbound]), each administrative
 * act (cred.*, backup.*, rekey.*, serve.*), reveals, finished rotations, emergency resets, failed
 * and refused accesses, and the verification status of every file. It never sees a secret (the trail holds none) and
 * copies only the fields it prints.
 *
 * Ownership: a report is owned by its creator and freed with vks_audit_report_free; every string
 * argument is borrowed for the call. Thread-safety: none (one report, one thread), like the
 * verifier that feeds it.
 */
#ifndef VKS_AUDIT_REPORT_H
#define VKS_AUDIT_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "vks_audit.h"
#include "vks_error.h"

struct vks_audit_report;

enum vks_audit_report_format { VKS_REPORT_TEXT, VKS_REPORT_JSON, VKS_REPORT_CSV };

/* from/to: YYYY-MM-DD (to: the whole day) or YYYY-MM-DDTHH:MM:SSZ, UTC, both inclusive.
 * VKS_E_INVALID_ARG naming --from/--to for a malformed date or from after to. */
vks_status vks_audit_report_new(const char *from, const char *to, struct vks_audit_report **out,
                                struct vks_err *err);
/* The verifier callback (vks_audit_event_fn); ud is the report. Events outside the period, and
 * types other than secret.lookup, cred.*, backup.*, rekey.* and serve.*, are counted but not
 * listed. */
void vks_audit_report_event(void *ud, const char *where, unsigned long line,
                            const struct json_object *event, bool line_bad);
/* One input file covered lines first..last (1-based over all lines fed; last < first: empty). */
vks_status vks_audit_report_add_file(struct vks_audit_report *r, const char *name,
                                     unsigned long first, unsigned long last, struct vks_err *err);
/* The verifier's result: its exit status (0/1/3), first bad line (0: none or of no one line) and
 * its verdict line (copied). */
void vks_audit_report_set_verdict(struct vks_audit_report *r, int verify_rc, unsigned long bad_line,
                                  const char *verdict);
/* Optional: credentials overdue now (from vks_cred_due_eval): one line each, copied. */
vks_status vks_audit_report_add_overdue(struct vks_audit_report *r, const char *name,
                                        const char *due, const char *why, struct vks_err *err);
void vks_audit_report_set_overdue_checked(struct vks_audit_report *r);
/* Writes the report; VKS_E_IO on a write error. */
vks_status vks_audit_report_write(const struct vks_audit_report *r, enum vks_audit_report_format f,
                                  FILE *out, struct vks_err *err);
/* The exit status `vks audit report` returns: 0 verified, 1 broken chain, 3 unverifiable (no
 * problem found but some chain without the key), as `vks audit verify`. */
int vks_audit_report_status(const struct vks_audit_report *r);
void vks_audit_report_free(struct vks_audit_report *r);

#endif
