/*
 * vks_audit_sink: file, syslog and stderr sinks (vks_audit_sink.h).
 * Design notes: docs/internals/audit.md.
 */
#include "vks_audit_sink.h"

#include <errno.h>
#include <fcntl.h>
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

static int file_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
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
    } else if (kind == AUDIT_SINK_SYSLOG) {
        s->fd = syslog_connect(path);
        if (s->fd < 0) {
            vks_err_set(err, VKS_E_CONFIG, "audit syslog socket %s: %s", path, strerror(errno));
            free(s->path);
            s->path = NULL;
            return err ? err->status : VKS_E_CONFIG;
        }
    } else {
        s->fd = STDERR_FILENO;
    }
    return VKS_OK;
}

void audit_sink_close(struct audit_sink *s)
{
    if (s->fd >= 0 && s->kind != AUDIT_SINK_STDERR)
        close(s->fd);
    s->fd = -1;
    free(s->path);
    s->path = NULL;
}

bool audit_sink_write(struct audit_sink *s, const char *line, size_t len,
                      const struct audit_write_opts *o, int *errnum)
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
            }
        }
        if (s->fd < 0) {
            *errnum = errno ? errno : EBADF;
            return false;
        }
    }
    if (s->kind == AUDIT_SINK_SYSLOG) {
        char msg[AUDIT_LINE_CAP + 128];
        struct tm tm;
        time_t now = time(NULL);
        localtime_r(&now, &tm);
        int h = snprintf(msg, 128, "<%d>", o->syslog_facility | LOG_INFO);
        h += (int)strftime(msg + h, 32, "%b %e %H:%M:%S ", &tm);
        h += snprintf(msg + h, 96, "%s[%ld]: ", o->syslog_ident, (long)getpid());
        memcpy(msg + h, line, len - 1); /* no newline in a datagram */
        size_t mlen = (size_t)h + len - 1;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (send(s->fd, msg, mlen, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)mlen)
                return true;
            int e = errno;
            if (attempt == 0 && (e == ECONNREFUSED || e == ENOTCONN)) {
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
        return false;
    }
    /* file / stderr: exactly one write per event (a torn earlier line gets its '\n' first) */
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
    ssize_t w;
    do {
        w = write(s->fd, p, n);
    } while (w < 0 && errno == EINTR);
    int e = errno;
    free(joined);
    if (w == (ssize_t)n) {
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
        /* a partial line is on disk (disk full): whatever comes next starts on a new line */
        s->torn = true;
        s->last_end += w;
        if ((size_t)w == n - 1) {
            /* only the newline is missing: the event itself is recorded */
            return true;
        }
        e = ENOSPC;
    }
    *errnum = w == 0 ? EIO : e;
    return false;
}

bool audit_sink_check_rotation(struct audit_sink *s, int64_t now, long reopen_ms)
{
    if (s->kind != AUDIT_SINK_FILE || s->fd < 0)
        return false;
    if (reopen_ms > 0 && now < s->next_check_ms)
        return false;
    s->next_check_ms = now + reopen_ms;
    /* copytruncate: the file is shorter than what we wrote */
    struct stat st;
    if (fstat(s->fd, &st) == 0 && st.st_size < s->last_end) {
        s->last_end = st.st_size;
        if (!s->need_open) {
            s->need_open = true;
            s->open_reason = "truncated";
        }
    }
    struct stat ps;
    if (stat(s->path, &ps) == 0 && ps.st_dev == s->dev && ps.st_ino == s->ino)
        return false;
    int fd = file_open(s->path);
    if (fd < 0 || fstat(fd, &ps) != 0) {
        if (fd >= 0)
            close(fd);
        return false; /* keep writing to the old file rather than nowhere */
    }
    close(s->fd);
    s->fd = fd;
    s->dev = ps.st_dev;
    s->ino = ps.st_ino;
    s->last_end = ps.st_size;
    s->torn = false;
    s->need_open = true;
    s->open_reason = "reopen";
    return true;
}
