/*
 * vks-policy: reading a Lua string argument for C (see host.h). In a file of its own so that the
 * fuzz target of host/smtp.c (tests/fuzz/fuzz_smtp_reply.c) links it without the whole host.
 */
#include <lauxlib.h>
#include <string.h>

#include "host.h"

const char *vksh_cstring(lua_State *L, int idx, const char *what, size_t *len)
{
    size_t n = 0;
    const char *s = luaL_checklstring(L, idx, &n);
    if (memchr(s, '\0', n) != NULL)
        luaL_error(L, "%s contains a NUL byte", what);
    if (len != NULL)
        *len = n;
    return s;
}
