/*
 * resolver_threads: many Lua states on many threads using the vault_keysource module at once,
 * the way a KumoMTA-style host does (tests/integration/35-resolve-threads.sh).
 *
 *   resolver_threads THREADS ITERATIONS SCRIPT
 *
 * Each thread opens its own lua_State (standard libraries; package.cpath from LUA_CPATH), loads
 * SCRIPT and calls the function it returns as f(thread_index, ITERATIONS); f returns the number of
 * failures it saw. Each state is closed at the end of its thread (the module must stay usable by
 * the others). Prints "threads: T x I, F failures" and exits 0 when F is 0. Never prints a value.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct job {
    int index;
    long iterations;
    const char *script;
    long failures;
    char error[256];
};

static void *run(void *arg)
{
    struct job *j = arg;
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        snprintf(j->error, sizeof j->error, "no Lua state");
        j->failures = 1;
        return NULL;
    }
    luaL_openlibs(L);
    if (luaL_loadfile(L, j->script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        snprintf(j->error, sizeof j->error, "%s", lua_tostring(L, -1));
        j->failures = 1;
        lua_close(L);
        return NULL;
    }
    lua_pushinteger(L, j->index);
    lua_pushinteger(L, j->iterations);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        snprintf(j->error, sizeof j->error, "%s", lua_tostring(L, -1));
        j->failures = 1;
    } else {
        j->failures = (long)lua_tointeger(L, -1);
    }
    lua_close(L);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: resolver_threads THREADS ITERATIONS SCRIPT\n");
        return 2;
    }
    int n = atoi(argv[1]);
    long iters = atol(argv[2]);
    if (n < 1 || n > 256 || iters < 1) {
        fprintf(stderr, "resolver_threads: bad THREADS or ITERATIONS\n");
        return 2;
    }
    pthread_t *t = calloc((size_t)n, sizeof *t);
    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    if (t == NULL || jobs == NULL)
        return 2;
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){ .index = i + 1, .iterations = iters, .script = argv[3] };
        if (pthread_create(&t[i], NULL, run, &jobs[i]) != 0) {
            fprintf(stderr, "resolver_threads: pthread_create failed\n");
            return 2;
        }
    }
    long failures = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        failures += jobs[i].failures;
        if (jobs[i].error[0] != '\0')
            printf("thread %d: %s\n", i + 1, jobs[i].error);
    }
    printf("threads: %d x %ld, %ld failures\n", n, iters, failures);
    free(t);
    free(jobs);
    return failures == 0 ? 0 : 1;
}
