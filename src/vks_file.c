/*
 * vks_file: non-blocking, type-checked, size-capped opening and reading of the files we read
 * (contract: vks_file.h; design: docs/internals/file.md).
 */
#include "vks_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *vks_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO (named pipe)";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "not a file of a known kind";
    }
}

static const char *what_of(const struct vks_file_opts *o)
{
    return o->what && *o->what ? o->what : "file";
}

/* The refusal for a path that exists but is not a regular file (st from stat/lstat/fstat). */
static vks_status refuse_kind(const char *path, const struct vks_file_opts *o, const struct stat *st,
                              struct vks_err *err)
{
    if (S_ISLNK(st->st_mode))
        return vks_err_set(err, o->code, "%s \"%s\" is a symbolic link, which is not followed here",
                           what_of(o), path);
    return vks_err_set(err, o->code, "%s \"%s\" is %s, not a regular file", what_of(o), path,
                       vks_file_kind((unsigned)st->st_mode));
}

/* The checks every open file must pass: regular, within the cap, private when asked. */
static vks_status check_stat(const char *path, const struct vks_file_opts *o, const struct stat *st,
                             struct vks_err *err)
{
    if (!S_ISREG(st->st_mode))
        return refuse_kind(path, o, st, err);
    if (o->max_bytes > 0 && (unsigned long long)st->st_size > (unsigned long long)o->max_bytes)
        return vks_err_set(err, o->code, "%s \"%s\" is larger than %zu bytes (it is %lld bytes)", what_of(o),
                           path, o->max_bytes, (long long)st->st_size);
    if (o->private_mode && (st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
        return vks_err_set(err, o->code,
                           "%s \"%s\" is refused: mode %04o lets group or others access it (chmod 600 it)",
                           what_of(o), path, (unsigned)(st->st_mode & 07777));
    return VKS_OK;
}

vks_status vks_file_open(const char *path, const struct vks_file_opts *o, int *fd_out, size_t *size_out,
                         struct vks_err *err)
{
    if (fd_out)
        *fd_out = -1;
    if (size_out)
        *size_out = 0;
    if (!path || !o || !fd_out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_file_open: bad arguments");
    if (!*path)
        return vks_err_set(err, o->code, "%s: the path is empty", what_of(o));
    /* 1. look before opening: a device or FIFO is refused without being opened at all */
    struct stat st;
    int rc = o->nofollow ? lstat(path, &st) : stat(path, &st);
    if (rc != 0) {
        int e = errno;
        if (o->missing_ok && (e == ENOENT || e == ENOTDIR))
            return VKS_OK;
        return vks_err_set(err, o->code, "cannot open %s \"%s\": %s", what_of(o), path, strerror(e));
    }
    vks_status s = check_stat(path, o, &st, err);
    if (s != VKS_OK)
        return s;
    /* 2. open without blocking, even if the path was swapped for a FIFO meanwhile */
    int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (o->nofollow ? O_NOFOLLOW : 0);
    int fd;
    do
        fd = open(path, flags);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        if (o->missing_ok && (e == ENOENT || e == ENOTDIR))
            return VKS_OK;
        if (e == ELOOP && o->nofollow)
            return vks_err_set(err, o->code, "%s \"%s\" is a symbolic link, which is not followed here",
                               what_of(o), path);
        if (e == ENXIO)
            return vks_err_set(err, o->code, "%s \"%s\" is a socket or a device without a driver, not a regular file",
                               what_of(o), path);
        return vks_err_set(err, o->code, "cannot open %s \"%s\": %s", what_of(o), path, strerror(e));
    }
    /* 3. the authoritative check, on what was actually opened */
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vks_err_set(err, o->code, "cannot stat %s \"%s\": %s", what_of(o), path, strerror(e));
    }
    if ((s = check_stat(path, o, &st, err)) != VKS_OK) {
        close(fd);
        return s;
    }
    *fd_out = fd;
    if (size_out)
        *size_out = (size_t)st.st_size;
    return VKS_OK;
}

vks_status vks_file_read_fd(int fd, unsigned char *buf, size_t cap, size_t *n, bool *more, const char *path,
                            const struct vks_file_opts *o, struct vks_err *err)
{
    size_t got = 0;
    *n = 0;
    *more = false;
    for (;;) {
        if (got == cap) {
            unsigned char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            explicit_bzero(&probe, 1);
            if (r < 0)
                return vks_err_set(err, o->code, "cannot read %s \"%s\": %s", what_of(o), path, strerror(errno));
            *more = r > 0;
            break;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) /* EAGAIN too: a regular file never says it; anything else is refused */
            return vks_err_set(err, o->code, "cannot read %s \"%s\": %s", what_of(o), path, strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *n = got;
    return VKS_OK;
}
