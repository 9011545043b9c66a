/*
 * vks_file: the one way the project opens a file it reads (keysource files, key files, token and
 * secret_id files, the audit key, the tools' input files). Design: docs/internals/file.md.
 *
 * A FIFO, a device, a directory or a socket given where a file is expected must fail at once with
 * a message naming the file and what it is; it must never block (a FIFO without a writer blocks a
 * plain open(2) forever, /dev/zero never ends, a tape device rewinds on open). So every open here:
 *   1. looks at the path first (stat, or lstat when symlinks are not followed) and refuses anything
 *      that is not a regular file without opening it;
 *   2. opens with O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY (| O_NOFOLLOW when asked), so even a
 *      FIFO swapped in after step 1 cannot block the open;
 *   3. checks the opened descriptor with fstat (the authoritative check: regular file, size cap,
 *      optionally no group/other permission bits).
 * Reads go into a buffer the caller supplies (an arena slot or a scratch buffer when the content
 * is secret), never into a buffer that grows; a file that grows past its fstat size or the cap
 * while being read is refused.
 *
 * This module depends only on vks_error (the policy host links it on its own).
 * Ownership: the descriptor returned by vks_file_open belongs to the caller (close it).
 * Thread-safety: every function is reentrant; no shared state.
 */
#ifndef VKS_FILE_H
#define VKS_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"

struct vks_file_opts {
    const char *what;   /* names the file in messages, e.g. "keysource file", "audit key file" */
    vks_status code;    /* the status of every refusal (VKS_E_FILE_ERROR, VKS_E_CONFIG, ...)   */
    size_t max_bytes;   /* size cap: a larger file is refused; 0 = no cap                       */
    bool nofollow;      /* refuse a symbolic link as the last path component (O_NOFOLLOW)       */
    bool private_mode;  /* refuse a file with any group/other permission bit (chmod 600)        */
    bool missing_ok;    /* a missing file (ENOENT, ENOTDIR) is VKS_OK with *fd_out = -1         */
};

/*
 * Opens path for reading as described above. On VKS_OK *fd_out is an open descriptor (or -1 for a
 * missing file with missing_ok) and *size_out its size from fstat. Errors (opts->code) name
 * opts->what, the path and the kind: "keysource file \"/x\" is a FIFO (named pipe), not a regular
 * file", "... is a symbolic link, which is not followed here", "... is 9000 bytes, more than the
 * limit of 4096", "... mode 0644 lets group or others read it (chmod 600)".
 */
vks_status vks_file_open(const char *path, const struct vks_file_opts *opts, int *fd_out,
                         size_t *size_out, struct vks_err *err);

/*
 * Reads the rest of fd into buf[0..cap). *n is the number of bytes read; *more is true when the
 * file holds more than cap bytes (one probe byte is read and wiped, never stored). Retries EINTR;
 * EAGAIN (a descriptor that is not a regular file) is an error, never a wait. Errors use
 * opts->code and name opts->what and path.
 */
vks_status vks_file_read_fd(int fd, unsigned char *buf, size_t cap, size_t *n, bool *more,
                            const char *path, const struct vks_file_opts *opts,
                            struct vks_err *err);

/* "a FIFO (named pipe)", "a directory", "a character device", ... for a st_mode (for messages). */
const char *vks_file_kind(unsigned mode);

#endif
