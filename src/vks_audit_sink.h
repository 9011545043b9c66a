/*
 * vks_audit_sink: the places audit lines are written to (part of vks_audit; module contract in
 * vks_audit.h, design in docs/internals/audit.md): a file (O_APPEND, one write per line, rotation
 * noticed), a syslog datagram socket, standard error.
 *
 * A struct audit_sink is a plain value: its I/O state (fd, path, inode, offsets) is used only by
 * these functions; its chain bookkeeping (need_open, missing, ...) only by vks_audit_chain.c.
 * Ownership: audit_sink_open gives the sink an fd (not for stderr) and a malloc'd path, which
 * audit_sink_close releases; the sink is owned by whoever holds it (the chain's sink set, or a
 * configure call preparing a new set).
 * Thread-safety: none inside; one thread at a time per sink (the chain's sinks are only used
 * under the audit lock, see vks_audit_chain.h). Nothing here takes a lock or calls back.
 */
#ifndef VKS_AUDIT_SINK_H
#define VKS_AUDIT_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "vks_error.h"

enum audit_sink_kind { AUDIT_SINK_FILE, AUDIT_SINK_SYSLOG, AUDIT_SINK_STDERR };

struct audit_sink {
    enum audit_sink_kind kind;
    int fd;
    char *path;              /* file path / syslog socket path */
    dev_t dev;
    ino_t ino;
    off_t last_end;          /* file size known to include our last line */
    int64_t next_check_ms;
    bool torn;               /* a short write left a partial line: start the next with '\n' */
    bool regular;            /* a regular file: writes never wait for a reader               */
    bool socket;             /* written with send(MSG_DONTWAIT)                              */
    bool nonblock;           /* fd is ours and non-blocking (EAGAIN, then poll)              */
    bool own_fd;             /* stderr: our own description of fd 2's file (closed by us)    */
    bool stalled;            /* the last write passed its deadline: no waiting until one
                                succeeds again (one non-blocking attempt per line)          */
    /* chain bookkeeping (vks_audit_chain.c) */
    bool need_open;          /* an audit.open event for this sink must precede its next event */
    const char *open_reason;
    bool missing;            /* this sink missed chain events from missed_from on */
    uint64_t missed_from;
    uint64_t checked_seq;    /* file: the chain's seq when the file was last seen intact */
    bool ok_now;             /* result of the last write in this emit */
};

/* How a line is written: set by the configuration, passed by the chain with every write. */
struct audit_write_opts {
    bool fsync;              /* fdatasync a file after each line (mode fsync) */
    int syslog_facility;     /* LOG_* facility (already masked) */
    const char *syslog_ident;
};

/* "file", "syslog", "stderr" */
const char *audit_sink_name(enum audit_sink_kind kind);

/* CLOCK_MONOTONIC in milliseconds (write deadlines). */
int64_t audit_now_ms(void);

/* CLOCK_MONOTONIC_COARSE in milliseconds (the rotation check clock). */
static inline int64_t audit_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Opens a sink: a file (created 0600, appended), a connected datagram socket at `path`, or fd 2
 * (path NULL). The sink starts with need_open set (reason "configure"). Errors (VKS_E_CONFIG,
 * VKS_E_NOMEM) name the path; the sink then owns nothing.
 */
vks_status audit_sink_open(struct audit_sink *s, enum audit_sink_kind kind, const char *path,
                           struct vks_err *err);
/* Closes the fd (never fd 2) and frees the path. Safe on a closed sink. */
void audit_sink_close(struct audit_sink *s);

/*
 * Writes one line (len bytes, ending with '\n'; a datagram gets it without the newline and with
 * an RFC 3164 header). True when the whole event is recorded. On false *errnum says why (for the
 * caller's error note); ETIMEDOUT when deadline_ms (audit_now_ms clock) passed first.
 * Deadline: every fd that can make a writer wait for a reader (pipe, FIFO, socket, terminal) is
 * written without blocking, and waited for with poll() until the deadline; a sink that passed a
 * deadline is `stalled` and gets one non-blocking attempt per line (no waiting) until a write
 * succeeds. A regular file is written directly (the kernel may still block on a frozen
 * filesystem: docs/audit.md "Deadlines"). A file that could not be reopened earlier is retried
 * first. A short write leaves the sink `torn`: its next write starts with '\n'.
 */
bool audit_sink_write(struct audit_sink *s, const char *line, size_t len,
                      const struct audit_write_opts *o, int64_t deadline_ms, int *errnum);

/*
 * File and stderr sinks, every reopen_ms (now_ms from audit_mono_ms): a file shorter than what we
 * wrote (copytruncate) sets need_open ("truncated"); another inode at the path (rename rotation)
 * is opened instead of the old one and sets need_open ("reopen"); fd 2 redirected to another file
 * is attached again (need_open "reopen"). Syslog, or a check not due yet: AUDIT_ROT_NOT_DUE.
 */
enum audit_rot { AUDIT_ROT_NOT_DUE, AUDIT_ROT_INTACT, AUDIT_ROT_TRUNCATED, AUDIT_ROT_REOPENED };
enum audit_rot audit_sink_check_rotation(struct audit_sink *s, int64_t now_ms, long reopen_ms);

/* Same kind and path: the same place (a sink configured again). */
bool audit_sink_same_place(const struct audit_sink *a, const struct audit_sink *b);

#endif
