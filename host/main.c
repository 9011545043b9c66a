/*
 * vks-policy: a KumoMTA-style policy host for vault-keysource.
 *
 * KumoMTA runs its Lua in mlua's safe mode, which cannot load native modules; this host runs the
 * same kind of egress policy with our module available. The C side only sets up the Lua state:
 * package paths (the checkout's lua/ and build/ when run from a build tree, else the installed
 * share/vault-keysource/lua and lib/lua/5.4), the builtin modules of host.h, and then hands the
 * command line to lua/policy_host.lua, which does the work (docs/policy-host.md).
 *
 * Exit status: whatever policy_host.main returns (0 ok, 1 AUTH rejected / lookup failed, 2 usage
 * or policy error); 2 if the Lua side raised.
 */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "vks_file.h"
#include "vks_redact.h"

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int l_file_exists(lua_State *L)
{
    lua_pushboolean(L, file_exists(vksh_cstring(L, 1, "sys.file_exists: path", NULL)));
    return 1;
}

static int l_realpath(lua_State *L)
{
    char buf[PATH_MAX];
    if (realpath(vksh_cstring(L, 1, "sys.realpath: path", NULL), buf) == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, buf);
    return 1;
}

/* Text with every URL redacted (vks_redact_text: user info, query, fragment): everything the
 * host prints goes through it. */
static void push_redacted(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    size_t need = vks_redact_text(s, len, NULL, 0);
    char *out = luaL_buffinitsize(L, &b, need + 1);
    vks_redact_text(s, len, out, need + 1);
    luaL_pushresultsize(&b, need);
}

static int l_redact(lua_State *L)
{
    size_t len = 0;
    const char *s = luaL_checklstring(L, 1, &len); /* taken with its length: NUL bytes print as '?' */
    push_redacted(L, s, len);
    return 1;
}

/* Prints the error object at the top of the stack on stderr, redacted. */
static void print_error(lua_State *L, const char *prefix)
{
    size_t len = 0;
    const char *msg = lua_isstring(L, -1) ? lua_tolstring(L, -1, &len) : "(error object is not a string)";
    if (len == 0)
        len = strlen(msg);
    push_redacted(L, msg, len);
    size_t n = 0;
    const char *r = lua_tolstring(L, -1, &n);
    fprintf(stderr, "vks-policy: %s", prefix);
    fwrite(r, 1, n, stderr);
    fputc('\n', stderr);
    lua_pop(L, 1);
}

static int l_sleep_ms(lua_State *L)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    if (ms > 0) {
        struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    return 0;
}

static int l_monotonic_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* sys.read_file(path, what[, max_bytes]) -> data | nil, message. Through vks_file: a FIFO, device,
 * directory or socket is refused at once (never a hang), and so is a file over max_bytes (default
 * 16 MiB). For configuration data files, which are not secret. */
static int l_read_file(lua_State *L)
{
    size_t plen = 0;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *what = luaL_optstring(L, 2, "file");
    lua_Integer max = luaL_optinteger(L, 3, 16 << 20);
    if (strlen(path) != plen)
        return luaL_argerror(L, 1, "path contains a NUL byte");
    luaL_argcheck(L, max > 0 && max <= (1 << 30), 3, "max_bytes must be 1..1 GiB");
    const struct vks_file_opts fo = { .what = what, .code = VKS_E_CONFIG, .max_bytes = (size_t)max };
    struct vks_err e;
    int fd = -1;
    size_t size = 0, n = 0;
    bool more = false;
    if (vks_file_open(path, &fo, &fd, &size, &e) != VKS_OK) {
        lua_pushnil(L);
        lua_pushstring(L, e.msg);
        return 2;
    }
    char *buf = malloc(size + 1);
    vks_status st = buf ? vks_file_read_fd(fd, (unsigned char *)buf, size, &n, &more, path, &fo, &e)
                        : vks_err_set(&e, VKS_E_NOMEM, "out of memory reading %s", path);
    close(fd);
    if (st == VKS_OK && more)
        st = vks_err_set(&e, VKS_E_CONFIG, "%s \"%s\" changed size while read", what, path);
    if (st != VKS_OK) {
        free(buf);
        lua_pushnil(L);
        lua_pushstring(L, e.msg);
        return 2;
    }
    lua_pushlstring(L, buf, n); /* (on a Lua memory error buf leaks once; nothing secret) */
    free(buf);
    return 1;
}

