/*
 * vks_audit_sink: file, syslog and stderr sinks (vks_audit_sink.h).
 * Design notes: docs/internals/audit.md.
 */
#include "vks_audit_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "vks_audit_event.h" /* AUDIT_LINE_CAP */

static const char *const sink_names[] = { "file", "syslog", "stderr" };

const char *audit_sink_name(enum audit_sink_kind kind)
{
    return sink_names[kind];
}

/* O_NONBLOCK: a FIFO without a reader is refused at once (ENXIO), a full one gives EAGAIN (and
   the write waits in poll with its deadline); regular files ignore the flag. */
static int file_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
}

/* What the fd is, for the write path. */
static void note_fd_type(struct audit_sink *s, const struct stat *st, bool nonblock)
{
    s->regular = S_ISREG(st->st_mode);
    s->socket = S_ISSOCK(st->st_mode);
    s->nonblock = nonblock || s->socket; /* sockets: MSG_DONTWAIT on every send */
}

/*
 * stderr: fd 2 is shared with the whole process (and often with the parent), so its blocking mode
 * is not ours to change. A pipe, FIFO or terminal is opened again through /proc/self/fd/2, which
 * gives us our own open file description to make non-blocking; a socket is written with
 * MSG_DONTWAIT; a regular file is written directly (writes to it never wait for a reader).
 * Without /proc the fd is used as it is, and poll() before each write keeps it from blocking
 * while the pipe has no room (a line up to PIPE_BUF fits once poll reports room).
 */
static void stderr_attach(struct audit_sink *s)
{
    struct stat st;
    s->fd = STDERR_FILENO;
    s->own_fd = false;
    s->regular = s->socket = s->nonblock = false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    note_fd_type(s, &st, false);
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        int fd = open("/proc/self/fd/2", O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd >= 0) {
            s->fd = fd;
            s->own_fd = true;
            s->nonblock = true;
        }
    }
}

static void stderr_detach(struct audit_sink *s)
{
    if (s->own_fd && s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->own_fd = false;
}

static int syslog_connect(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

vks_status audit_sink_open(struct audit_sink *s, enum audit_sink_kind kind, const char *path,
                           struct vks_err *err)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->fd = -1;
    s->need_open = true;
    s->open_reason = "configure";
    if (path != NULL) {
        s->path = strdup(path);
        if (s->path == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "audit: out of memory");
    }
    if (kind == AUDIT_SINK_FILE) {
        s->fd = file_open(path);
        struct stat st;
        if (s->fd < 0 || fstat(s->fd, &st) != 0) {
            vks_err_set(err, VKS_E_CONFIG, "audit file %s: %s", path, strerror(errno));
            if (s->fd >= 0)
                close(s->fd);
            free(s->path);
            s->path = NULL;
            return err ? err->status : VKS_E_CONFIG;
        }
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->last_end = st.st_size;
        note_fd_type(s, &st, true);
    } else if (kind == AUDIT_SINK_SYSLOG) {
        s->fd = syslog_connect(path);
        if (s->fd < 0) {
            vks_err_set(err, VKS_E_CONFIG, "audit syslog socket %s: %s", path, strerror(errno));
            free(s->path);
            s->path = NULL;
            return err ? err->status : VKS_E_CONFIG;
        }
        s->socket = s->nonblock = true;
    } else {
        stderr_attach(s);
    }
    return VKS_OK;
}

void audit_sink_close(struct audit_sink *s)
{
    if (s->kind == AUDIT_SINK_STDERR)
        stderr_detach(s);
    else if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->path);
    s->path = NULL;
}

int64_t audit_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Waits until fd can take more bytes or the deadline passes. A stalled sink is not waited for
 * (one non-blocking attempt per event) until a write to it succeeds again. False: ETIMEDOUT.
 */
static bool wait_writable(struct audit_sink *s, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = s->stalled ? 0 : deadline_ms - audit_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = { .fd = s->fd, .events = POLLOUT };
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return true; /* room, or an error the next write reports */
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return false;
        if (left == 0 || audit_now_ms() >= deadline_ms) {
            s->stalled = true;
            errno = ETIMEDOUT;
            return false;
        }
    }
}

static ssize_t raw_write(const struct audit_sink *s, const char *p, size_t n)
{
    if (s->socket)
        return send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    return write(s->fd, p, n);
}

/* Writes p[0..n) (several writes if the fd takes less); returns the bytes written, *e on error. */
static size_t write_until(struct audit_sink *s, const char *p, size_t n, int64_t deadline_ms,
                          int *e)
{
    size_t done = 0;
    *e = 0;
    while (done < n) {
        if (!s->regular && !s->nonblock && !wait_writable(s, deadline_ms)) {
            /* a blocking fd we may not change (fd 2): write only once poll reported room */
            *e = errno;
            break;
        }
        ssize_t w = raw_write(s, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_writable(s, deadline_ms)) {
                *e = errno;
                break;
            }
            continue;
        }
        *e = w == 0 ? EIO : errno;
        break;
    }
    if (done == n)
        s->stalled = false;
    return done;
}

/* One datagram (RFC 3164 header, no newline) to the syslog socket; waits for room until the
   deadline; reconnects once when the daemon restarted. */
