/*
 * vks_hook: a command fed a secret on stdin, with a deadline and a process-group kill
 * (contract: vks_hook.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vks_hook.h"

extern char **environ;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* environ without VAULT_* and VKS_*, plus extra (heap array of borrowed strings). */
static char **child_env(const char *const *extra, size_t nextra)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **e = calloc(n + nextra + 1, sizeof *e);
    if (e == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "VAULT_", 6) != 0 && strncmp(environ[i], "VKS_", 4) != 0)
            e[k++] = environ[i];
    for (size_t i = 0; i < nextra; i++)
        e[k++] = (char *)extra[i];
    return e;
}

/* Writes the secret and a newline, SIGPIPE blocked; an EPIPE (the command did not read) is not an
   error here: the command's exit status decides. */
static void feed(int fd, const vks_secret *s)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    const unsigned char *p = s->data;
    size_t left = s->len;
    bool ok = true;
    while (ok && left > 0) { /* <= VKS_SECRET_MAX bytes into an empty pipe: does not block */
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        if (ok) {
            p += w;
            left -= (size_t)w;
        }
    }
    while (ok && write(fd, "\n", 1) < 0 && errno == EINTR)
        ;
    if (!was_pending) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&pipe_set, NULL, &zero); /* consume the SIGPIPE this write raised, if any */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static vks_status spawn(const char *command, char **envp, int in_fd, pid_t *pid, struct vks_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    char *argv[] = { "/bin/sh", "-c", (char *)command, NULL };
    int rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0)
        return vks_err_set(err, VKS_E_INTERNAL, "set hook: cannot start /bin/sh: %s", strerror(rc));
    return VKS_OK;
}

/* Waits for pid until deadline; false on timeout (the child is still running). */
static bool wait_until(pid_t pid, int64_t deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return true;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return false;
        poll(NULL, 0, left < 20 ? (int)left : 20);
    }
}

vks_status vks_hook_run(const char *command, const vks_secret *secret, const char *const *env, size_t nenv,
                        int timeout_ms, int *exit_status, struct vks_err *err)
{
    if (exit_status)
        *exit_status = -1;
    if (command == NULL || command[0] == '\0')
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--set-hook: the command is empty");
    if (secret == NULL || (secret->len > 0 && (secret->data == NULL || memchr(secret->data, '\n', secret->len) ||
                                               memchr(secret->data, '\0', secret->len))))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "set hook: the password holds a newline or NUL byte and "
                           "cannot be passed as one line on stdin");
    if (nenv > VKS_HOOK_MAX_ENV)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_hook_run: too many environment entries");
    if (timeout_ms <= 0)
        timeout_ms = VKS_HOOK_DEFAULT_TIMEOUT_MS;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return vks_err_set(err, VKS_E_INTERNAL, "set hook: pipe: %s", strerror(errno));
    char **envp = child_env(env, nenv);
    pid_t pid = 0;
    vks_status st = envp ? spawn(command, envp, fds[0], &pid, err) : vks_err_set(err, VKS_E_NOMEM, "out of memory");
    free(envp);
    close(fds[0]);
    if (st != VKS_OK) {
        close(fds[1]);
        return st;
    }
    int64_t deadline = now_ms() + timeout_ms;
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    feed(fds[1], secret);
    close(fds[1]);
    int status = 0;
    if (!wait_until(pid, deadline, &status)) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return vks_err_set(err, VKS_E_TIMEOUT, "set hook: no answer within %d ms: its process group was killed",
                           timeout_ms);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    if (exit_status)
        *exit_status = code;
    if (code == 0)
        return VKS_OK;
    kill(-pid, SIGKILL); /* what a failed hook left running does not go on with the password */
    if (WIFSIGNALED(status))
        return vks_err_set(err, VKS_E_REJECTED, "set hook: killed by signal %d", WTERMSIG(status));
    return vks_err_set(err, VKS_E_REJECTED, "set hook: exited with status %d", code);
}
