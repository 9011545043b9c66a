/*
 * `vks serve`: the admin API and web UI live in their own program, vks-serve (web/, built on
 * libevent like the agent), so the CLI stays free of the event loop. This execs it with the same
 * arguments: first $VKS_SERVE, then vks-serve beside this program, then vks-serve on PATH.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks.h"

int vks_cli_serve(int argc, char **argv)
{
    (void)argc;
    char self[PATH_MAX], path[PATH_MAX + 32];
    const char *env = getenv("VKS_SERVE");
    argv[0] = "vks-serve";
    if (env && *env) {
        execv(env, argv);
        fprintf(stderr, "vks serve: cannot run $VKS_SERVE %s: %s\n", env, strerror(errno));
        return 1;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/vks-serve", self);
            execv(path, argv);
            /* an installed vks finds vks-serve in sbin or on PATH */
            snprintf(path, sizeof path, "%s/../sbin/vks-serve", self);
            execv(path, argv);
        }
    }
    execvp("vks-serve", argv);
    fprintf(stderr, "vks serve: cannot find vks-serve (beside vks, on PATH, or $VKS_SERVE): %s\n", strerror(errno));
    return 1;
}