static bool syslog_send(struct audit_sink *s, const char *line, size_t len,
                        const struct audit_write_opts *o, int64_t deadline_ms, int *errnum)
{
    char msg[AUDIT_LINE_CAP + 128];
    struct tm tm;
    time_t now = time(NULL);
    localtime_r(&now, &tm);
    int h = snprintf(msg, 128, "<%d>", o->syslog_facility | LOG_INFO);
    h += (int)strftime(msg + h, 32, "%b %e %H:%M:%S ", &tm);
    h += snprintf(msg + h, 96, "%s[%ld]: ", o->syslog_ident, (long)getpid());
    memcpy(msg + h, line, len - 1); /* no newline in a datagram */
    size_t mlen = (size_t)h + len - 1;
    bool reconnected = false;
    for (;;) {
        if (send(s->fd, msg, mlen, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)mlen) {
            s->stalled = false;
            return true;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
            /* the daemon's queue is full: wait for room until the deadline */
            if (wait_writable(s, deadline_ms))
                continue;
            e = errno;
        } else if (!reconnected && (e == ECONNREFUSED || e == ENOTCONN)) {
            reconnected = true;
            int fd = syslog_connect(s->path);
            if (fd >= 0) {
                close(s->fd);
                s->fd = fd;
                continue;
            }
        }
        *errnum = e;
        return false;
    }
}

bool audit_sink_write(struct audit_sink *s, const char *line, size_t len,
                      const struct audit_write_opts *o, int64_t deadline_ms, int *errnum)
{
    if (s->fd < 0) {
        if (s->kind == AUDIT_SINK_FILE && s->path != NULL) {
            /* the file could not be reopened earlier: try again */
            s->fd = file_open(s->path);
            struct stat st;
            if (s->fd >= 0 && fstat(s->fd, &st) == 0) {
                s->dev = st.st_dev;
                s->ino = st.st_ino;
                s->last_end = st.st_size;
                note_fd_type(s, &st, true);
            }
        }
        if (s->fd < 0) {
            *errnum = errno ? errno : EBADF;
            return false;
        }
    }
    if (s->kind == AUDIT_SINK_SYSLOG)
        return syslog_send(s, line, len, o, deadline_ms, errnum);
    /* file / stderr: one write per event (a torn earlier line gets its '\n' first) */
    const char *p = line;
    size_t n = len;
    char *joined = NULL;
    if (s->torn) {
        joined = malloc(len + 1);
        if (joined != NULL) {
            joined[0] = '\n';
            memcpy(joined + 1, line, len);
            p = joined;
            n = len + 1;
        }
    }
    int e;
    size_t w = write_until(s, p, n, deadline_ms, &e);
    free(joined);
    if (w == n) {
        s->torn = false;
        if (s->kind == AUDIT_SINK_FILE) {
            s->last_end += (off_t)n;
            if (o->fsync && fdatasync(s->fd) != 0) {
                *errnum = errno;
                return false;
            }
        }
        return true;
    }
    if (w > 0) {
        /* a partial line was written (disk full, or the deadline passed mid-line): whatever
           comes next starts on a new line */
        s->torn = true;
        s->last_end += (off_t)w;
        if (w == n - 1) {
            /* only the newline is missing: the event itself is recorded */
            return true;
        }
        if (e != ETIMEDOUT)
            e = ENOSPC;
    }
    *errnum = e ? e : EIO;
    return false;
}

/* stderr: fd 2 now names another file (the program redirected it): attach to that one. */
static enum audit_rot stderr_check(struct audit_sink *s)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0 || (st.st_dev == s->dev && st.st_ino == s->ino))
        return AUDIT_ROT_INTACT;
    stderr_detach(s);
    stderr_attach(s);
    s->torn = false;
    s->need_open = true;
    s->open_reason = "reopen";
    return AUDIT_ROT_REOPENED;
}

enum audit_rot audit_sink_check_rotation(struct audit_sink *s, int64_t now, long reopen_ms)
{
    if (s->kind == AUDIT_SINK_SYSLOG || (s->kind == AUDIT_SINK_FILE && s->fd < 0))
        return AUDIT_ROT_NOT_DUE;
    if (reopen_ms > 0 && now < s->next_check_ms)
        return AUDIT_ROT_NOT_DUE;
    s->next_check_ms = now + reopen_ms;
    if (s->kind == AUDIT_SINK_STDERR)
        return stderr_check(s);
    /* copytruncate: the file is shorter than what it held at the last check plus what we wrote
       since (other processes' lines only make it longer) */
    enum audit_rot res = AUDIT_ROT_INTACT;
    struct stat st;
    if (fstat(s->fd, &st) == 0) {
        if (st.st_size < s->last_end) {
            res = AUDIT_ROT_TRUNCATED;
            if (!s->need_open) {
                s->need_open = true;
                s->open_reason = "truncated";
            }
        }
        s->last_end = st.st_size;
    }
    struct stat ps;
    if (stat(s->path, &ps) == 0 && ps.st_dev == s->dev && ps.st_ino == s->ino)
        return res;
    int fd = file_open(s->path);
    if (fd < 0 || fstat(fd, &ps) != 0) {
        if (fd >= 0)
            close(fd);
        return res; /* keep writing to the old file rather than nowhere */
    }
    close(s->fd);
    s->fd = fd;
    s->dev = ps.st_dev;
    s->ino = ps.st_ino;
    s->last_end = ps.st_size;
    note_fd_type(s, &ps, true);
    s->torn = false;
    s->stalled = false;
    s->need_open = true;
    s->open_reason = "reopen";
    return AUDIT_ROT_REOPENED;
}

bool audit_sink_same_place(const struct audit_sink *a, const struct audit_sink *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->path == NULL || b->path == NULL)
        return a->path == b->path;
    return strcmp(a->path, b->path) == 0;
}
