/*
 * vks-policy internals: the builtin Lua modules the policy host registers in package.preload.
 *
 *   vks_host.toml   parse(text [, source]) -> table | nil, message      (host/toml.cpp, toml++)
 *   vks_host.json   parse(text [, source]) -> table | nil, message      (host/json.c, json-c strict)
 *                   encode(value [, pretty]) -> string
 *   vks_host.smtp   check_auth(opts) -> result table        (host/smtp.c over src/vks_smtp.c)
 *   vks_host.sys    realpath, file_exists, sleep_ms, monotonic_ms, getenv helpers (host/main.c)
 *
 * Every function here runs on the host's single Lua state, on the main thread. None of them keeps
 * a reference to a Lua value after it returns. Parse functions never raise for bad input: they
 * return nil and a message naming the source and line; they raise only for misuse (wrong argument
 * types) and memory exhaustion.
 */
#ifndef VKS_HOST_H
#define VKS_HOST_H

#ifdef __cplusplus
extern "C" {
#endif

#include <lua.h>

#include <stddef.h>

/*
 * THE way a Lua string reaches the host's C code as a C string: the string at `idx` with its
 * length (*len, may be NULL). C would silently cut a string at its first NUL byte, so one that
 * holds a NUL raises "<what> contains a NUL byte" (misuse, like a wrong type: the host's
 * functions raise for misuse). A non-string raises as luaL_checklstring does.
 */
const char *vksh_cstring(lua_State *L, int idx, const char *what, size_t *len);

int vksh_open_toml(lua_State *L);
int vksh_open_json(lua_State *L);
int vksh_open_smtp(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