static const luaL_Reg sys_funcs[] = {
    { "file_exists", l_file_exists },
    { "read_file", l_read_file },
    { "realpath", l_realpath },
    { "sleep_ms", l_sleep_ms },
    { "monotonic_ms", l_monotonic_ms },
    { "getpid", l_getpid },
    { "isatty", l_isatty },
    { "redact", l_redact },
    { NULL, NULL },
};

static int open_sys(lua_State *L)
{
    luaL_newlib(L, sys_funcs);
    return 1;
}

static void preload(lua_State *L, const char *name, lua_CFunction f)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* Prepends "<dir>/<pattern>" entries to package.path / package.cpath. */
static void prepend_path(lua_State *L, const char *field, const char *entries)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, field);
    lua_pushstring(L, entries);
    lua_pushliteral(L, ";");
    if (lua_type(L, -3) == LUA_TSTRING)
        lua_pushvalue(L, -3);
    else
        lua_pushliteral(L, "");
    lua_concat(L, 3);
    lua_setfield(L, -3, field);
    lua_pop(L, 2);
}

static void set_paths(lua_State *L)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return;
    *slash = '\0'; /* exe = directory of the binary */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", exe);
    slash = strrchr(parent, '/');
    if (slash != NULL)
        *slash = '\0';

    char luadir[PATH_MAX + 64], cdir[PATH_MAX + 64], probe[PATH_MAX + 64];
    const char *env = getenv("VKS_LUA_DIR");
    snprintf(probe, sizeof probe, "%s/lua/policy_host.lua", parent);
    if (file_exists(probe)) { /* run from a build tree: <root>/build/vks-policy */
        snprintf(luadir, sizeof luadir, "%s/lua", parent);
        snprintf(cdir, sizeof cdir, "%s", exe);
    } else { /* installed: <prefix>/bin/vks-policy */
        snprintf(luadir, sizeof luadir, "%s/share/vault-keysource/lua", parent);
        snprintf(cdir, sizeof cdir, "%s/lib/lua/5.4", parent);
    }
    if (env != NULL && env[0] != '\0')
        snprintf(luadir, sizeof luadir, "%s", env);
    char entries[3 * PATH_MAX + 256];
    snprintf(entries, sizeof entries, "%s/?.lua;%s/?/init.lua", luadir, luadir);
    prepend_path(L, "path", entries);
    snprintf(entries, sizeof entries, "%s/?.so", cdir);
    prepend_path(L, "cpath", entries);
}

static int traceback(lua_State *L)
{
    if (lua_isstring(L, 1)) {
        lua_settop(L, 1);
    } else {
        lua_settop(L, 0);
        lua_pushliteral(L, "(error object is not a string)");
    }
    lua_pushliteral(L, "\n");
    luaL_traceback(L, L, NULL, 1);
    lua_concat(L, 3);
    return 1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "vks-policy: cannot create a Lua state\n");
        return 2;
    }
    luaL_openlibs(L);
    preload(L, "vks_host.toml", vksh_open_toml);
    preload(L, "vks_host.json", vksh_open_json);
    preload(L, "vks_host.smtp", vksh_open_smtp);
    preload(L, "vks_host.sys", open_sys);
    set_paths(L);

    lua_pushcfunction(L, traceback);
    int tb = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "policy_host");
    if (lua_pcall(L, 1, 1, tb) != LUA_OK) {
        print_error(L, "cannot load policy_host.lua: ");
        lua_close(L);
        return 2;
    }
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    int rc = 2;
    if (lua_pcall(L, 1, 1, tb) != LUA_OK) {
        print_error(L, "");
    } else {
        rc = (int)lua_tointeger(L, -1);
    }
    fflush(stdout);
    lua_close(L);
    return rc;
}
