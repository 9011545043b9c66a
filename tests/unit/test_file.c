/*
 * vks_file: every kind of non-regular file is refused promptly, naming the file and the kind; a
 * regular file within the cap reads whole. Each test has a Criterion timeout: a FIFO that blocks
 * open(2) would hang the suite instead of failing it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vks_file.h"

static char dir[400];

static void setup_dir(void)
{
    const char *w = getenv("VKS_SUITE_WORK");
    snprintf(dir, sizeof dir, "%s/file-XXXXXX", w ? w : "/tmp");
    cr_assert(mkdtemp(dir) != NULL);
}

static void rm_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
    static char p[4][512];
    static int i;
    char *q = p[i++ % 4];
    snprintf(q, 512, "%s/%s", dir, name);
    return q;
}

static const char *regular(const char *name, size_t n, mode_t mode)
{
    const char *p = in_dir(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert(fd >= 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(write(fd, "x", 1), 1);
    fchmod(fd, mode);
    close(fd);
    return p;
}

static const struct vks_file_opts OPTS = { .what = "test file", .code = VKS_E_FILE_ERROR, .max_bytes = 4096 };

/* open must fail with OPTS.code and a message holding the path and every needle */
static void refused(const char *path, const struct vks_file_opts *o, const char *needle)
{
    int fd = 123;
    struct vks_err e;
    vks_err_clear(&e);
    cr_assert_eq(vks_file_open(path, o, &fd, NULL, &e), o->code, "%s: %s", path, e.msg);
    cr_assert_eq(fd, -1);
    cr_assert(strstr(e.msg, path) != NULL, "message does not name %s: %s", path, e.msg);
    cr_assert(strstr(e.msg, o->what) != NULL, "message does not name the reader: %s", e.msg);
    cr_assert(strstr(e.msg, needle) != NULL, "message lacks '%s': %s", needle, e.msg);
}

TestSuite(file, .init = setup_dir, .fini = rm_dir, .timeout = 20);

Test(file, a_fifo_without_writer_is_refused_not_waited_on)
{
    const char *p = in_dir("fifo");
    cr_assert_eq(mkfifo(p, 0600), 0);
    refused(p, &OPTS, "is a FIFO (named pipe), not a regular file");
    /* the same with a writer attached and data in the pipe */
    int w = open(p, O_RDWR | O_NONBLOCK);
    cr_assert(w >= 0);
    cr_assert_eq(write(w, "secret?", 7), 7);
    refused(p, &OPTS, "is a FIFO");
    close(w);
}

Test(file, devices_are_refused)
{
    refused("/dev/zero", &OPTS, "is a character device, not a regular file");
    refused("/dev/null", &OPTS, "is a character device");
    refused("/dev/urandom", &OPTS, "is a character device");
    refused("/dev/tty", &OPTS, "is a character device"); /* may not exist as a terminal: stat only */
}

Test(file, a_directory_is_refused)
{
    refused(dir, &OPTS, "is a directory, not a regular file");
    refused("/", &OPTS, "is a directory");
}

Test(file, a_unix_socket_is_refused)
{
    const char *p = in_dir("sock");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", p);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
    cr_assert_eq(listen(s, 1), 0);
    refused(p, &OPTS, "is a socket, not a regular file");
    close(s);
}

Test(file, symlinks_are_followed_unless_nofollow)
{
    const char *target = regular("target", 5, 0600);
    const char *link = in_dir("link");
    cr_assert_eq(symlink(target, link), 0);
    int fd = -1;
    size_t size = 0;
    struct vks_err e;
    cr_assert_eq(vks_file_open(link, &OPTS, &fd, &size, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(size, 5);
    close(fd);
    struct vks_file_opts nf = OPTS;
    nf.nofollow = true;
    refused(link, &nf, "is a symbolic link, which is not followed here");
    /* a followed link to a FIFO is refused as a FIFO */
    const char *fifo = in_dir("fifo2");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const char *l2 = in_dir("link2");
    cr_assert_eq(symlink(fifo, l2), 0);
    refused(l2, &OPTS, "is a FIFO");
}

Test(file, oversize_files_are_refused_at_the_cap)
{
    const char *ok = regular("4096", 4096, 0600);
    const char *big = regular("4097", 4097, 0600);
    int fd = -1;
    size_t size = 0;
    struct vks_err e;
    cr_assert_eq(vks_file_open(ok, &OPTS, &fd, &size, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(size, 4096);
    unsigned char buf[4096];
    size_t n = 0;
    bool more = true;
    cr_assert_eq(vks_file_read_fd(fd, buf, sizeof buf, &n, &more, ok, &OPTS, &e), VKS_OK);
    cr_assert_eq(n, 4096);
    cr_assert(!more);
    close(fd);
    refused(big, &OPTS, "is larger than 4096 bytes (it is 4097 bytes)");
}

Test(file, private_mode_refuses_group_or_other_bits)
{
    struct vks_file_opts o = OPTS;
    o.private_mode = true;
    const mode_t bad[] = { 0640, 0604, 0610, 0601, 0660 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[16], needle[80];
        snprintf(name, sizeof name, "m%o", (unsigned)bad[i]);
        snprintf(needle, sizeof needle, "mode %04o lets group or others access it", (unsigned)bad[i]);
        refused(regular(name, 3, bad[i]), &o, needle);
    }
    int fd = -1;
    struct vks_err e;
    cr_assert_eq(vks_file_open(regular("m600", 3, 0600), &o, &fd, NULL, &e), VKS_OK, "%s", e.msg);
    close(fd);
}

Test(file, missing_files)
{
    refused(in_dir("nope"), &OPTS, "cannot open test file");
    regular("plain", 1, 0600);
    refused(in_dir("plain/deeper"), &OPTS, "Not a directory");
    struct vks_file_opts o = OPTS;
    o.missing_ok = true;
    int fd = 7;
    struct vks_err e;
    cr_assert_eq(vks_file_open(in_dir("nope"), &o, &fd, NULL, &e), VKS_OK);
    cr_assert_eq(fd, -1);
    /* missing_ok is only for a missing file: a FIFO is still refused */
    const char *p = in_dir("fifo3");
    cr_assert_eq(mkfifo(p, 0600), 0);
    refused(p, &o, "is a FIFO");
}

Test(file, the_descriptor_is_close_on_exec_and_reads_probe_growth)
{
    const char *p = regular("grow", 10, 0600);
    int fd = -1;
    size_t size = 0;
    struct vks_err e;
    cr_assert_eq(vks_file_open(p, &OPTS, &fd, &size, &e), VKS_OK);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    unsigned char buf[4];
    size_t n = 0;
    bool more = false;
    cr_assert_eq(vks_file_read_fd(fd, buf, sizeof buf, &n, &more, p, &OPTS, &e), VKS_OK);
    cr_assert_eq(n, 4);
    cr_assert(more, "a file larger than the buffer says so");
    close(fd);
}

Test(file, bad_arguments_and_empty_path)
{
    int fd;
    struct vks_err e;
    cr_assert_eq(vks_file_open(NULL, &OPTS, &fd, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_file_open("", &OPTS, &fd, NULL, &e), VKS_E_FILE_ERROR);
    cr_assert(strstr(e.msg, "empty") != NULL, "%s", e.msg);
}
