/*
 * fork_host: a Lua host that forks, the way Postfix and Exim fork per delivery and pre-forking
 * servers fork per worker (tests/integration/36-resolve-fork.sh).
 *
 *   fork_host MAIN.lua [BG.lua THREADS]
 *
 * MAIN.lua runs in the main thread's lua_State with a global `host`:
 *   host.fork() -> pid (0 in the child)      host.wait(pid) -> exit status (or 128 + signal)
 *   host.exit(code [, "exit"])  ends the process: _exit(code) by default, exit(code) with "exit"
 *   host.getpid(), host.getppid()            host.sleep_ms(ms)      host.monotonic_ms()
 * and returns the number of failures it saw (an integer).
 * With BG.lua, THREADS background threads each open their own lua_State, load BG.lua (which
 * returns f(thread_index) -> failures) and call f in a loop until MAIN.lua has returned, so the
 * main thread forks while other threads are in the middle of lookups.
 * Prints "main failures M, background rounds R failures F" and exits 0 when M and F are 0.
 * Never prints a value.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_bool stop;

struct bg {
    int index;
    const char *script;
    long rounds, failures;
    char error[256];
};

static int l_fork(lua_State *L)
{
    fflush(NULL);
    pid_t p = fork();
    if (p < 0)
        return luaL_error(L, "fork failed");
    lua_pushinteger(L, p);
    return 1;
}

static int l_wait(lua_State *L)
{
    pid_t p = (pid_t)luaL_checkinteger(L, 1);
    int st = 0;
    while (waitpid(p, &st, 0) < 0) {
    }
    lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 1;
}

static int l_exit(lua_State *L)
{
    int code = (int)luaL_optinteger(L, 1, 0);
    const char *how = luaL_optstring(L, 2, "_exit");
    fflush(NULL);
    if (strcmp(how, "exit") == 0)
        exit(code);
    _exit(code);
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_getppid(lua_State *L)
{
    lua_pushinteger(L, getppid());
    return 1;
}

static int l_sleep_ms(lua_State *L)
{
    long ms = (long)luaL_checkinteger(L, 1);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
    return 0;
}

/* CLOCK_MONOTONIC in milliseconds: the clock Python's time.monotonic() reads (88-cred-reset). */
static int l_monotonic_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static const luaL_Reg host_funcs[] = {
    { "fork", l_fork }, { "wait", l_wait }, { "exit", l_exit }, { "getpid", l_getpid },
    { "getppid", l_getppid }, { "sleep_ms", l_sleep_ms }, { "monotonic_ms", l_monotonic_ms },
    { NULL, NULL },
};

static void *bg_run(void *arg)
{
    struct bg *b = arg;
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(b->error, sizeof b->error, "no Lua state");
        b->failures = 1;
        return NULL;
    }
    luaL_openlibs(L);
    if (luaL_loadfile(L, b->script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        snprintf(b->error, sizeof b->error, "%s", lua_tostring(L, -1));
        b->failures = 1;
    } else {
        while (!atomic_load(&stop)) {
            lua_pushvalue(L, -1);
            lua_pushinteger(L, b->index);
            if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
                snprintf(b->error, sizeof b->error, "%s", lua_tostring(L, -1));
                b->failures++;
                lua_pop(L, 1);
                break;
            }
            b->failures += (long)lua_tointeger(L, -1);
            lua_pop(L, 1);
            b->rounds++;
        }
    }
    lua_close(L);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: fork_host MAIN.lua [BG.lua THREADS]\n");
        return 2;
    }
    int nbg = argc == 4 ? atoi(argv[3]) : 0;
    if (nbg < 0 || nbg > 64)
        return 2;
    pthread_t t[64];
    struct bg bgs[64];
    for (int i = 0; i < nbg; i++) {
        bgs[i] = (struct bg){ .index = i + 1, .script = argv[2] };
        if (pthread_create(&t[i], NULL, bg_run, &bgs[i]) != 0)
            return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L)
        return 2;
    luaL_openlibs(L);
    luaL_newlib(L, host_funcs);
    lua_setglobal(L, "host");
    long mainf = 0;
    if (luaL_loadfile(L, argv[1]) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "fork_host: %s\n", lua_tostring(L, -1));
        mainf = 1;
    } else {
        mainf = (long)lua_tointeger(L, -1);
    }
    atomic_store(&stop, true);
    long rounds = 0, bgf = 0;
    for (int i = 0; i < nbg; i++) {
        pthread_join(t[i], NULL);
        rounds += bgs[i].rounds;
        bgf += bgs[i].failures;
        if (bgs[i].error[0])
            fprintf(stderr, "fork_host: background %d: %s\n", i + 1, bgs[i].error);
    }
    lua_close(L);
    printf("main failures %ld, background rounds %ld failures %ld\n", mainf, rounds, bgf);
    return mainf == 0 && bgf == 0 ? 0 : 1;
}
