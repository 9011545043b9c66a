/*
 * vks_audit_chain: the per-process HMAC chain and the sink set it writes to (part of vks_audit;
 * module contract in vks_audit.h, design in docs/internals/audit.md "Sinks and the chain").
 *
 * One chain per process (random id, seq, prev_mac), shared by all sinks: every line goes to every
 * sink with identical bytes. A line is committed (seq advances, its MAC becomes prev_mac) when at
 * least one sink, or the capture of a callback sink, recorded it; otherwise the seq is reused. A
 * sink that missed committed lines gets an audit.open naming the missed range before its next
 * line. Housekeeping lines (audit.open, audit.dropped, audit.close) are written here too.
 *
 * Ownership: the chain owns its sinks (given by audit_chain_swap_sinks, closed by
 * audit_chain_close_sinks or handed back by the next swap), its line buffer and digest context.
 * Lines returned through line_out are malloc'd copies owned by the caller.
 * Thread-safety: every function here must be called with the audit lock (audit_A.lock) held,
 * except vks_audit_capture_begin/end and audit_capture_mode, which act on the calling thread's
 * own capture state only.
 */
#ifndef VKS_AUDIT_CHAIN_H
#define VKS_AUDIT_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "vks_audit_event.h"
#include "vks_audit_sink.h"

#define AUDIT_MAX_SINKS 3

/* Capture for the Lua callback sink: lines are delivered; they count as recorded only when the
 * configuration has the callback sink. */
enum { AUDIT_CAP_NONE = 0, AUDIT_CAP_DELIVER = 1, AUDIT_CAP_COUNTS = 2 };
/* This thread's capture mode for the next event (no lock needed). */
int audit_capture_mode(void);

/* Starts a new chain: new id, seq 0, zero prev_mac, actor; its audit.open comes with the next
   event. */
void audit_chain_new(void);
bool audit_chain_started(void);
/* Allocates the digest context once (false: out of memory; MACs then fail and lines are lost). */
bool audit_chain_ready(void);

/*
 * Installs a new sink set (n <= AUDIT_MAX_SINKS, moved in: the chain owns them now) and hands the
 * old set back in old[] (returns its count) for the caller to close outside the lock.
 */
int audit_chain_swap_sinks(const struct audit_sink *news, int n,
                           struct audit_sink old[AUDIT_MAX_SINKS]);
int audit_chain_nsinks(void);
/* The options every write uses (copied; ident may be NULL = "vks-audit"). */
void audit_chain_set_options(long reopen_ms, int syslog_facility, const char *syslog_ident);

/* The deadline (audit_now_ms clock) of every sink write until the next call: set it before the
   calls below (each call may write several lines; all share the deadline). */
void audit_chain_set_deadline(int64_t deadline_ms);

/* The audit.open / audit.dropped lines that must precede the next event. False when nothing
   recorded them (or the chain has not started). */
bool audit_chain_pending(int capture);
/* Probe of the async writer while every sink fails: true when a sink recorded the pending lines. */
bool audit_chain_probe(void);
/*
 * One lookup into the chain (after its pending lines). True when recorded. line_out (may be NULL)
 * receives a malloc'd copy of the line without its newline.
 */
bool audit_chain_lookup(const struct audit_rec *r, int capture, char **line_out);
/* One administrative event, type "cred.<action>" (after the pending lines); as audit_chain_lookup. */
bool audit_chain_admin(const struct vks_audit_admin_event *ev, const struct timespec *ts, char **line_out);
/* audit.dropped when drops or failures are not reported yet (true when nothing to report). */
bool audit_chain_dropped_notice(int capture);
/* audit.close: the chain ends (before a key change or at shutdown). */
void audit_chain_close(void);

/* Rotation check of the file sinks now, whatever the period (vks_audit_reopen). */
void audit_chain_reopen_now(void);
/* Shutdown: closes every sink, forgets the chain, frees the digest context. */
void audit_chain_close_sinks(void);
/* In a forked child (locks held by the fork handler): a new chain; no sink owes a marker. */
void audit_chain_fork_child(void);
/* seq and chain id for the stats. */
void audit_chain_stats(uint64_t *seq, char chain[33]);

#endif
